#!/usr/bin/env bash
# The README's main job: fetch the default model (once), compress it with each recipe (default:
# recipes/default.toml, LSAQ to 150 MB; and recipes/combined.toml, DaSS 4:8 on the MLP +
# SVD-LLM 0.2 on attention + LSAQ to 110 MB), evaluate the dense model and every output on the
# first 20 WikiText-2 test windows, print the table and write the report (Markdown, JSON) and
# the plot (SVG, PNG) of perplexity against size.
#
#   ./scripts/main.sh [RECIPE.toml ...]      env: WINDOWS (20), OUT (target/llm-compress-out)
set -euo pipefail
cd "$(dirname "$0")/.."
windows="${WINDOWS:-20}"
root="${OUT:-target/llm-compress-out}"
if [ "$#" -eq 0 ]; then
  set -- recipes/default.toml recipes/combined.toml
fi
cargo build --release --quiet -p llm-compress-cli
bin=target/release/llm-compress
model="$(./scripts/fetch-model.sh)"
echo "model: $model" >&2
outs=()
for recipe in "$@"; do
  out="$root/$(basename "$recipe" .toml)"
  echo "compressing with $recipe ..." >&2
  "$bin" compress "$model" --recipe "$recipe" --out "$out" >&2
  outs+=("$out")
done
echo "evaluating the dense model and ${#outs[@]} output(s) on $windows windows ..." >&2
"$bin" report "$model" "${outs[@]}" --out-dir "$root/report" --max-windows "$windows"
