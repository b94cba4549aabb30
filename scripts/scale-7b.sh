#!/usr/bin/env bash
# Issue 9's whole run: SVD-LLM 0.2 of a LLaMA-7B-shaped checkpoint (random weights with a
# trained model's singular-value decay, sharded bf16 safetensors) on this machine, streamed
# layer by layer, then one streamed forward pass of the output. Peak RSS and wall time come from
# /usr/bin/time -v. Writes target/scale/<shape>/report.md.
#
#   ./scripts/scale-7b.sh                       env: SHAPE (llama-7b | mistral-7b), LAYERS (all),
#     WINDOWS (16), SEQ (2048), SOLVER (randomized | exact), WHITEN (original | compressed),
#     MODEL_DIR (target/scale/<shape>-shaped), OUT (target/scale/<shape>-svd-llm-0.2),
#     INTERRUPT_AFTER (unset: one process; N: kill the run once N layers are written, then
#     resume it with --resume, as after a crash)
#
# Disk: the llama-7b checkpoint is 13.5 GB, the output 21 GB (f32 factors).
set -euo pipefail
cd "$(dirname "$0")/.."
shape="${SHAPE:-llama-7b}"
windows="${WINDOWS:-16}"
seq="${SEQ:-2048}"
solver="${SOLVER:-randomized}"
whiten="${WHITEN:-original}"
model="${MODEL_DIR:-target/scale/$shape-shaped}"
out="${OUT:-target/scale/$shape-svd-llm-0.2}"
report_dir="target/scale/$shape"
mkdir -p "$report_dir"

cargo build --release --quiet -p llm-compress-cli
cargo build --release --quiet --example synth_model
bin=target/release/llm-compress

if [ ! -f "$model/model.safetensors.index.json" ]; then
  echo "generating $model ..." >&2
  layer_args=()
  [ -n "${LAYERS:-}" ] && layer_args=(--layers "$LAYERS")
  /usr/bin/time -v target/release/examples/synth_model --shape "$shape" --out "$model" \
    "${layer_args[@]}" 2> "$report_dir/generate.time"
fi

args=(compress "$model" --method svd-llm --ratio 0.2 --calib random --calib-windows "$windows"
      --seq-len "$seq" --whiten-from "$whiten" --svd-solver "$solver" --streaming --out "$out")
export LLM_COMPRESS_LOG="${LLM_COMPRESS_LOG:-warn,llm_compress::streaming=info}"
runs=()
if [ -n "${INTERRUPT_AFTER:-}" ]; then
  echo "compressing (to be interrupted after $INTERRUPT_AFTER layers) ..." >&2
  /usr/bin/time -v "$bin" "${args[@]}" 2> "$report_dir/compress-1.log" &
  pid=$!
  until [ -f "$out/progress.json" ] && \
        python3 -c "import json,sys; sys.exit(json.load(open('$out/progress.json'))['next_layer'] < $INTERRUPT_AFTER)" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 5
  done
  pkill -KILL -P "$pid" llm-compress || true
  wait "$pid" || true
  runs+=("$report_dir/compress-1.log")
  echo "resuming ..." >&2
  /usr/bin/time -v "$bin" "${args[@]}" --resume 2> "$report_dir/compress-2.log"
  runs+=("$report_dir/compress-2.log")
else
  echo "compressing ..." >&2
  /usr/bin/time -v "$bin" "${args[@]}" 2> "$report_dir/compress-1.log"
  runs+=("$report_dir/compress-1.log")
fi

echo "one streamed forward pass of the output ..." >&2
/usr/bin/time -v "$bin" eval "$out" --streaming --data random --max-windows 1 --seq-len 512 \
  --json 2> "$report_dir/forward.time" > "$report_dir/forward.json"

field() { grep -F "$1" "$2" | sed 's/.*: //' ; }
{
  echo "| step | wall (h:mm:ss) | peak RSS (GiB) |"
  echo "|---|---|---|"
  for f in "${runs[@]}" "$report_dir/forward.time"; do
    rss_kb=$(field "Maximum resident set size" "$f")
    printf '| %s | %s | %s |\n' "$(basename "$f")" "$(field "Elapsed (wall clock)" "$f")" \
      "$(python3 -c "print(f'{$rss_kb / 1048576:.2f}')")"
  done
  echo
  echo "forward: $(cat "$report_dir/forward.json")"
} | tee "$report_dir/report.md"
