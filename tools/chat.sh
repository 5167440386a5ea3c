#!/usr/bin/env bash
# One command: install the dependencies, build the optimised reference engine and chat with the embedded model.
#   bash tools/chat.sh                      # interactive chat (type /exit or Ctrl-D to leave)
#   bash tools/chat.sh --prompt "What is 12 + 30?"
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >&2
cmake --preset release >&2
cmake --build --preset release --target tinyllm-ref >&2
exec build/release/apps/tinyllm-ref chat "$@"
