#!/usr/bin/env bash
# Reproduces the Basis Sharing group-size study of docs/basis-sharing.md: SmolLM2-135M,
# 16 x 2048 calibration windows (seed 3), wt2-20w perplexity, for the configurations given as
# arguments ("G:RATIO[:OPTIONS]", default: the full study). Prints one Markdown row per run as
# it finishes (also appended to $WORK/rows.md). CALIB_WINDOWS, SEQ_LEN and EVAL_WINDOWS (default
# 16, 2048, 20) set a cheaper protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p llm-compress-cli
bin=target/release/llm-compress-bs-study-$$
cp target/release/llm-compress "$bin"
model="$(./scripts/fetch-model.sh)"
work="${WORK:-target/basis-sharing-results}"
calib=(--calib-windows "${CALIB_WINDOWS:-16}" --seq-len "${SEQ_LEN:-2048}")
eval_windows="${EVAL_WINDOWS:-20}"
mkdir -p "$work"
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(2:0.2 2:0.4 2:0.2:--whiten-from=original 2:0.4:--whiten-from=original
           1:0.2 1:0.4 3:0.2 3:0.4 4:0.2 4:0.4)
fi
header="| g | ratio | options | kept linear params | wt2 ppl (${EVAL_WINDOWS:-20} windows) | file MiB | compress wall s | compress CPU s | peak RSS MiB |"
echo "$header"
echo "|---|---|---|---|---|---|---|---|---|"
for c in "${configs[@]}"; do
  IFS=: read -r g ratio opts <<<"$c"
  out="$work/g$g-r$ratio$(echo "${opts:-}" | tr -d ' =-')"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S" -o "$out.time" "$bin" compress "$model" --method basis-sharing \
    --ratio "$ratio" --group-size "$g" "${calib[@]}" --out "$out" --json --quiet ${opts:-} >"$out.compress.json"
  "$bin" eval "$out" --max-windows "$eval_windows" --json --quiet >"$out.eval.json"
  row=$(python3 - "$out" "$g" "$ratio" "${opts:-}" <<'PY'
import json, os, sys
out, g, ratio, opts = sys.argv[1:5]
c = json.load(open(out + ".compress.json"))
e = json.load(open(out + ".eval.json"))
u, s = map(float, open(out + ".time").read().split()[-2:])
size = os.path.getsize(os.path.join(out, "model.safetensors")) / 2**20
print("| %s | %s | %s | %.2f%% | %.2f | %.1f | %.1f | %.1f | %.0f |" % (
    g, ratio, opts, 100 * c["kept_fraction"], e["ppl"], size, c["wall_s"], u + s,
    (c["peak_rss_bytes"] or 0) / 2**20))
PY
)
  echo "$row"
  echo "$row" >>"$work/rows.md"
done
