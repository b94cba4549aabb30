#!/usr/bin/env bash
# Fuzz every parser for a bounded time and fail on any crash, hang or leak.
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET ...]
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Seeds are generated from valid files (fuzz/src/corpus.rs); the
# working corpus grows in fuzz/corpus/ (not committed). A crasher is left in fuzz/artifacts/ and
# must be copied to crates/tensor-io/tests/data/fuzz-regressions/<target>/ once fixed.
# The summary (runs, coverage, crashes per target) is written to fuzz/SUMMARY.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_header gguf config_json tokenizer_json manifest)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target/fuzz}"
if [ ! -d seeds ]; then
  cargo run --release -q --bin make_corpus -- seeds ../crates/tensor-io/tests/data/smollm2-tokenizer.json
fi
cargo +nightly fuzz build -O
status=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "logs"
  log="logs/$t.log"
  echo "fuzzing $t for ${secs}s ..." >&2
  if cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="FAILED (see fuzz/$log and fuzz/artifacts/$t)"
    status=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  files=$(find "corpus/$t" -type f | wc -l)
  rows+=("| $t | ${secs} | ${runs:-?} | ${cov:-?} | ${ft:-?} | $files | $result |")
done
{
  echo "# Fuzzing summary"
  echo
  echo "Written by \`scripts/fuzz.sh $secs\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(rustc +nightly --version)."
  echo "Each target ran for the stated time with libFuzzer (ASan), starting from the seeds of"
  echo "\`fuzz/src/corpus.rs\`; \`cov\` = covered code edges, \`ft\` = features, at the end of the run."
  echo
  echo "| target | seconds | runs | cov | ft | corpus files | result |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > SUMMARY.md
cat SUMMARY.md
exit $status
