#!/usr/bin/env python3
"""Smoke test of `tinyllm-ref logits`: runs it on a checkpoint of data/fixtures/ch1.5 with the ids of one row of
the fixture's ids_b2l7 and compares the written logits (.safetensors or .json) with Hugging Face's logits_b2l7
of that row. Standard library only (no torch, no numpy).

    check_logits.py --exe build/reference/apps/tinyllm-ref --model data/fixtures/ch1.5/qwen2-bf16-tied \
        --fixture data/fixtures/ch1.5/qwen2-bf16-tied.safetensors --row 0 --atol 1e-3 --out /tmp/logits.json
"""
import argparse
import json
import math
import struct
import subprocess
import sys

_FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8), "I32": ("i", 4)}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "BF16":
            values = [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                      for (h,) in struct.iter_unpack("<H", raw)]
        else:
            code, size = _FORMATS[info["dtype"]]
            values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
        out[name] = (info["shape"], values)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--row", type=int, default=0)
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", action="append", default=[], help="one more argument for the command")
    args = ap.parse_args()

    fx = read_safetensors(args.fixture)
    (B, L), ids_all = fx["ids_b2l7"]
    ids = ids_all[args.row * L : (args.row + 1) * L]
    (_, _, V), logits_all = fx["logits_b2l7"]
    expected = logits_all[args.row * L * V : (args.row + 1) * L * V]

    cmd = [args.exe, "logits", "--model", args.model, "--ids", ",".join(map(str, ids)), "--out", args.out] + args.extra
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(f"FAIL: {' '.join(cmd)} exited with {run.returncode}\n{run.stderr}")
        return 1

    if args.out.endswith(".json"):
        with open(args.out) as f:
            j = json.load(f)
        shape, got_ids = j["shape"], j["ids"]
        actual = [x for row in j["logits"] for x in row]
    else:
        ours = read_safetensors(args.out)
        shape, actual = ours["logits"]
        got_ids = ours["ids"][1]
    if list(shape) != [L, V] or list(got_ids) != list(ids) or len(actual) != L * V:
        print(f"FAIL: wrote shape {shape} ids {got_ids}, expected shape {[L, V]} ids {ids}")
        return 1
    if any(math.isnan(a) for a in actual):
        print("FAIL: the logits contain NaN")
        return 1
    worst = max(abs(a - e) for a, e in zip(actual, expected))
    if worst > args.atol:
        print(f"FAIL: max abs logit error {worst:.3g} > {args.atol}")
        return 1
    print(f"ok: {L} x {V} logits, max abs error vs Hugging Face {worst:.3g} (tolerance {args.atol})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
