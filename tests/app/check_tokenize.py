#!/usr/bin/env python3
"""Smoke test of `tinyllm-ref tokenize`: for every case of a Hugging Face tokenizers fixture
(data/fixtures/tokenizer/*_ids.json, tools/tokenizer/make_tokenizer_fixtures.py), runs
`tinyllm-ref tokenize --model DIR --text TEXT` and checks that the JSON array it prints equals HF's ids.
Standard library only.

    check_tokenize.py --exe build/reference/apps/tinyllm-ref --model data/tokenizers/test-bpe \
        --fixture data/fixtures/tokenizer/test_bpe_ids.json
"""
import argparse
import json
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--model", required=True, help="a directory with tokenizer.json")
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--fetch-hint", default="", help="printed when the model directory is missing")
    ap.add_argument("--cases", default="", help="comma-separated case names to check (default: all)")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.model, "tokenizer.json")):
        print(f"FAIL: {args.model}/tokenizer.json is missing. {args.fetch_hint}")
        return 1
    with open(args.fixture, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    wanted = set(filter(None, args.cases.split(",")))
    missing = wanted - {case["name"] for case in cases}
    if missing:
        print(f"FAIL: the fixture has no cases {sorted(missing)}")
        return 1
    failures, checked = [], 0
    for case in cases:
        if "text" not in case or (wanted and case["name"] not in wanted):
            continue  # e.g. the corpus case keeps its text in a file
        text = case["text"]
        if "\0" in text or len(text.encode("utf-8")) > 100_000:
            continue  # not passable as one command line argument
        run = subprocess.run([args.exe, "tokenize", "--model", args.model, "--text", text],
                             capture_output=True)
        checked += 1
        if run.returncode != 0:
            failures.append(f"{case['name']}: exit {run.returncode}: {run.stderr.decode(errors='replace').strip()}")
            continue
        ids = json.loads(run.stdout)
        if ids != case["ids"]:
            first = next((i for i, (a, b) in enumerate(zip(ids, case["ids"])) if a != b),
                         min(len(ids), len(case["ids"])))
            failures.append(f"{case['name']}: ids differ from HF at position {first} "
                            f"(ours {ids[first:first + 5]}, HF {case['ids'][first:first + 5]})")
    for failure in failures:
        print("FAIL:", failure)
    print(f"{checked - len(failures)} of {checked} cases agree with Hugging Face tokenizers")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
