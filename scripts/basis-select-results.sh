#!/usr/bin/env bash
# Reproduces the Basis Selection table of docs/basis-select.md: SVD-LLM calibrated on
# WikiText-2, SVD-LLM calibrated on GSM8K train, and basis-select (global allocation, whitened
# and plain bases) calibrated on GSM8K train, at ratios 0.2 / 0.3 / 0.4; each model evaluated on
# the first EVAL_WINDOWS 2048-token windows of GSM8K test and of WikiText-2 test.
#
#   CALIB_WINDOWS (default 16) x SEQ_LEN (default 2048) calibration tokens, seed 3;
#   EVAL_WINDOWS (default 20); RATIOS (default "0.2 0.3 0.4"); CHAINS (default "svdllm basel").
# The figures in the docs were made with CALIB_WINDOWS=8 SEQ_LEN=1024 EVAL_WINDOWS=4 (see there).
# Every run writes its JSON next to the model in $WORK; `--table` only prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-target/release/llm-compress}"
model="$(./scripts/fetch-model.sh)"
work="${WORK:-target/basis-select-results}"
cw="${CALIB_WINDOWS:-16}"; sl="${SEQ_LEN:-2048}"; ew="${EVAL_WINDOWS:-20}"
ratios="${RATIOS:-0.2 0.3 0.4}"
mkdir -p "$work"
calib=(--calib-windows "$cw" --seq-len "$sl" --seed 3)

evals() {
  local out=$1
  [ -s "$out.gsm8k.json" ] || "$bin" eval "$out" --data gsm8k --max-windows "$ew" --json --quiet > "$out.gsm8k.json"
  [ -s "$out.wt2.json" ] || "$bin" eval "$out" --data wikitext2 --max-windows "$ew" --json --quiet > "$out.wt2.json"
}
run() { # name, compress args...
  local name=$1; shift
  local out="$work/$name"
  [ -s "$out.compress.json" ] || "$bin" compress "$model" "$@" "${calib[@]}" --out "$out" --json --quiet > "$out.compress.json"
  evals "$out"
}

if [ "${1:-}" != "--table" ]; then
  [ -s "$work/dense.gsm8k.json" ] || "$bin" eval "$model" --data gsm8k --max-windows "$ew" --json --quiet > "$work/dense.gsm8k.json"
  [ -s "$work/dense.wt2.json" ] || "$bin" eval "$model" --data wikitext2 --max-windows "$ew" --json --quiet > "$work/dense.wt2.json"
  for chain in ${CHAINS:-svdllm basel}; do
    for r in $ratios; do
      case $chain in
        svdllm)
          run "svdllm-wt2-$r" --method svd-llm --ratio "$r" --calib wikitext2
          run "svdllm-gsm8k-$r" --method svd-llm --ratio "$r" --calib gsm8k ;;
        basel)
          run "bs-whitened-gsm8k-$r" --method basis-select --bases whitened --allocation global \
            --ratio "$r" --calib gsm8k --scores "$work/scores-whitened-gsm8k.json" ;;
        plain)
          run "bs-plain-gsm8k-$r" --method basis-select --bases plain --allocation global \
            --ratio "$r" --calib gsm8k --scores "$work/scores-plain-gsm8k.json" ;;
      esac
    done
  done
fi

python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
rows = [("dense", "dense", "-")]
for r in ["0.2", "0.3", "0.4"]:
    rows += [(f"svdllm-wt2-{r}", "SVD-LLM (uniform)", "WikiText-2"),
             (f"svdllm-gsm8k-{r}", "SVD-LLM (uniform)", "GSM8K train"),
             (f"bs-whitened-gsm8k-{r}", "basis-select global, whitened bases", "GSM8K train"),
             (f"bs-plain-gsm8k-{r}", "basis-select global, plain bases", "GSM8K train")]
print("| ratio | method | calibration | kept linear params | GSM8K-test ppl | WikiText-2 ppl | compress wall s |")
print("|---|---|---|---|---|---|---|")
for name, method, cal in rows:
    g, t = load(f"{w}/{name}.gsm8k.json"), load(f"{w}/{name}.wt2.json")
    if g is None or t is None:
        continue
    c = load(f"{w}/{name}.compress.json")
    ratio = c["method"]["ratio"] if c else 0
    kept = f'{100*c["kept_fraction"]:.2f}%' if c else "100%"
    wall = f'{c["wall_s"]:.0f}' if c else ""
    print(f"| {ratio} | {method} | {cal} | {kept} | {g['ppl']:.2f} | {t['ppl']:.2f} | {wall} |")
PY
