#!/usr/bin/env python3
"""Train the course tokenizer: byte-level BPE in exactly Qwen2's layout (issue 3).

Needs HF `tokenizers` (runs on the GPU machine; no GPU used). The result has Qwen2's
NFC normalizer, its split regex (Split, Isolated) followed by ByteLevel(add_prefix_space=false,
use_regex=false), a ByteLevel post-processor and decoder, merges written as "a b" strings
like the published Qwen2 files, and the added tokens

  <|endoftext|> <|im_start|> <|im_end|>                          special=true
  <tool_call> </tool_call> <tool_response> </tool_response>      special=false (as in Qwen2.5)

placed after the BPE vocabulary. tokenizer_config.json carries the Qwen2.5 chat template
(default system prompt "You are a helpful assistant."), eos <|im_end|>, pad <|endoftext|>.

Usage: python3 tools/models/train_tokenizer.py --out DIR [--vocab 4096] [--seed 0] [--docs 60000]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus as mc  # noqa: E402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
BYTELEVEL = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def strip_specials(text):
    for t in SPECIAL + TOOL_TOKENS:
        text = text.replace(t, "\n")
    return text


def train(vocab_size, seed, n_docs):
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    n_added = len(SPECIAL) + len(TOOL_TOKENS)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - n_added, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    docs = mc.train_docs(seed, n_docs, shard=999, mix=mc.TOKENIZER_MIX, reading_q=1)
    # Some plain sentences with punctuation/case variety so that common words outside the
    # templates also get merges.
    texts = [strip_specials(d["text"]) for d in docs]
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def to_qwen2_json(tok):
    """Rewrite the trained tokenizer's JSON so its structure is exactly Qwen2's."""
    from tokenizers import Tokenizer, AddedToken
    d = json.loads(tok.to_str())
    model = d["model"]
    vocab = model["vocab"]
    merges = model["merges"]
    merges = [m if isinstance(m, str) else m[0] + " " + m[1] for m in merges]
    for m in merges:
        assert len(m.split(" ")) == 2, m
    n = len(vocab)
    added = []
    for i, t in enumerate(SPECIAL + TOOL_TOKENS):
        added.append({"id": n + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": t in SPECIAL})
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            dict(type="ByteLevel", **BYTELEVEL)]},
        "post_processor": dict(type="ByteLevel", **BYTELEVEL),
        "decoder": dict(type="ByteLevel", **BYTELEVEL),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    for a in added:
        vocab_key = a["content"]
        assert vocab_key not in vocab
    return out


def tokenizer_config(tj, max_len):
    added = {str(a["id"]): {k: a[k] for k in ["content", "lstrip", "normalized", "rstrip", "single_word", "special"]}
             for a in tj["added_tokens"]}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": mc.CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": max_len,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write(out_dir, tj, max_len):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(tj, max_len), f, ensure_ascii=False, indent=2)


CHECK_TEXTS = [
    "Hello, world! What is 37 + 58?",
    "I'm sure they'll say it's fine; we've done it. WE'RE DONE.",
    "  leading spaces,\ttabs\n\nand new lines\r\n end  ",
    "Brasília and Bogotá are capitals. Café, naïve, 18°C, 日本語, emoji 🙂.",
    "Numbers: 12345 3.14159 -42 1,000,000",
    '<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "2 + 2"}}\n</tool_call><|im_end|>',
]


def check(out_dir):
    """Load back with tokenizers and transformers; check round trips and the chat template."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    print("vocab size (with added):", tok.get_vocab_size(with_added_tokens=True))
    for t in CHECK_TEXTS:
        ids = tok.encode(t).ids
        back = tok.decode(ids, skip_special_tokens=False)
        print(len(ids), ids[:24], "roundtrip" if back == t else "ROUNDTRIP MISMATCH %r" % back)
    try:
        from transformers import AutoTokenizer
    except Exception as e:  # pragma: no cover
        print("transformers not available:", e)
        return
    hf = AutoTokenizer.from_pretrained(out_dir)
    print("HF tokenizer:", type(hf).__name__, "eos", hf.eos_token, hf.eos_token_id, "pad", hf.pad_token,
          hf.pad_token_id, "len", len(hf))
    for t in CHECK_TEXTS:
        a = hf(t, add_special_tokens=True)["input_ids"]
        b = tok.encode(t).ids
        assert a == b, (t, a, b)
    # Chat template == make_corpus.render on test conversations of every kind.
    import random
    tests = mc.make_test_set(seed=7, per_skill=3)
    n = 0
    for r in tests:
        msgs = r["messages"]
        tools = mc.TOOLS if r["tools"] else None
        want = mc.render(msgs, tools=tools, add_generation_prompt=True)
        got = hf.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
        if got != want:
            print("TEMPLATE MISMATCH\n--- got\n%s\n--- want\n%s" % (got, want))
            raise SystemExit(1)
        n += 1
    rng = random.Random(5)
    for _ in range(20):
        msgs, _info = mc.tool_conv(rng, mc.Split(False))
        want = mc.render(msgs, tools=mc.TOOLS)
        got = hf.apply_chat_template(msgs, tools=mc.TOOLS, tokenize=False)
        if got != want:
            print("TEMPLATE MISMATCH (tool conv)\n--- got\n%r\n--- want\n%r" % (got, want))
            raise SystemExit(1)
        n += 1
    print("chat template matches make_corpus.render on %d conversations" % n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", type=int, default=60000)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--check-only", action="store_true")
    a = ap.parse_args()
    if not a.check_only:
        tok = train(a.vocab, a.seed, a.docs)
        tj = to_qwen2_json(tok)
        write(a.out, tj, a.max_len)
        print("merges:", len(tj["model"]["merges"]), "vocab:", len(tj["model"]["vocab"]) + len(tj["added_tokens"]))
    check(a.out)


if __name__ == "__main__":
    main()
