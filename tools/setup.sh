#!/usr/bin/env bash
# Installs what tiny-llm.cpp needs on Debian 12 (idempotent: it only installs what is missing).
#   bash tools/setup.sh          # build dependencies
#   bash tools/setup.sh --oracle # also PyTorch, for regenerating the operator fixtures (tools/fixtures/)
set -euo pipefail
# Libraries: checked as Debian packages.
libraries=(libeigen3-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev)
# Programs: checked on PATH (Node.js and npm may come from outside Debian); the package installs them.
declare -A programs=([g++]=g++ [make]=make [cmake]=cmake [pkg-config]=pkg-config [git]=git
                     [clang-format]=clang-format [python3]=python3 [npm]=npm)
missing=()
for p in "${libraries[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
for program in "${!programs[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${programs[$program]}")
done
if [[ "${1:-}" == "--oracle" ]] && ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  missing+=(python3-torch python3-numpy)
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all dependencies are installed"
fi
