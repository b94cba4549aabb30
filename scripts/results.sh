#!/usr/bin/env bash
# docs/results.md: every method at ratio 0.2 and 0.4 on the default model, evaluated on the
# first 20 WikiText-2 test windows, in one report (Markdown, JSON, SVG and PNG plot).
#
#   ./scripts/results.sh [OUT_ROOT]       (default target/results)
#
# Each row is compressed once: an existing output folder is reused unless its name is listed
# in REDO (e.g. REDO="dass-0.2 dass-0.4"); evaluations are cached by the report (keyed by the
# tensor file's size and time). BIN overrides the binary. The ratio r is the fraction of
# decoder-linear parameters removed; for pruning, the unstructured sparsity; for LSAQ, the
# fraction of the decoder linears' 16-bit bytes removed (budget = embeddings, norms and header
# + (1 - r) x the linears at f16).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-target/results}"
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p llm-compress-cli
  BIN=target/release/llm-compress
fi
M="$(./scripts/fetch-model.sh)"
mkdir -p "$root"
outs=()
run() {
  local name="$1"; shift
  local out="$root/$name"
  if [ ! -f "$out/manifest.json" ] || [[ " ${REDO:-} " == *" $name "* ]]; then
    echo "compressing $name ..." >&2
    "$BIN" -q compress "$M" "$@" --out "$out" --json > "$root/$name.json"
  fi
  outs+=("$out")
}
# Bytes outside the decoder linears with f16 embeddings (embeddings, norms, header estimate),
# and the linears at f16.
fixed=$(( 49152 * 576 * 2 + 200000 ))
linear_f16=$(( 106168320 * 2 ))
for r in 0.2 0.4; do
  run "svd-llm-$r" --method svd-llm --ratio "$r"
  run "basis-sharing-$r" --method basis-sharing --ratio "$r"
  run "basis-select-$r" --method basis-select --ratio "$r" --bases whitened
  run "wanda-$r" --method wanda --pattern unstructured --sparsity "$r" --scope all
  run "dass-$r" --method dass --pattern unstructured --sparsity "$r" --scope all
  budget=$(python3 -c "print(int($fixed + (1 - $r) * $linear_f16))")
  run "lsaq-$r" --method lsaq --budget "$budget" --group-size 128
done
budget=$(python3 -c "print(int($fixed + 0.3 * $linear_f16))")
run "lsaq-0.7" --method lsaq --budget "$budget" --group-size 128
run "combined" --recipe recipes/combined.toml
"$BIN" report "$M" "${outs[@]}" --out-dir "$root/report" --max-windows "${WINDOWS:-20}"
