#!/usr/bin/env python3
"""Held-out greedy accuracy of the engine itself, and agreement between precisions.

Runs `tinyllm-ref chat --prompt Q --system S` (greedy) on the held-out questions of
data/models/eval/heldout.jsonl that need no tools, once per precision, and prints per skill:
how many answers equal the reference sentence, and how many equal the first precision's answer
(so `--precisions f32,q4` says whether quantizing to 4 bits changed any answer).

  python3 tools/bench/eval_engine.py --exe build/release/apps/tinyllm-ref \
      --skills arith_add_2d,arith_sub_2d,facts --per-skill 40 --precisions f32,bf16,q8,q4

Stdlib only. The expected answers come from the corpus generator (tools/models/make_corpus.py),
not from the engine; `--json FILE` writes the table as JSON.
"""
import argparse
import collections
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]  # tools/bench/eval_engine.py -> the repository root
PRECISION_FLAGS = {
    "f32": [],
    "bf16": ["--dtype", "bf16"],
    "q8": ["--quantize", "q8"],
    "q4": ["--quantize", "q4"],
}


def load_questions(path, skills, per_skill):
    chosen = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["skill"] not in skills or record.get("tools") or record["check"] != "exact":
            continue
        messages = record["messages"]
        if len(messages) != 2 or messages[0]["role"] != "system" or messages[1]["role"] != "user":
            continue
        if len(chosen[record["skill"]]) < per_skill:
            chosen[record["skill"]].append(
                (messages[0]["content"], messages[1]["content"], record["answer"]))
    return chosen


def answer(exe, model, system, question, precision):
    command = [str(exe), "chat", "--prompt", question, "--system", system, "--max-tokens", "64"]
    if model:
        command += ["--model", str(model)]
    result = subprocess.run(command + PRECISION_FLAGS[precision], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exe", default=ROOT / "build/release/apps/tinyllm-ref", type=pathlib.Path)
    parser.add_argument("--model", type=pathlib.Path, help="model directory (default: the exe's)")
    parser.add_argument("--heldout", default=ROOT / "data/models/eval/heldout.jsonl",
                        type=pathlib.Path)
    parser.add_argument("--skills", default="arith_add_2d,arith_sub_2d,facts")
    parser.add_argument("--per-skill", type=int, default=40)
    parser.add_argument("--precisions", default="f32,q4")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    for p in precisions:
        if p not in PRECISION_FLAGS:
            sys.exit(f"unknown precision '{p}' (known: {', '.join(PRECISION_FLAGS)})")
    questions = load_questions(args.heldout, set(args.skills.split(",")), args.per_skill)
    if not questions:
        sys.exit(f"no questions of skills {args.skills} in {args.heldout}")

    table = {}
    for skill, items in sorted(questions.items()):
        row = {p: {"correct": 0, "same_as_" + precisions[0]: 0} for p in precisions}
        for system, question, expected in items:
            first = None
            for p in precisions:
                got = answer(args.exe, args.model, system, question, p)
                first = got if first is None else first
                row[p]["correct"] += got == expected
                row[p]["same_as_" + precisions[0]] += got == first
        table[skill] = {"n": len(items), **row}

    header = "| skill | n | " + " | ".join(
        f"{p} correct | {p} = {precisions[0]}" for p in precisions) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(precisions)))
    for skill, row in table.items():
        cells = []
        for p in precisions:
            cells += [str(row[p]["correct"]), str(row[p]["same_as_" + precisions[0]])]
        print(f"| {skill} | {row['n']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
