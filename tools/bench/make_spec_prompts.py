#!/usr/bin/env python3
"""Writes the prompt sets of chapter 3.4's measurements (`tinyllm-ref bench --draft-model/--prompt-lookup
--prompts-file ...`, book/week3/ch3_4_speculative_decoding.md) from the held-out set, deterministically:

  bench/speculative/heldout20.jsonl   20 held-out chat prompts without tools: the first record of each skill in
                                      file order, then the second ones, until 20 (arithmetic, facts, reading,
                                      passkey, stories)
  bench/speculative/summarise20.jsonl 20 "summarise this passage" prompts: the gold passage of the first 20
                                      reading records, then "Summarise this passage." (a copying workload)
  bench/speculative/reading20.jsonl   the first 20 reading records as they are (the answer copies a sentence)
  bench/speculative/stories10.jsonl   the first 10 story records (long answers: the draft's prefill is amortised)

Each line is a JSONL record {"skill": ..., "messages": [...]}, as data/models/eval/heldout.jsonl. Standard
library only.

    python3 tools/bench/make_spec_prompts.py
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "data/models/eval/heldout.jsonl"
OUT = ROOT / "bench/speculative"


def write(name, records):
    with open(OUT / name, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"skill": r["skill"], "messages": r["messages"]}, ensure_ascii=False) + "\n")
    print(f"wrote {OUT / name}: {len(records)} prompts")


def main():
    records = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    plain = [r for r in records if not r["tools"]]
    by_skill = {}
    for r in plain:
        by_skill.setdefault(r["skill"], []).append(r)
    chosen = []
    for rank in range(10):
        for skill_records in by_skill.values():
            if rank < len(skill_records) and len(chosen) < 20:
                chosen.append(skill_records[rank])
    OUT.mkdir(parents=True, exist_ok=True)
    write("heldout20.jsonl", chosen)
    reading = [r for r in plain if r["skill"] == "reading"][:20]
    write("reading20.jsonl", reading)
    write("stories10.jsonl", [r for r in plain if r["skill"] == "story"][:10])
    summarise = []
    for r in reading:
        passage = r["passages"][r["gold_passage"]]
        summarise.append({"skill": "summarise", "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Summarise this passage.\n\nPassage: {passage}"}]})
    write("summarise20.jsonl", summarise)


if __name__ == "__main__":
    main()
