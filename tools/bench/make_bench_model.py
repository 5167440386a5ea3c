#!/usr/bin/python3
"""Writes a Qwen2-0.5B-shaped checkpoint with random weights for `tinyllm bench` (performance does not depend on the
weights' values).

    /usr/bin/python3 tools/bench/make_bench_model.py [--out .cache/bench-model] [--dtype bf16|f32] [--seed 0]

Shapes of Qwen/Qwen2-0.5B: hidden 896, 24 layers, 14 query / 2 key-value heads of 64, intermediate 4864,
vocab 151936, tied embeddings (494,032,768 parameters; about 0.99 GB in bf16). Hugging Face layout: config.json +
model.safetensors (tensor names as Qwen2ForCausalLM.save_pretrained writes them), no tokenizer (bench feeds random
token ids). Needs only torch (Debian's 1.13 at /usr/bin/python3) and tools/fixtures/safetensors_io.py; the output
goes to a cache directory outside git (.cache/ is ignored). Takes about a minute and 3 GB of memory.

    /usr/bin/python3 tools/bench/make_bench_model.py --moe [--out .cache/bench-model-moe]

--moe writes its Qwen2-MoE sibling (Qwen2MoeForCausalLM layout, one tensor per expert): the same embedding and
attention, and in every layer a sparse block of 8 routed experts of moe_intermediate_size 1216 (a quarter of the
dense 4864), top-2, norm_topk_prob false (as Qwen1.5-MoE-A2.7B), plus a shared expert of 2432 with its sigmoid gate.
A token then runs 2 x 1216 + 2432 = 4864 columns of MLP, as many as the dense model, out of 8 x 1216 + 2432 = 12160
stored: 964,905,856 parameters (about 1.93 GB in bf16), of which 494,226,304 are read per decoded token (the dense
model's 494,032,768 plus the routers and gates). So decode should run at about the dense model's speed while the
weights take twice its memory; see the MoE section of book/week3/ch3_3_moe.md for the measured numbers.
"""
import argparse
import json
import os
import sys

import torch

# tools/bench/make_bench_model.py -> the repository root, three levels up.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
from safetensors_io import save  # noqa: E402

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_act": "silu",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": True,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 24,
    "use_cache": True,
}

# --moe: the sparse block of every layer (see the module docstring).
MOE = {
    "architectures": ["Qwen2MoeForCausalLM"],
    "model_type": "qwen2_moe",
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 1216,
    "shared_expert_intermediate_size": 2432,
    "norm_topk_prob": False,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "output_router_logits": False,
    "router_aux_loss_coef": 0.001,
    "qkv_bias": True,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench-model"))
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--moe", action="store_true", help="the Qwen2-MoE sibling (default --out .cache/bench-model-moe)")
    a = ap.parse_args()
    if a.moe and a.out == ap.get_default("out"):
        a.out = os.path.join(ROOT, ".cache", "bench-model-moe")
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    g = torch.Generator().manual_seed(a.seed)
    c = dict(CONFIG, **MOE) if a.moe else CONFIG
    E, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    D = E // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * D, c["num_key_value_heads"] * D

    def rand(*shape, std=0.02):
        return (torch.randn(*shape, generator=g) * std).to(dtype)

    t = {"model.embed_tokens.weight": rand(V, E), "model.norm.weight": torch.ones(E, dtype=dtype)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = rand(q, E)
        t[p + "self_attn.k_proj.weight"] = rand(kv, E)
        t[p + "self_attn.v_proj.weight"] = rand(kv, E)
        t[p + "self_attn.o_proj.weight"] = rand(E, q)
        t[p + "self_attn.q_proj.bias"] = rand(q)
        t[p + "self_attn.k_proj.bias"] = rand(kv)
        t[p + "self_attn.v_proj.bias"] = rand(kv)
        if a.moe:
            add_moe_block(t, p + "mlp.", c, rand)
        else:
            t[p + "mlp.gate_proj.weight"] = rand(I, E)
            t[p + "mlp.up_proj.weight"] = rand(I, E)
            t[p + "mlp.down_proj.weight"] = rand(E, I)
        t[p + "input_layernorm.weight"] = torch.ones(E, dtype=dtype)
        t[p + "post_attention_layernorm.weight"] = torch.ones(E, dtype=dtype)
    n = sum(x.numel() for x in t.values())
    os.makedirs(a.out, exist_ok=True)
    config = dict(c, torch_dtype={"bf16": "bfloat16", "f32": "float32"}[a.dtype])
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save(os.path.join(a.out, "model.safetensors"), t,
         {"format": "pt", "generator": "tools/bench/make_bench_model.py", "seed": str(a.seed),
          "note": "random weights, Qwen2-0.5B shapes, for benchmarks only"})
    print(f"wrote {a.out}: {n:,} parameters, {a.dtype}")


def add_moe_block(t, prefix, c, rand):
    """The tensors of one sparse layer, named as Qwen2MoeForCausalLM writes them."""
    E, I, S = c["hidden_size"], c["moe_intermediate_size"], c["shared_expert_intermediate_size"]
    t[prefix + "gate.weight"] = rand(c["num_experts"], E)
    for e in range(c["num_experts"]):
        q = f"{prefix}experts.{e}."
        t[q + "gate_proj.weight"] = rand(I, E)
        t[q + "up_proj.weight"] = rand(I, E)
        t[q + "down_proj.weight"] = rand(E, I)
    t[prefix + "shared_expert.gate_proj.weight"] = rand(S, E)
    t[prefix + "shared_expert.up_proj.weight"] = rand(S, E)
    t[prefix + "shared_expert.down_proj.weight"] = rand(E, S)
    t[prefix + "shared_expert_gate.weight"] = rand(1, E)


if __name__ == "__main__":
    main()
