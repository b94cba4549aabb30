#!/usr/bin/env bash
# Reproduces the LSAQ figures of docs/lsaq.md. Environment:
#   EVAL_WINDOWS (20)        windows of the uniform-precision and composition rows
#   SWEEP_WINDOWS (20)       windows of the ranking comparison
#   CALIB_WINDOWS (16)       calibration windows (2048 tokens) of the importance pass and GPTQ
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p llm-compress-cli
cargo bench --no-run --quiet --bench lsaq_sweep
bin=target/release/llm-compress
model="$(./scripts/fetch-model.sh)"
work="${WORK:-target/lsaq-results}"
ew="${EVAL_WINDOWS:-20}"; sw="${SWEEP_WINDOWS:-20}"; cw="${CALIB_WINDOWS:-16}"
mkdir -p "$work"
uniform() {  # name, then compress flags
  name=$1; shift
  "$bin" compress "$model" --method lsaq --budget 1GB --importance random --out "$work/$name" \
    --calib-windows "$cw" --quiet "$@" | grep bytes
  echo "$name: $("$bin" eval "$work/$name" --max-windows "$ew" --quiet | grep perplexity)"
}
uniform int8 --ladder int8
uniform int4-g128-rtn --ladder int4 --group-size 128
uniform int4-g128-gptq --ladder int4 --group-size 128 --quantizer gptq
uniform int4-pc-rtn --ladder int4
uniform int4-pc-gptq --ladder int4 --quantizer gptq
uniform int4-g128-gptq-original --ladder int4 --group-size 128 --quantizer gptq --whiten-from original
# Ranking comparison at three budgets (importance measured once, RTN int4 g128 / int8).
cargo bench --quiet --bench lsaq_sweep -- "$model" "$sw" 125,137.5,150 128 "$cw" | tee "$work/sweep.jsonl"
# Composition: SVD-LLM 0.2, then LSAQ on its factors, in one command.
"$bin" compress "$model" --method svd-llm --ratio 0.2 --then-lsaq --budget 125MB --group-size 128 \
  --calib-windows "$cw" --out "$work/svd-llm-0.2-lsaq" --quiet | grep -E "bytes|precision"
echo "svd-llm 0.2 + lsaq: $("$bin" eval "$work/svd-llm-0.2-lsaq" --max-windows "$ew" --quiet | grep perplexity)"
