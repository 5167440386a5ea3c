#!/usr/bin/env python3
"""Writes a copy of a model directory whose tokenizer.json numbers two tokens the other way round (same
vocabulary size, same strings): a draft model that would propose the wrong ids, for the command line's error test
of speculative decoding (tests/app/CMakeLists.txt). Standard library only.

    make_swapped_tokenizer.py --model data/models/tiny-qwen2-draft --out build/.../draft-swapped-tokenizer
"""
import argparse
import json
import pathlib
import shutil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ids", default="300,301", help="the two ids to swap")
    a = ap.parse_args()
    src, out = pathlib.Path(a.model), pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    i, j = (int(x) for x in a.ids.split(","))
    by_id = {v: k for k, v in vocab.items()}
    vocab[by_id[i]], vocab[by_id[j]] = j, i
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {out} ({by_id[i]!r} and {by_id[j]!r} swapped)")


if __name__ == "__main__":
    main()
