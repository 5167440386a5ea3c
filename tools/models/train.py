#!/usr/bin/env python3
"""Train the course models (issue 3) with PyTorch + HF transformers on one GPU.

  python3 tools/models/train.py --tokenizer data/models/tokenizer --out OUTDIR \
      --models main,draft,moe --budgets 240,60,150 --docs 1200000 --seed 0

Builds the corpus with make_corpus.py (in worker processes, one RNG stream per shard),
tokenizes it with the trained tokenizer, marks the trained tokens (assistant turns incl.
<|im_end|>; all of raw prose), packs whole documents into rows of --ctx tokens with
position ids restarting at each document, then trains each model for a wall-clock budget
(linear warm-up, cosine decay over the budget) with AdamW, bf16 autocast and fp32 master
weights, and saves it with save_pretrained(safe_serialization=True) in bf16, together with
the tokenizer files, into OUTDIR/<name>.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import make_corpus as mc  # noqa: E402

NAMES = {"main": "tiny-qwen2", "draft": "tiny-qwen2-draft", "moe": "tiny-qwen2-moe"}


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------

def _shard(args):
    seed, shard, n, tok_path, ctx, mix, reading_q = args
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    docs = mc.train_docs(seed, n, shard, mix=mc.MIXES[mix], reading_q=reading_q)
    encs = tok.encode_batch([d["text"] for d in docs], add_special_tokens=False)
    ids_out, mask_out, skills, dropped = [], [], [], {}
    for d, e in zip(docs, encs):
        ids = e.ids
        if len(ids) > ctx:
            dropped[d["skill"]] = dropped.get(d["skill"], 0) + 1
            continue
        starts = np.fromiter((o[0] for o in e.offsets), dtype=np.int64, count=len(ids))
        sp = np.asarray(d["spans"], dtype=np.int64)
        k = np.searchsorted(sp[:, 0], starts, side="right") - 1
        m = (k >= 0) & (starts < sp[np.maximum(k, 0), 1])
        ids_out.append(np.asarray(ids, dtype=np.int16))
        mask_out.append(m)
        skills.append(d["skill"])
    return ids_out, mask_out, skills, dropped


def build_data(tok_path, n_docs, seed, ctx, workers, mix="v1", reading_q=1, n_shards=56):
    import multiprocessing as mp
    from tokenizers import Tokenizer
    per = (n_docs + n_shards - 1) // n_shards
    jobs = [(seed, s, per, tok_path, ctx, mix, reading_q) for s in range(n_shards)]
    ids, masks, skills, dropped = [], [], [], {}
    with mp.get_context("fork").Pool(workers) as pool:
        for a, b, c, d in pool.imap(_shard, jobs):
            ids += a
            masks += b
            skills += c
            for k, v in d.items():
                dropped[k] = dropped.get(k, 0) + v
    log("docs kept %d, dropped (> %d tokens): %s" % (len(ids), ctx, dropped))
    tok = Tokenizer.from_file(tok_path)
    # Sanity: the trained tokens decode to the assistant spans.
    for i in range(3):
        j = [t for t in range(len(skills)) if skills[t] != "prose"][i]
        print("  sample %s trained: %r" % (skills[j], tok.decode(ids[j][masks[j]].astype(np.int64).tolist(),
                                                                  skip_special_tokens=False)), flush=True)
    stats = {}
    for s, a, m in zip(skills, ids, masks):
        st = stats.setdefault(s, [0, 0, 0])
        st[0] += 1
        st[1] += len(a)
        st[2] += int(m.sum())
    tot = sum(v[1] for v in stats.values())
    for s, (n, t, tr) in sorted(stats.items()):
        log("  %-10s docs %8d  tokens %10d (%4.1f%%)  trained %9d  mean len %5.1f" % (s, n, t, 100.0 * t / tot, tr, t / n))
    # Pack whole documents into rows of ctx tokens (first fit over a few open rows). Position
    # ids restart at every document; attention is NOT masked between documents of a row
    # (transformers 5.17 with sdpa does not isolate them; train.py used to check this), which
    # is ordinary GPT-style packing. An attempt at one-document-per-row, length-grouped batches
    # trained far worse in the same time (batches of one skill each), so it was dropped.
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    pad = tok.token_to_id("<|endoftext|>")
    max_rows = tot // ctx + len(ids) // 8 + 16
    R_ids = np.full((max_rows, ctx), pad, dtype=np.int16)
    R_mask = np.zeros((max_rows, ctx), dtype=bool)
    R_pos = np.zeros((max_rows, ctx), dtype=np.int16)
    open_rows = []  # [row, fill]
    n_rows = 0
    for i in order:
        a = ids[i]
        n = len(a)
        for slot in open_rows:
            if slot[1] + n <= ctx:
                break
        else:
            if len(open_rows) >= 4:
                open_rows.sort(key=lambda s: s[1])
                open_rows.pop()
            slot = [n_rows, 0]
            n_rows += 1
            open_rows.append(slot)
        r, p = slot
        R_ids[r, p:p + n] = a
        R_mask[r, p:p + n] = masks[i]
        R_pos[r, p:p + n] = np.arange(n, dtype=np.int16)
        slot[1] += n
    R_ids, R_mask, R_pos = R_ids[:n_rows], R_mask[:n_rows], R_pos[:n_rows]
    log("packed %d rows x %d: %.1f%% filled, %.1f%% of tokens trained" % (
        n_rows, ctx, 100.0 * (R_ids != pad).mean(), 100.0 * R_mask.mean()))
    return R_ids, R_mask, R_pos


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------

def make_config(kind, vocab, ctx, ids):
    from transformers import Qwen2Config, Qwen2MoeConfig
    common = dict(vocab_size=vocab, max_position_embeddings=ctx, rms_norm_eps=1e-6, rope_theta=1000000.0,
                  hidden_act="silu", initializer_range=0.02, bos_token_id=ids["<|endoftext|>"],
                  eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], use_cache=True,
                  use_sliding_window=False, attention_dropout=0.0)
    if kind == "main":
        cfg = Qwen2Config(hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=4,
                          num_key_value_heads=2, tie_word_embeddings=True, max_window_layers=8, **common)
    elif kind == "draft":
        cfg = Qwen2Config(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, tie_word_embeddings=True, max_window_layers=2, **common)
    elif kind == "moe":
        cfg = Qwen2MoeConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2, tie_word_embeddings=False, max_window_layers=4,
                             num_experts=8, num_experts_per_tok=2, moe_intermediate_size=128,
                             shared_expert_intermediate_size=384, decoder_sparse_step=1, mlp_only_layers=[],
                             norm_topk_prob=False, output_router_logits=True, router_aux_loss_coef=0.01,
                             qkv_bias=True, **common)
    else:
        raise KeyError(kind)
    # transformers 5 keeps RoPE settings in rope_parameters; make sure theta is what we want.
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        rp["rope_theta"] = 1000000.0
        rp.setdefault("rope_type", "default")
    return cfg


def build_model(kind, cfg):
    import torch
    from transformers import Qwen2ForCausalLM, Qwen2MoeForCausalLM
    cls = Qwen2MoeForCausalLM if kind == "moe" else Qwen2ForCausalLM
    model = cls(cfg).to(torch.float32)
    log("attention implementation:", getattr(model.config, "_attn_implementation", None))
    return model


def count_params(model):
    seen = set()
    n = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
    emb = model.get_input_embeddings().weight.numel()
    return n, n - emb


def fix_saved(out_dir, kind, cfg):
    """Make the saved directory look like a published Qwen2 checkpoint: rope_theta at the top
    level of config.json, per-expert MoE weights. Returns a list of what was changed."""
    changed = []
    p = os.path.join(out_dir, "config.json")
    with open(p) as f:
        c = json.load(f)
    if "rope_theta" not in c:
        c["rope_theta"] = 1000000.0
        changed.append("config: added top-level rope_theta")
    if c.get("output_router_logits"):
        c["output_router_logits"] = False
        changed.append("config: output_router_logits=false")
    with open(p, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    if kind == "moe":
        from safetensors import safe_open
        from safetensors.torch import save_file
        st = os.path.join(out_dir, "model.safetensors")
        with safe_open(st, "pt") as f:
            keys = list(f.keys())
            meta = f.metadata() or {}
            if any(k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj") for k in keys):
                t = {k: f.get_tensor(k) for k in keys}
            else:
                t = None
        if t is not None:
            I = cfg.moe_intermediate_size
            out = {}
            for k, v in t.items():
                if k.endswith("experts.gate_up_proj"):
                    pre = k[: -len("gate_up_proj")]
                    if v.shape[1] != 2 * I:  # [E, H, 2I] layout
                        v = v.transpose(1, 2)
                    for e in range(v.shape[0]):
                        out[pre + "%d.gate_proj.weight" % e] = v[e, :I].contiguous()
                        out[pre + "%d.up_proj.weight" % e] = v[e, I:].contiguous()
                elif k.endswith("experts.down_proj"):
                    pre = k[: -len("down_proj")]
                    if v.shape[1] != cfg.hidden_size:
                        v = v.transpose(1, 2)
                    for e in range(v.shape[0]):
                        out[pre + "%d.down_proj.weight" % e] = v[e].contiguous()
                else:
                    out[k] = v
            meta = dict(meta)
            meta.setdefault("format", "pt")
            save_file(out, st, metadata=meta)
            changed.append("moe: fused experts split into per-expert tensors")
    return changed


def save_model(model, kind, cfg, out_dir, tok_dir):
    import torch
    os.makedirs(out_dir, exist_ok=True)
    m = model
    if hasattr(m, "_orig_mod"):
        m = m._orig_mod
    if kind == "moe":
        m.config.output_router_logits = False
    import copy
    c = copy.deepcopy(m).to(torch.bfloat16)  # converting m in place would also round its RoPE buffers
    try:
        c.save_pretrained(out_dir, safe_serialization=True)
    except TypeError:
        c.save_pretrained(out_dir)
    del c
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out_dir, f))
    ids = json.load(open(os.path.join(tok_dir, "tokenizer.json")))["added_tokens"]
    ids = {a["content"]: a["id"] for a in ids}
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
           "pad_token_id": ids["<|endoftext|>"], "do_sample": False, "max_new_tokens": 256}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    changed = fix_saved(out_dir, kind, cfg)
    log("saved %s %s; files %s" % (out_dir, changed, sorted(os.listdir(out_dir))))


def verify_saved(model, out_dir, device):
    """HF loads the directory as it is and reproduces the trained model's logits."""
    import torch
    from transformers import AutoModelForCausalLM
    try:
        re = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    except TypeError:
        re = AutoModelForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32)
    re.to(device).eval()
    m = model._orig_mod if hasattr(model, "_orig_mod") else model
    for mm in (m, re):
        if hasattr(mm, "set_experts_implementation") and getattr(mm.config, "num_experts", None):
            try:
                mm.set_experts_implementation("eager")
            except Exception:  # noqa: BLE001
                pass
    x = torch.randint(0, m.config.vocab_size, (2, 64), device=device)
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        w = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in m.state_dict().items()}
        m_cpu_state = {k: v.clone() for k, v in m.state_dict().items()}
        m.load_state_dict(w)
        m.eval()
        a = m(x).logits
        b = re(x).logits
        m.load_state_dict(m_cpu_state)
    torch.backends.cuda.matmul.allow_tf32 = True
    d = (a - b).abs().max().item()
    log("reload check %s: max |logit diff| = %.3g (%s)" % (out_dir, d, "OK" if d < 1e-3 else "MISMATCH"))
    with open(os.path.join(out_dir, "config.json")) as f:
        print(f.read(), flush=True)
    from safetensors import safe_open
    with safe_open(os.path.join(out_dir, "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        print("  %d tensors, e.g. %s" % (len(keys), [(k, list(f.get_slice(k).get_shape())) for k in keys[:14]]),
              flush=True)
    del re
    return d


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------

def train_one(kind, cfg, data, budget_s, batch, lr, device, compile_model, log_every=100, max_steps=None):
    import torch
    model = build_model(kind, cfg).to(device)
    n, n_ne = count_params(model)
    log("%s: %d parameters (%d without embeddings)" % (kind, n, n_ne))
    if kind == "moe" and hasattr(model, "set_experts_implementation"):
        for impl in ("grouped_mm", "eager"):
            try:
                model.set_experts_implementation(impl)
                x = torch.as_tensor(data[0][:2].astype(np.int64), device=device)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = model(input_ids=x, labels=x)
                out.loss.backward()
                model.zero_grad(set_to_none=True)
                log("moe experts implementation:", impl)
                break
            except Exception as e:  # noqa: BLE001
                log("experts implementation %s failed: %r" % (impl, e))
    decay, no_decay = [], []
    for name_, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = model
    if compile_model:
        fwd = torch.compile(model)
    R_ids, R_mask, R_pos = data
    ids_t = torch.as_tensor(R_ids.astype(np.int32)).to(device)
    mask_t = torch.as_tensor(R_mask).to(device)
    pos_t = torch.as_tensor(R_pos.astype(np.int32)).to(device)
    n_rows = ids_t.shape[0]
    g = torch.Generator(device=device)
    g.manual_seed(1234)
    perm = torch.randperm(n_rows, device=device, generator=g)
    cursor = 0
    warm = 100
    step = 0
    t_start = time.time()
    tok_seen = 0
    losses = []
    model.train()
    while True:
        el = time.time() - t_start
        if el >= budget_s or (max_steps and step >= max_steps):
            break
        frac = el / budget_s
        cur_lr = lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gr in opt.param_groups:
            gr["lr"] = cur_lr
        if cursor + batch > n_rows:
            perm = torch.randperm(n_rows, device=device, generator=g)
            cursor = 0
        idx = perm[cursor:cursor + batch]
        cursor += batch
        x = ids_t[idx].long()
        y = torch.where(mask_t[idx], x, torch.full_like(x, -100))
        pos = pos_t[idx].long()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fwd(input_ids=x, position_ids=pos, labels=y)
        loss = out.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tok_seen += x.numel()
        if step % log_every == 0 or step == 5:
            l = loss.item()
            losses.append((step, l))
            now = time.time()
            log("%s step %5d loss %.4f lr %.2e  %.0f tok/s  (%.0fs)" % (
                kind, step, l, cur_lr, tok_seen / (now - t_start), now - t_start))
    log("%s done: %d steps, %.1fM tokens in %.0fs" % (kind, step, tok_seen / 1e6, time.time() - t_start))
    model.eval()
    info = {"steps": step, "tokens": tok_seen, "seconds": time.time() - t_start, "batch_rows": batch, "lr": lr,
            "params": n, "params_non_embedding": n_ne, "final_loss": losses[-1][1] if losses else None}
    return model, info


def main():
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json + tokenizer_config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="main,draft,moe")
    ap.add_argument("--budgets", default="240,60,150", help="seconds of training per model")
    ap.add_argument("--docs", type=int, default=1200000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128, help="rows of --ctx tokens per step")
    ap.add_argument("--mix", default="v1", choices=["v1", "v2"], help="corpus mix (make_corpus.MIXES)")
    ap.add_argument("--reading-q", type=int, default=1, help="questions per reading document (1..n)")
    ap.add_argument("--lr", default="2e-3,3e-3,2e-3")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--shards", type=int, default=56, help="corpus shards (one RNG stream each)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--copy-to", default="", help="also copy each finished model dir here (e.g. $OUT)")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(a.seed)
    device = "cuda"
    import transformers
    log("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name(0))
    tok_path = os.path.join(a.tokenizer, "tokenizer.json")
    tj = json.load(open(tok_path))
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    vocab = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
    data = build_data(tok_path, a.docs, a.seed, a.ctx, a.workers, a.mix, a.reading_q, a.shards)
    kinds = a.models.split(",")
    budgets = [float(b) for b in a.budgets.split(",")]
    lrs = [float(x) for x in a.lr.split(",")]
    lr_of = dict(zip(["main", "draft", "moe"], lrs))
    report = {}
    for kind, budget in zip(kinds, budgets):
        torch.manual_seed(a.seed)
        cfg = make_config(kind, vocab, a.ctx, ids)
        model, info = train_one(kind, cfg, data, budget, a.batch, lr_of[kind], device, a.compile,
                                max_steps=a.max_steps or None)
        out_dir = os.path.join(a.out, NAMES[kind])
        save_model(model, kind, cfg, out_dir, a.tokenizer)
        info["reload_max_diff"] = verify_saved(model, out_dir, device)
        report[NAMES[kind]] = info
        with open(os.path.join(a.out, "train_report.json"), "w") as f:
            json.dump(report, f, indent=2)
        if a.copy_to:  # one tar per model: the device returns at most 8 files
            import tarfile
            os.makedirs(a.copy_to, exist_ok=True)
            with tarfile.open(os.path.join(a.copy_to, NAMES[kind] + ".tar"), "w") as tf:
                tf.add(out_dir, arcname=NAMES[kind])
            shutil.copy(os.path.join(a.out, "train_report.json"), os.path.join(a.copy_to, "train_report.json"))
        del model
        torch.cuda.empty_cache()
    log("all done")


if __name__ == "__main__":
    main()
