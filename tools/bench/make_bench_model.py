#!/usr/bin/python3
"""Writes a Qwen2-0.5B-shaped checkpoint with random weights for `tinyllm bench` (performance does not depend on the
weights' values).

    /usr/bin/python3 tools/bench/make_bench_model.py [--out .cache/bench-model] [--dtype bf16|f32] [--seed 0]

Shapes of Qwen/Qwen2-0.5B: hidden 896, 24 layers, 14 query / 2 key-value heads of 64, intermediate 4864,
vocab 151936, tied embeddings (494,032,768 parameters; about 0.99 GB in bf16). Hugging Face layout: config.json +
model.safetensors (tensor names as Qwen2ForCausalLM.save_pretrained writes them), no tokenizer (bench feeds random
token ids). Needs only torch (Debian's 1.13 at /usr/bin/python3) and tools/fixtures/safetensors_io.py; the output
goes to a cache directory outside git (.cache/ is ignored). Takes about a minute and 3 GB of memory.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "bench-model"))
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    g = torch.Generator().manual_seed(a.seed)
    c = CONFIG
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


if __name__ == "__main__":
    main()
