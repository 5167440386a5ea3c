#!/usr/bin/env python3
"""Writes the two text corpora of the tokenizer fixtures (stdlib only, deterministic).

- data/fixtures/tokenizer/corpus.txt (committed): ~40 KB of mixed text (a licence, multilingual sentences,
  code, numbers, whitespace runs) that the oracle encodes with both tokenizers; the C++ test must match it id
  for id.
- $TINYLLM_CACHE_DIR/tok-train/train.txt (default .cache/tok-train, not committed): the training text of the
  small test BPE (data/tokenizers/test-bpe): Debian's /usr/share/common-licenses/* plus generated
  multilingual text.

Run from anywhere: python3 tools/tokenizer/make_corpora.py
"""
import os
import pathlib
import random

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("TINYLLM_CACHE_DIR", ROOT / ".cache"))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure he'll come, but they've said we'd better wait; it's O'NEILL's call.",
    "Don't PANIC: the answer is 42, not 3.14159 or 2.71828.",
    "Straße, Größe, naïve café, résumé, façade, Ångström, Øresund.",
    "Ελληνικά: Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "你好，世界！今天的天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支，大型语言模型可以生成文本。",
    "日本語のテキスト：こんにちは、世界。カタカナとひらがなと漢字。",
    "한국어 문장입니다. 안녕하세요, 세계! 대규모 언어 모델.",
    "العربية: مرحبا بالعالم، هذه جملة للاختبار.",
    "हिन्दी: नमस्ते दुनिया, यह एक परीक्षण वाक्य है।",
    "ภาษาไทย: สวัสดีชาวโลก",
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇩🇪 🇯🇵 ❤️ 🚀✨",
    "Tabs\tand\t\tspaces   and\nnewlines\n\n\nand\r\nCRLF.",
    "def add(a, b):\n    return a + b  # adds two numbers\n",
    "for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }",
    "<html><body class=\"main\">Hello &amp; welcome!</body></html>",
    "Prices: $19.99, €5,00, £3; phone +1-555-0100; 2024-06-01T12:30:00Z.",
    "Full-width: ＡＢＣ１２３ and superscripts x² + y³ = z⁴, fractions ½ ¾, Roman Ⅻ.",
]

CODE = '''#include <vector>
int main(int argc, char** argv) {
  std::vector<int> v{1, 2, 3};
  for (auto& x : v) x *= 2;   // double
  return v.size() == 3 ? 0 : 1;
}

import json, sys
def main() -> int:
    data = {"name": "tiny-llm", "layers": 24, "ok": True}
    print(json.dumps(data, indent=2))
    return 0
'''


def mixed_text(rng: random.Random, n_lines: int) -> str:
    out = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(1, 4)):
            s = rng.choice(SENTENCES)
            if rng.random() < 0.2:
                s = s.upper()
            parts.append(s)
        if rng.random() < 0.3:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
        sep = rng.choice([" ", "  ", "\t", " \n", "\n\n", " ", " "])
        out.append(sep.join(parts))
    return "\n".join(out) + "\n"


def main() -> None:
    rng = random.Random(20240601)
    licence = pathlib.Path("/usr/share/common-licenses/Apache-2.0").read_text(encoding="utf-8")
    corpus = licence[:8000] + "\n" + mixed_text(rng, 90) + CODE + mixed_text(rng, 30)
    # No carriage returns: the oracle reads the file in Python's universal-newline mode (CR cases are in the
    # fixture's short strings instead).
    corpus = corpus.replace("\r\n", "\n").replace("\r", "\n")
    out = ROOT / "data/fixtures/tokenizer/corpus.txt"
    out.write_text(corpus, encoding="utf-8")
    print(f"wrote {out} ({len(corpus.encode())} bytes)")

    texts = []
    for p in sorted(pathlib.Path("/usr/share/common-licenses").iterdir()):
        if p.is_file() and not p.is_symlink():
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
    texts.append(mixed_text(random.Random(7), 2500))
    texts.append(CODE * 20)
    train = CACHE / "tok-train/train.txt"
    train.parent.mkdir(parents=True, exist_ok=True)
    train.write_text("\n".join(texts), encoding="utf-8")
    print(f"wrote {train} ({train.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
