#!/usr/bin/env bash
# The README's main job: fetch the default model (once), compress it with SVD-LLM at ratio 0.2
# (16 x 2048 calibration windows), evaluate perplexity before and after on the first 20
# WikiText-2 test windows, and print a table.
#   RATIO, WINDOWS, OUT may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
ratio="${RATIO:-0.2}"
windows="${WINDOWS:-20}"
out="${OUT:-target/llm-compress-out/svd-llm-$ratio}"
cargo build --release --quiet -p llm-compress-cli
bin=target/release/llm-compress
model="$(./scripts/fetch-model.sh)"
echo "model: $model" >&2
echo "compressing (svd-llm, ratio $ratio) ..." >&2
c=$("$bin" compress "$model" --method svd-llm --ratio "$ratio" --out "$out" --json)
echo "evaluating the dense model ..." >&2
d=$("$bin" eval "$model" --max-windows "$windows" --json)
echo "evaluating the compressed model ..." >&2
e=$("$bin" eval "$out" --max-windows "$windows" --json)
python3 - "$c" "$d" "$e" <<'PY'
import json, sys
c, d, e = (json.loads(a) for a in sys.argv[1:4])
print()
print(f"| model | decoder linear params | WikiText-2 ppl ({d['windows']} windows) | tokens/s |")
print("|---|---|---|---|")
print(f"| dense | {c['linear_params_before']:,} | {d['ppl']:.2f} | {d['tokens_per_s']:.0f} |")
print(f"| svd-llm {c['method']['ratio']} | {c['linear_params_after']:,} ({100*c['kept_fraction']:.1f}%) | {e['ppl']:.2f} | {e['tokens_per_s']:.0f} |")
print()
print(f"compression: {c['wall_s']:.1f} s, peak RSS {c['peak_rss_bytes']/2**20:.0f} MiB; output in {c['out']}")
PY
