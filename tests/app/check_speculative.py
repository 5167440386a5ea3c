#!/usr/bin/env python3
"""Speculative decoding through the command line (chapter 3.4): `tinyllm-ref chat` and `generate` give the same
greedy text with --draft-model DIR --draft-tokens K and with --prompt-lookup N as without, print the acceptance
rate on stderr, and a seeded sampled run repeats itself. Standard library only.

    check_speculative.py --exe build/reference/apps/tinyllm-ref --model data/models/tiny-qwen2 \
        --draft data/models/tiny-qwen2-draft [--extra=--quantize --extra=q8]
"""
import argparse
import re
import subprocess
import sys

SPEC = re.compile(r"^\[speculative decoding \((.*), k = (\d+)\): (\d+) rounds, (\d+) drafted, (\d+) accepted: "
                  r"acceptance rate ([\d.]+)%, ([\d.]+) accepted per round\]$")


def run(exe, args):
    p = subprocess.run([exe, *args], capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def spec_lines(stderr):
    return [m for line in stderr.splitlines() if (m := SPEC.match(line))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--extra", action="append", default=[], help="more flags for every run")
    ap.add_argument("--cases", type=int, default=3, help="how many of the prompts to try")
    a = ap.parse_args()
    problems = []

    def check(condition, what, detail=""):
        print(("ok:   " if condition else "FAIL: ") + what)
        if not condition:
            problems.append(what)
            if detail:
                print("      " + detail.replace("\n", "\n      "))

    base = ["--model", a.model, "--max-tokens", "24", *a.extra]
    cases = [
        ["chat", "--prompt", "Tell me a short story about a fox."],
        ["chat", "--prompt", "Use the following passages to answer the question.\n\nPassage 1: Torrowick is a "
         "small town by the Swan River. It was founded in 1635 by Fellath Rasem.\n\nQuestion: Who founded "
         "Torrowick?"],
        ["generate", "--prompt", "Once upon a time, there was a"],
    ]
    accepted_any = False
    for number, case in enumerate(cases[: a.cases]):
        rc, plain, err = run(a.exe, [*case, *base])
        check(rc == 0, f"{case[0]} {case[2][:30]!r}: the model alone runs", err)
        drafters = [["--draft-model", a.draft, "--draft-tokens", "4"], ["--prompt-lookup", "2", "--draft-tokens", "3"]]
        if number == 0:
            drafters.append(["--draft-model", a.draft])  # the default k
        for drafter in drafters:
            rc, out, err = run(a.exe, [*case, *base, *drafter])
            lines = spec_lines(err)
            check(rc == 0 and out == plain, f"{case[0]} {case[2][:30]!r} {' '.join(drafter[:2])}: same text",
                  f"alone:       {plain!r}\nspeculative: {out!r}\n{err}")
            check(len(lines) == 1, "  ... and one acceptance-rate line on stderr", err)
            if lines and int(lines[0].group(5)) > 0:
                accepted_any = True
    check(accepted_any, "some drafted tokens were accepted")

    # Sampling: the same seed gives the same text; the acceptance line is there too.
    sampled = ["chat", "--prompt", "Tell me a short story about a cat.", *base, "--temperature", "0.8",
               "--seed", "5", "--draft-model", a.draft, "--draft-tokens", "3"]
    rc1, out1, err1 = run(a.exe, sampled)
    rc2, out2, _ = run(a.exe, sampled)
    check(rc1 == 0 and rc2 == 0 and out1 == out2 and out1.strip(), "sampled: a seed repeats its text", err1)
    check(len(spec_lines(err1)) == 1, "sampled: one acceptance-rate line", err1)
    rc, out, err = run(a.exe, ["chat", "--prompt", "Tell me a short story about a cat.", *base, "--temperature",
                               "0.8", "--seed", "5", "--prompt-lookup", "2"])
    check(rc == 0 and len(spec_lines(err)) == 1, "sampled with prompt lookup runs", err)

    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print("all speculative checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
