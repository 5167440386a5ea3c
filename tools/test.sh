#!/usr/bin/env bash
# One command: install the dependencies, build the reference solution and run every test on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/tokenizer/fetch_qwen_tokenizer.sh
cmake --workflow --preset reference
