#!/usr/bin/env bash
# Installs what tiny-llm.cpp needs on Debian 12 (idempotent: it only installs what is missing).
#   bash tools/setup.sh          # build dependencies
#   bash tools/setup.sh --oracle # also PyTorch for regenerating the operator fixtures (tools/fixtures/)
set -euo pipefail
packages=(build-essential cmake pkg-config git libeigen3-dev nlohmann-json3-dev libgtest-dev libgmock-dev
          libbenchmark-dev libpcre2-dev clang-format python3 npm)
if [[ "${1:-}" == "--oracle" ]]; then packages+=(python3-torch python3-numpy); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all build dependencies are installed"
fi
