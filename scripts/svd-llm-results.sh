#!/usr/bin/env bash
# Reproduces the SVD-LLM results table of docs/svd-llm.md: every configuration compressed with
# 16 x 2048 calibration windows (seed 3) and evaluated on wt2-20w. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p llm-compress-cli
bin=target/release/llm-compress
model="$(./scripts/fetch-model.sh)"
work="${WORK:-target/svd-llm-results}"
mkdir -p "$work"
d=$("$bin" eval "$model" --max-windows 20 --json --quiet)
echo "| method | ratio | options | kept linear params | wt2-20w ppl | compress s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(f"| dense | 0 | | 100% | {d[\"ppl\"]:.2f} | | |")' "$d"
run() {
  method=$1; ratio=$2; shift 2
  out="$work/$method-$ratio$(echo "$*" | tr -d ' -')"
  c=$("$bin" compress "$model" --method "$method" --ratio "$ratio" --out "$out" --json --quiet "$@")
  e=$("$bin" eval "$out" --max-windows 20 --json --quiet)
  python3 -c 'import json,sys; c=json.loads(sys.argv[1]); e=json.loads(sys.argv[2])
print(f"| {c[\"method\"][\"name\"]} | {c[\"method\"][\"ratio\"]} | {sys.argv[3]} | {100*c[\"kept_fraction\"]:.2f}% | {e[\"ppl\"]:.2f} | {c[\"wall_s\"]:.1f} | {c[\"peak_rss_bytes\"]/2**20:.0f} |")' "$c" "$e" "$*"
}
for r in 0.2 0.4; do
  run svd-llm $r
  run svd-llm $r --whiten-from original
  run svd-llm $r --whiten-from original --update
done
run svd 0.2 --whiten-from original
run asvd 0.2 --whiten-from original
