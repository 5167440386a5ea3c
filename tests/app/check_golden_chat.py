#!/usr/bin/env python3
"""End-to-end golden test of `tinyllm-ref chat` with the embedded model and NO --model flag (so the compiled-in
default directory is exercised): the streamed answer to a fixture prompt of data/fixtures/models/
(tools/models/make_fixtures.py, Hugging Face transformers) must equal HF's greedy ids up to <|im_end|>, decoded
here with a few lines of byte-level BPE decoding of tokenizer.json. Standard library only.

    check_golden_chat.py --exe build/reference/apps/tinyllm-ref --model-dir data/models/tiny-qwen2 \
        --fixture data/fixtures/models/tiny-qwen2.chat_add.safetensors --question "What is 23 + 45?"
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_logits import read_safetensors  # noqa: E402


def byte_decoder():
    # GPT-2's bytes_to_unicode, inverted: printable stand-in character -> byte.
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def decode(tokenizer_json, ids):
    with open(tokenizer_json, encoding="utf-8") as f:
        tj = json.load(f)
    id_to_token = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {t["id"]: t["content"] for t in tj["added_tokens"]}
    to_byte = byte_decoder()
    out = bytearray()
    for i in ids:
        if i in added:
            out += added[i].encode("utf-8")
        else:
            out += bytes(to_byte[ch] for ch in id_to_token[i])
    return out.decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--model-dir", required=True, help="the embedded model (for its tokenizer.json)")
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--extra", action="append", default=[], help="another argument for chat, e.g. --no-kv-cache")
    a = ap.parse_args()
    fx = read_safetensors(a.fixture)
    greedy = fx["greedy_ids"][1]
    margins = fx["greedy_margin"][1]
    with open(os.path.join(a.model_dir, "tokenizer.json"), encoding="utf-8") as f:
        im_end = next(t["id"] for t in json.load(f)["added_tokens"] if t["content"] == "<|im_end|>")
    n = greedy.index(im_end)
    if min(margins[: n + 1]) < 0.05:
        print(f"FAIL: the fixture's answer has a near tie (margins {margins[:n + 1]}); pick another prompt")
        return 1
    expected = decode(os.path.join(a.model_dir, "tokenizer.json"), greedy[:n])
    env = {k: v for k, v in os.environ.items() if k != "TINYLLM_MODEL_DIR"}
    run = subprocess.run([a.exe, "chat", "--prompt", a.question] + a.extra, capture_output=True, env=env, timeout=600)
    answer = run.stdout.decode("utf-8", errors="replace").rstrip("\n")
    if run.returncode != 0 or answer != expected:
        print(f"FAIL: exit {run.returncode}; answer {answer!r}, Hugging Face's greedy answer {expected!r}\n"
              f"{run.stderr.decode(errors='replace')}")
        return 1
    print(f"ok: {a.question!r} -> {answer!r}, as Hugging Face; {run.stderr.decode().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
