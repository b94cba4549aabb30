#!/usr/bin/env bash
# Reproduces the table of docs/dass.md: wt2-20w perplexity of Wanda (every decoder linear) at
# 2:4 and 4:8, and of DaSS and Wanda on the MLP at 2:4, 4:8 and unstructured 50%, with the
# default calibration (16 x 2048 WikiText-2 train windows, seed 3).
# Usage: scripts/dass-results.sh [BIN] [OUT_DIR] [CONFIG...]   (default: every config, in turn)
# A CONFIG may carry suffixes that change one option: `@seed=N` (calibration seed, default 3) and
# `@alpha=A` (DaSS exponent, default 0.5), e.g. `wanda-all-2:4@seed=0`, `dass-mlp-4:8@alpha=1`.
set -euo pipefail
BIN=${1:-target/release/llm-compress}
OUT=${2:-/tmp/dass-results}
shift $(( $# < 2 ? $# : 2 ))
M=${LLM_COMPRESS_MODEL:-$(./scripts/fetch-model.sh)}
mkdir -p "$OUT"
declare -A ARGS=(
  [wanda-all-2:4]="--method wanda --pattern 2:4 --scope all"
  [wanda-all-4:8]="--method wanda --pattern 4:8 --scope all"
  [dass-mlp-2:4]="--method dass --pattern 2:4"
  [wanda-mlp-2:4]="--method wanda --pattern 2:4"
  [dass-mlp-4:8]="--method dass --pattern 4:8"
  [wanda-mlp-4:8]="--method wanda --pattern 4:8"
  [dass-mlp-unstructured]="--method dass --pattern unstructured --sparsity 0.5"
  [wanda-mlp-unstructured]="--method wanda --pattern unstructured --sparsity 0.5"
)
ORDER=(wanda-all-2:4 wanda-all-4:8 dass-mlp-2:4 wanda-mlp-2:4 dass-mlp-4:8 wanda-mlp-4:8
  dass-mlp-unstructured wanda-mlp-unstructured)
[ $# -gt 0 ] && ORDER=("$@")
for name in "${ORDER[@]}"; do
  base=${name%%@*}
  [ -n "${ARGS[$base]+x}" ] || { echo "unknown config $base" >&2; exit 2; }
  args=${ARGS[$base]}
  rest=${name#"$base"}
  while [ -n "$rest" ]; do
    rest=${rest#@}
    opt=${rest%%@*}
    rest=${rest#"$opt"}
    case $opt in
      seed=*) args="$args --seed ${opt#seed=}" ;;
      alpha=*) args="$args --alpha ${opt#alpha=}" ;;
      *) echo "unknown suffix @$opt" >&2; exit 2 ;;
    esac
  done
  dir="$OUT/$name"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %S %M" -o "$OUT/$name.time" \
    "$BIN" -q --json compress "$M" $args --dense --out "$dir" > "$OUT/$name.compress.json"
  "$BIN" -q --json eval "$dir" --max-windows 20 > "$OUT/$name.eval.json"
  rm -rf "$dir"
  printf '%s\t%s\t%s\n' "$name" "$(grep -o '"ppl":[0-9.e+]*' "$OUT/$name.eval.json")" \
    "$(cat "$OUT/$name.time")" | tee -a "$OUT/summary.tsv"
done
