#!/usr/bin/env bash
# The engine's paged serving core measured with `tinyllm-ref batch` (engine/README.md, "Paged caches and the
# prefix cache"): run from the repository root after `cmake --preset release && cmake --build build/release
# --target tinyllm-ref`. MODEL defaults to the embedded tiny-qwen2 (any directory with a tokenizer.json works).
#   1. KV memory: 16 requests of mixed lengths (paged_serving_prompts.txt), peak pages held against dense
#      per-slot preallocation (batch size x context on every layer), at batch sizes 4 and 16;
#   2. time to first token with and without the prefix cache, every request behind the same ~200-token system
#      prompt (paged_serving_system.txt), batch size 4 and 1;
#   3. batch throughput on paged caches against dense ones (the same engine, f32 weights).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread unless told: stable numbers on a shared machine
EXE=${EXE:-build/release/apps/tinyllm-ref}
MODEL=${MODEL:-data/models/tiny-qwen2}
DIR=$(cd "$(dirname "$0")" && pwd)
PROMPTS="$DIR/paged_serving_prompts.txt"
SYSTEM=$(cat "$DIR/paged_serving_system.txt")
run() { local args="$*"; echo "== batch ${args:0:160}"; "$EXE" batch --model "$MODEL" --prefill-chunk 32 "$@" | sed -n '/^summary/,$p'; }

for b in 4 16; do run --prompts-file "$PROMPTS" --batch-size "$b" --max-tokens 64 --paged; done
for b in 4 1; do
  run --prompts-file "$PROMPTS" --batch-size "$b" --max-tokens 16 --system "$SYSTEM" --paged
  run --prompts-file "$PROMPTS" --batch-size "$b" --max-tokens 16 --system "$SYSTEM" --paged --prefix-cache
done
run --prompts-file "$PROMPTS" --batch-size 4 --max-tokens 64 --dtype f32
run --prompts-file "$PROMPTS" --batch-size 4 --max-tokens 64 --paged
