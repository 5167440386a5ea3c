#!/usr/bin/env python3
"""Behaviour smoke tests of `tinyllm-ref chat` and `generate` on a tiny random model with a tokenizer
(data/fixtures/ch1.6/random-test-bpe, tools/fixtures/gen_app_model.py). The model's text is gibberish, so
these check behaviour only: exit codes, the stats line on stderr, the REPL keeping (and /reset forgetting) the
conversation, one-shot and REPL agreeing, greedy and seeded runs being reproducible. Standard library only.

    check_chat.py --exe build/reference/apps/tinyllm-ref --model data/fixtures/ch1.6/random-test-bpe
"""
import argparse
import re
import subprocess
import sys

STATS = re.compile(r"^\[(\d+) prompt tokens, (\d+) generated; prefill [\d.]+ s; [\d.]+ tokens/s; (.*)\]$")


def run(exe, args, stdin=""):
    p = subprocess.run([exe, *args], input=stdin.encode(), capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def stats(stderr):
    return [tuple(int(x) for x in m.groups()[:2]) for line in stderr.splitlines() if (m := STATS.match(line))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    m = ["--model", a.model, "--max-tokens", "6"]
    problems = []

    def check(condition, what, detail=""):
        print(("ok:   " if condition else "FAIL: ") + what)
        if not condition:
            problems.append(what)
            if detail:
                print("      " + detail.replace("\n", "\n      "))

    rc, out, err = run(a.exe, ["chat", "--prompt", "Hi", *m])
    s = stats(err)
    check(rc == 0 and len(s) == 1 and s[0][1] <= 6, "chat --prompt: exit 0 and one stats line", err)
    one_shot = out

    rc, out, err = run(a.exe, ["chat", *m], "Hi\nHow are you?\n/exit\nnever read\n")
    s = stats(err)
    check(rc == 0 and len(s) == 2, "REPL: two turns before /exit", err)
    if len(s) == 2:
        (p1, g1), (p2, _) = s
        check(p2 > p1 + g1, f"REPL: the second turn's prompt ({p2} tokens) holds the first turn ({p1} + {g1})")
    check(out.splitlines()[:1] == one_shot.splitlines()[:1], "REPL: the first answer equals chat --prompt's",
          f"one-shot {one_shot!r}\nrepl     {out!r}")

    rc, out, err = run(a.exe, ["chat", *m], "Hi\n/reset\nHi\n")
    s = stats(err)
    check(rc == 0 and len(s) == 2 and s[0][0] == s[1][0], "REPL: /reset forgets the conversation", err)

    rc, out, err = run(a.exe, ["chat", "--system", "Be brief.", *m], "Hi\n")
    s2 = stats(err)
    check(rc == 0 and len(s2) == 1 and s2[0][0] != s[0][0], "chat --system replaces the default system prompt", err)

    sampled = ["generate", "--prompt", "Once upon a time", "--temperature", "1.0", "--top-p", "0.95", *m]
    r1 = run(a.exe, [*sampled, "--seed", "5"])
    r2 = run(a.exe, [*sampled, "--seed", "5"])
    r3 = run(a.exe, [*sampled, "--seed", "6"])
    check(r1[0] == 0 and r1[1] == r2[1], "generate: the same --seed gives the same text", f"{r1[1]!r} vs {r2[1]!r}")
    check(r3[0] == 0 and r3[1] != r1[1], "generate: another --seed gives another text", f"{r1[1]!r} vs {r3[1]!r}")
    g1 = run(a.exe, ["generate", "--prompt", "Once upon a time", *m])
    g2 = run(a.exe, ["generate", "--prompt", "Once upon a time", "--seed", "9", *m])
    check(g1[0] == 0 and g1[1] == g2[1], "generate: greedy by default (the seed does not matter)")

    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
