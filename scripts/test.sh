#!/usr/bin/env bash
# The test command of the README: fetch the default model once (pip), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
LLM_COMPRESS_MODEL="$(./scripts/fetch-model.sh)"
export LLM_COMPRESS_MODEL
cargo test --workspace --release
