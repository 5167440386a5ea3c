#!/usr/bin/env python3
"""HF-oracle fixtures for the course models (issue 3).

  python3 tools/models/make_fixtures.py --models-dir data/models --out data/fixtures/models

For each model (tiny-qwen2, tiny-qwen2-moe, tiny-qwen2-draft) and each prompt in PROMPTS it
writes <model>.<prompt>.safetensors with
  input_ids       int32 [T]        the prompt's token ids (tokenizer.json, no BOS)
  logits          float32 [K, V]   logits of positions logits_start .. T-1 (K = min(T, 100)),
                                   computed by HF transformers in float32 from the bf16 weights
  greedy_ids      int32 [32]       32 greedy tokens after the prompt (no stop at <|im_end|>;
                                   recomputed without KV cache at each step)
  greedy_margin   float32 [32]     top-1 minus top-2 logit at each greedy step (near ties show up here)
and __metadata__ (model, prompt name and text, logits_start, oracle versions, tolerance).
prompts.json describes the prompts; tokenizer_cases.json holds tokenizer.json encodings of
awkward strings for the tokenizer's tests.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus as mc  # noqa: E402

MODELS = ["tiny-qwen2", "tiny-qwen2-moe", "tiny-qwen2-draft"]
N_GREEDY = 32
MAX_LOGIT_ROWS = 100


def prompts():
    sysmsg = {"role": "system", "content": mc.DEFAULT_SYSTEM}
    reading = ("Answer the question using the passages below.\n\n"
               "Passage 1: Pelmoford is a small town by the Amber River. It was founded in 1642 by Sela Varn. "
               "The town is known for its glass lamps. The mayor of Pelmoford is Tor Dunlis.\n\n"
               "Passage 2: Ravi Kesto is a painter who lives in Halbamere. Ravi was born in 1987 and plays the harp."
               "\n\nQuestion: Who founded Pelmoford?")
    out = [
        ("chat_add", [sysmsg, {"role": "user", "content": "What is 23 + 45?"}], None),
        ("chat_capital", [sysmsg, {"role": "user", "content": "What is the capital of France?"}], None),
        ("chat_multiturn", [sysmsg, {"role": "user", "content": "Hello!"},
                            {"role": "assistant", "content": "Hello! How can I help you today?"},
                            {"role": "user", "content": "What day comes after Friday?"}], None),
        ("chat_reading", [sysmsg, {"role": "user", "content": reading}], None),
        ("tool_weather", [{"role": "user", "content": "What's the weather in Paris?"}], mc.TOOLS),
    ]
    res = []
    for name, msgs, tools in out:
        res.append({"name": name, "messages": msgs, "tools": tools is not None,
                    "text": mc.render(msgs, tools=tools, add_generation_prompt=True)})
    res.append({"name": "raw_story", "messages": None, "tools": False,
                "text": "Once upon a time, there was a little fox named"})
    return res


TOKENIZER_CASES = [
    "Hello, world!",
    "What is 37 + 58?",
    "12345678901234567890",
    "I'm here, you're there, it's fine, we'll see, they've gone, he'd know, SHE'LL COME.",
    "  two leading spaces and trailing spaces   ",
    "tabs\tand\nnew\n\nlines\r\nwindows",
    "Brasília, Bogotá, naïve café, 18°C, Straße, 日本語のテキスト, emoji 🙂👍",
    "e\u0301 (decomposed) vs \u00e9 (composed)",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_response>\n{\"temperature_c\": 18}\n</tool_response>",
    "The pass key is 48213. Remember it.",
    "x=1;y=-2.5e3 // code: if (a<b) { return a*b; }",
    "",
    " ",
    "\n",
]


def main():
    import torch
    import transformers
    from safetensors.torch import save_file
    from tokenizers import Tokenizer
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default="data/models")
    ap.add_argument("--out", default="data/fixtures/models")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    from transformers import AutoModelForCausalLM
    ps = prompts()
    tok = Tokenizer.from_file(os.path.join(a.models_dir, MODELS[0], "tokenizer.json"))
    for p in ps:
        p["input_ids"] = tok.encode(p["text"], add_special_tokens=False).ids
    cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TOKENIZER_CASES]
    for c in cases:
        c["decoded"] = tok.decode(c["ids"], skip_special_tokens=False)
    with open(os.path.join(a.out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/models/make_fixtures.py", "tokenizer": "data/models/tiny-qwen2/tokenizer.json",
                   "cases": cases}, f, ensure_ascii=False, indent=1)
    oracle = "transformers %s, torch %s, float32 compute from bf16 weights" % (transformers.__version__,
                                                                              torch.__version__)
    files = {}
    for name in MODELS:
        path = os.path.join(a.models_dir, name)
        if not os.path.isdir(path):
            continue
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
        model.to(a.device).eval()
        if hasattr(model, "set_experts_implementation") and getattr(model.config, "num_experts", None):
            try:
                model.set_experts_implementation("eager")
            except Exception:  # noqa: BLE001
                pass
        for p in ps:
            ids = p["input_ids"]
            x = torch.tensor([ids], device=a.device)
            with torch.no_grad():
                logits = model(x).logits[0].float()
                seq = list(ids)
                greedy, margin = [], []
                for _ in range(N_GREEDY):
                    l = model(torch.tensor([seq], device=a.device)).logits[0, -1].float()
                    top = torch.topk(l, 2)
                    greedy.append(int(top.indices[0]))
                    margin.append(float(top.values[0] - top.values[1]))
                    seq.append(greedy[-1])
            T = len(ids)
            start = max(0, T - MAX_LOGIT_ROWS)
            tensors = {
                "input_ids": torch.tensor(ids, dtype=torch.int32),
                "logits": logits[start:].contiguous().cpu(),
                "greedy_ids": torch.tensor(greedy, dtype=torch.int32),
                "greedy_margin": torch.tensor(margin, dtype=torch.float32),
            }
            meta = {"generator": "tools/models/make_fixtures.py", "model": "data/models/" + name,
                    "prompt_name": p["name"], "prompt": p["text"], "logits_start": str(start),
                    "n_greedy": str(N_GREEDY), "oracle": oracle,
                    "tolerance": "logits: atol 2e-3 + rtol 1e-3 against a float32 engine",
                    "greedy_note": "no stop at <|im_end|>; compare only while greedy_margin is clearly > 0"}
            fn = "%s.%s.safetensors" % (name, p["name"])
            save_file(tensors, os.path.join(a.out, fn), metadata=meta)
            files.setdefault(p["name"], []).append(fn)
            print("%s: T=%d logits rows %d-%d greedy %s min margin %.3f -> %r" % (
                fn, T, start, T - 1, greedy[:12], min(margin), tok.decode(greedy, skip_special_tokens=False)[:80]),
                flush=True)
        del model
    desc = {"generator": "tools/models/make_fixtures.py", "oracle": oracle, "n_greedy": N_GREEDY,
            "max_logit_rows": MAX_LOGIT_ROWS, "models": [m for m in MODELS if os.path.isdir(os.path.join(a.models_dir, m))],
            "prompts": [{k: p[k] for k in ("name", "messages", "tools", "text", "input_ids")} | {"files": files.get(p["name"], [])}
                        for p in ps]}
    with open(os.path.join(a.out, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump(desc, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
