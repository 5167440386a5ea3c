#!/usr/bin/env python3
"""Writes data/fixtures/tokenizer/nfc.json: strings and their NFC from Python's unicodedata (stdlib only).

The tokenizer test encodes each input with the test BPE and decodes it: a byte-level BPE round-trips bytes, so
the result must be the NFC the oracle computed. Cases: every code point with a canonical decomposition, given
in NFD and followed by combining marks in scrambled order; decomposed Hangul syllables (LV, LVT, and L V T
sequences that compose); random runs of starters and combining marks.
Run: python3 tools/tokenizer/make_nfc_fixture.py
"""
import json
import pathlib
import random
import sys
import unicodedata as ud

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "data/fixtures/tokenizer/nfc.json"


def main():
    rng = random.Random(42)
    marks = [chr(c) for c in range(0x300, 0x370)] + ["\u0591", "\u05b0", "\u093c", "\u094d", "\u0e48", "\u3099",
                                                     "\u309a", "\u1ab0", "\u20d0", "\u0f71", "\u0f72"]
    items = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or (0xAC00 <= cp <= 0xD7A3):
            continue
        d = ud.decomposition(chr(cp))
        if d and not d.startswith("<"):
            s = ud.normalize("NFD", chr(cp))
            extra = "".join(rng.choice(marks) for _ in range(rng.randint(0, 3)))
            items.append(s + extra)
    for _ in range(1500):
        s = chr(rng.randint(0xAC00, 0xD7A3))
        kind = rng.random()
        if kind < 0.4:
            items.append(ud.normalize("NFD", s))
        elif kind < 0.7:
            items.append(chr(0x1100 + rng.randint(0, 18)) + chr(0x1161 + rng.randint(0, 20)) +
                         chr(0x11A8 + rng.randint(0, 26)))
        else:
            items.append(s + chr(0x11A8 + rng.randint(0, 26)))
    starters = "aeiouAEIOUnNcCsSzZ\u0915\u0627\u05d0\u03b1\u03c9\u0435\u306f\u30cf\u1e00\u01b0"
    for _ in range(1500):
        items.append("".join(rng.choice(starters) if rng.random() < 0.35 else rng.choice(marks)
                             for _ in range(rng.randint(1, 8))))
    rng.shuffle(items)
    cases = []
    for i in range(0, len(items), 60):
        text = " ".join(items[i:i + 60])
        cases.append({"input": text, "nfc": ud.normalize("NFC", text)})
    OUT.write_text(json.dumps({"generator": "tools/tokenizer/make_nfc_fixture.py",
                               "oracle": f"Python {sys.version.split()[0]} unicodedata.normalize('NFC')",
                               "unicode_version": ud.unidata_version, "cases": cases},
                              ensure_ascii=False, indent=0), encoding="utf-8")
    print(f"wrote {OUT}: {len(cases)} cases, {len(items)} items")


if __name__ == "__main__":
    main()
