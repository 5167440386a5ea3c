#!/usr/bin/env python3
"""Held-out evaluation of the course models with HF transformers (issue 3).

  python3 tools/models/evaluate.py --models-dir data/models --out eval.json [--per-skill 200]

For every model directory found (tiny-qwen2, tiny-qwen2-draft, tiny-qwen2-moe) it greedily
answers the held-out test split of make_corpus.py (float32 compute from the bf16 weights,
batched, left padded) and reports accuracy per skill:

  exact       the answer (up to <|im_end|>) equals the reference sentence
  tool_call   the answer is <tool_call>\\n{json}\\n</tool_call>, the JSON parses, and name and
              arguments equal the expected call
  no_tool     no <tool_call> and the exact reference answer
  story       starts with "Once upon a time" and names the requested animal (informative only)

plus passkey accuracy by prompt length, and the draft/main greedy next-token agreement:
teacher-forced on the held-out conversations, the share of assistant positions where the
draft's argmax equals the main model's argmax.
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus as mc  # noqa: E402

MODELS = ["tiny-qwen2", "tiny-qwen2-draft", "tiny-qwen2-moe"]
TOOL_RE = re.compile(r"^<tool_call>\n(.*)\n</tool_call>$", re.S)


def load(path, device):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return tok, model.to(device).eval()


def prompt_of(r):
    return mc.render(r["messages"], tools=mc.TOOLS if r["tools"] else None, add_generation_prompt=True)


def generate(tok, model, prompts, max_new, device, bs=256):
    import torch
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    tok.padding_side = "left"
    outs = []
    for i in range(0, len(prompts), bs):
        chunk = prompts[i:i + bs]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=max_new, do_sample=False, eos_token_id=[im_end],
                               pad_token_id=pad)
        new = g[:, enc["input_ids"].shape[1]:].tolist()
        for seq in new:
            if im_end in seq:
                seq = seq[:seq.index(im_end)]
            outs.append(tok.decode(seq, skip_special_tokens=False).replace("<|endoftext|>", ""))
    return outs


def check(r, out):
    c = r["check"]
    if c == "exact":
        return out.strip() == r["answer"]
    if c == "no_tool":
        return "<tool_call>" not in out and out.strip() == r["answer"]
    if c == "tool_call":
        m = TOOL_RE.match(out.strip())
        if not m:
            return False
        try:
            call = json.loads(m.group(1))
        except ValueError:
            return False
        return call.get("name") == r["expected_call"]["name"] and call.get("arguments") == r["expected_call"]["arguments"]
    if c == "story":
        return out.startswith("Once upon a time") and r["animal"] in out
    raise KeyError(c)


def evaluate_model(tok, model, tests, device):
    by_skill = {}
    for r in tests:
        by_skill.setdefault(r["skill"], []).append(r)
    res = {}
    fails = {}
    passkey_len = {}
    for skill, rs in sorted(by_skill.items()):
        prompts = [prompt_of(r) for r in rs]
        max_new = 200 if skill == "story" else 64
        outs = generate(tok, model, prompts, max_new, device)
        ok = [check(r, o) for r, o in zip(rs, outs)]
        res[skill] = {"n": len(rs), "correct": sum(ok), "accuracy": sum(ok) / len(rs)}
        fails[skill] = [{"prompt": r["messages"][-1]["content"][-200:], "expected": r["answer"], "got": o}
                        for r, o, k in zip(rs, outs, ok) if not k][:5]
        if skill == "passkey":
            for r, p, k in zip(rs, prompts, ok):
                n = len(tok(p, add_special_tokens=False)["input_ids"])
                b = "%d-%d" % ((n // 128) * 128, (n // 128) * 128 + 127)
                x = passkey_len.setdefault(b, [0, 0])
                x[0] += 1
                x[1] += int(k)
    res["passkey_by_length"] = {b: {"n": v[0], "accuracy": v[1] / v[0]} for b, v in sorted(passkey_len.items())}
    return res, fails


def agreement(tok_main, main, draft, tests, device, per_skill=40):
    """Teacher-forced greedy next-token agreement on assistant positions."""
    import torch
    seen = {}
    pos_total = agree = main_ref = draft_ref = 0
    all_total = all_agree = 0
    for r in tests:
        if r["check"] == "story" or seen.get(r["skill"], 0) >= per_skill:
            continue
        seen[r["skill"]] = seen.get(r["skill"], 0) + 1
        ans = r["answer"] if isinstance(r["answer"], dict) else {"role": "assistant", "content": r["answer"]}
        text, spans = mc.render(r["messages"] + [ans], tools=mc.TOOLS if r["tools"] else None, with_spans=True)
        enc = tok_main(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        s0, s1 = spans[-1]
        tgt = [t for t, (a, b) in enumerate(enc["offset_mapping"]) if s0 <= a < s1 and t > 0]
        x = torch.tensor([ids], device=device)
        with torch.no_grad():
            am = main(x).logits[0].argmax(-1)
            ad = draft(x).logits[0].argmax(-1)
        xi = x[0]
        for t in tgt:
            pos_total += 1
            agree += int(am[t - 1] == ad[t - 1])
            main_ref += int(am[t - 1] == xi[t])
            draft_ref += int(ad[t - 1] == xi[t])
        all_total += len(ids) - 1
        all_agree += int((am[:-1] == ad[:-1]).sum())
    return {"assistant_positions": pos_total, "agreement": agree / pos_total,
            "main_matches_reference": main_ref / pos_total, "draft_matches_reference": draft_ref / pos_total,
            "all_positions": all_total, "agreement_all_positions": all_agree / all_total}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default="data/models")
    ap.add_argument("--out", default="-")
    ap.add_argument("--per-skill", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    t0 = time.time()
    tests = mc.make_test_set(a.seed, a.per_skill)
    results = {"test_seed": a.seed, "per_skill": a.per_skill, "models": {}, "failures": {}}
    loaded = {}
    for name in a.models.split(","):
        path = os.path.join(a.models_dir, name)
        if not os.path.isdir(path):
            continue
        tok, model = load(path, a.device)
        res, fails = evaluate_model(tok, model, tests, a.device)
        results["models"][name] = res
        results["failures"][name] = fails
        print("== %s (%.0fs)" % (name, time.time() - t0), flush=True)
        for k, v in res.items():
            if "accuracy" in v:
                print("  %-18s %6.1f%%  (%d/%d)" % (k, 100 * v["accuracy"], v["correct"], v["n"]), flush=True)
        print("  passkey by prompt length:", json.dumps(res["passkey_by_length"]), flush=True)
        for k, v in fails.items():
            for f in v[:2]:
                print("  FAIL %s: expected %r got %r" % (k, f["expected"], f["got"]), flush=True)
        loaded[name] = (tok, model)
        if a.out != "-":  # partial results survive a time-out
            with open(a.out, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2, ensure_ascii=False)
    if "tiny-qwen2" in loaded and "tiny-qwen2-draft" in loaded:
        ag = agreement(loaded["tiny-qwen2"][0], loaded["tiny-qwen2"][1], loaded["tiny-qwen2-draft"][1], tests,
                       a.device)
        results["draft_agreement"] = ag
        print("draft/main agreement:", json.dumps(ag), flush=True)
    results["seconds"] = time.time() - t0
    s = json.dumps(results, indent=2, ensure_ascii=False)
    if a.out == "-":
        print(s)
    else:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(s)


if __name__ == "__main__":
    main()
