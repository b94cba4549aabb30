#!/usr/bin/env bash
# Reproduces the SVD-LLM results table of docs/svd-llm.md: every configuration compressed with
# 16 x 2048 calibration windows (seed 3) and evaluated on wt2-20w. Prints a Markdown table.
# Arguments, if any, replace the default configurations (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p llm-compress-cli
bin=target/release/llm-compress
model="$(./scripts/fetch-model.sh)"
work="${WORK:-target/svd-llm-results}"
mkdir -p "$work"
row() {
  python3 - "$@" <<'PY'
import json, sys
if sys.argv[1] == "dense":
    d = json.loads(sys.argv[2])
    print("| dense | 0 | | 100%% | %.2f | | |" % d["ppl"])
else:
    c, e, opts = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    m = c["method"]
    print("| %s | %s | %s | %.2f%% | %.2f | %.1f | %.0f |" % (
        m["name"], m["ratio"], opts, 100 * c["kept_fraction"], e["ppl"], c["wall_s"],
        c["peak_rss_bytes"] / 2**20))
PY
}
echo "| method | ratio | options | kept linear params | wt2-20w ppl | compress s | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
row dense "$("$bin" eval "$model" --max-windows 20 --json --quiet)"
run() {
  method=$1; ratio=$2; shift 2
  out="$work/$method-$ratio$(echo "$*" | tr -d ' -')"
  c=$("$bin" compress "$model" --method "$method" --ratio "$ratio" --out "$out" --json --quiet "$@")
  e=$("$bin" eval "$out" --max-windows 20 --json --quiet)
  row "$c" "$e" "$*"
}
if [ $# -gt 0 ]; then
  # Configurations given as arguments, each "METHOD RATIO [OPTIONS]", e.g.
  #   ./scripts/svd-llm-results.sh "svd-llm 0.2" "svd-llm 0.2 --svd-solver randomized"
  for config in "$@"; do
    # shellcheck disable=SC2086
    run $config
  done
  exit 0
fi
for r in 0.2 0.4; do
  run svd-llm $r
  run svd-llm $r --whiten-from original
  run svd-llm $r --whiten-from original --update
done
run svd 0.2 --whiten-from original
run asvd 0.2 --whiten-from original
