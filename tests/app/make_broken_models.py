#!/usr/bin/env python3
"""Writes copies of a model directory with one tensor broken, for the error tests of the command line
(tests/app/CMakeLists.txt): a checkpoint the front door must refuse rather than run. Standard library only.

    make_broken_models.py --model data/fixtures/ch1.6/random-test-bpe --out build/.../test-data

  <out>/i16-norm/   model.norm.weight stored as I16 (integer codes where a float weight belongs)
  <out>/nan-down/   model.layers.0.mlp.down_proj.weight with one NaN
Each copy keeps config.json and tokenizer.json; model.safetensors is rewritten.
"""
import argparse
import json
import pathlib
import shutil
import struct


def read(path):
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], bytearray(data[begin:end]))
    return header.get("__metadata__"), tensors


def write(path, metadata, tensors):
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(bytes(raw))
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def copy_with(model, out, name, change):
    out.mkdir(parents=True, exist_ok=True)
    for f in model.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy(f, out / f.name)
    metadata, tensors = read(model / "model.safetensors")
    tensors[name] = change(*tensors[name])
    write(out / "model.safetensors", metadata, tensors)


def to_i16(dtype, shape, raw):
    count = len(raw) // {"F32": 4, "BF16": 2, "F16": 2}[dtype]
    return "I16", shape, bytearray(struct.pack(f"<{count}h", *([1] * count)))


def with_nan(dtype, shape, raw):
    if dtype == "F32":
        raw[0:4] = struct.pack("<f", float("nan"))
    else:  # BF16 and F16: a NaN bit pattern of either
        raw[0:2] = struct.pack("<H", 0x7FC0 if dtype == "BF16" else 0x7E00)
    return dtype, shape, raw


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    args = ap.parse_args()
    copy_with(args.model, args.out / "i16-norm", "model.norm.weight", to_i16)
    copy_with(args.model, args.out / "nan-down", "model.layers.0.mlp.down_proj.weight", with_nan)


if __name__ == "__main__":
    main()
