#!/usr/bin/env python3
"""Builds tiny random-init transformers models, one per supported architecture, and records their
greedy generations and last-prompt-position logits as the golden reference for pdserve.

Run on the GPU machine (it has torch + transformers):  python3 tests/golden/make_golden.py OUT_DIR
Writes OUT_DIR/<case>/{config.json, model.safetensors, golden.json}.

The reference runs in float32 on the CPU with eager attention and a plain loop (full forward each
step, no KV cache), so it is independent of transformers' cache and generation machinery.
"""
import json
import os
import sys

import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

VOCAB = 512
NEW_TOKENS = 12


def rope(theta, scaling=None):
    p = {"rope_type": "default", "rope_theta": theta}
    if scaling:
        p.update(scaling)
    return p


CASES = [
    # name, config class, kwargs, save dtype, write config in transformers-4.x spelling
    ("llama_gqa_tied", LlamaConfig,
     dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, tie_word_embeddings=True, rope_parameters=rope(10000.0),
          rms_norm_eps=1e-5, max_position_embeddings=256), torch.bfloat16, False),
    ("llama3_scaled_mqa_v4cfg", LlamaConfig,
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
          num_key_value_heads=1, tie_word_embeddings=False,
          rope_parameters=rope(500000.0, {"rope_type": "llama3", "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 32}),
          rms_norm_eps=1e-5, max_position_embeddings=256), torch.float32, True),
    ("llama_bias_linear", LlamaConfig,
     dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
          num_key_value_heads=3, tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
          rope_parameters=rope(10000.0, {"rope_type": "linear", "factor": 2.0}),
          rms_norm_eps=1e-6, max_position_embeddings=256), torch.bfloat16, False),
    ("mistral_window", MistralConfig,
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, sliding_window=8, tie_word_embeddings=False,
          rope_parameters=rope(1000000.0), rms_norm_eps=1e-5, max_position_embeddings=256),
     torch.float16, False),
    ("qwen2_bias_tied", Qwen2Config,
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, tie_word_embeddings=True, rope_parameters=rope(1000000.0),
          rms_norm_eps=1e-6, max_position_embeddings=256), torch.bfloat16, False),
    ("qwen3_qknorm", Qwen3Config,
     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
          rope_parameters=rope(1000000.0), rms_norm_eps=1e-6, max_position_embeddings=256),
     torch.bfloat16, False),
]

PROMPT_LENS = [1, 6, 19, 37]


def to_v4_config(path):
    """Rewrites config.json in the spelling transformers 4.x and hub checkpoints use."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = rp.get("rope_theta", 10000.0)
    scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
    if scaling.get("rope_type", "default") != "default":
        c["rope_scaling"] = scaling
    else:
        c["rope_scaling"] = None
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def greedy(model, prompt):
    ids = list(prompt)
    out, first_logits, margins = [], None, []
    for step in range(NEW_TOKENS):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        if step == 0:
            first_logits = logits.tolist()
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids.append(nxt)
    return out, first_logits, min(margins)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for i, (name, cls, kw, save_dtype, v4) in enumerate(CASES):
        torch.manual_seed(1000 + i)
        cfg = cls(vocab_size=VOCAB, initializer_range=0.25, bos_token_id=1, eos_token_id=2,
                  pad_token_id=0, **kw)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
        with torch.no_grad():  # norms are ones at init: perturb so their weights matter
            for n, p in model.named_parameters():
                if "norm" in n or n.endswith(".bias"):
                    p.add_(torch.randn_like(p) * 0.3)
        model = model.to(save_dtype)
        d = os.path.join(out_dir, name)
        model.save_pretrained(d, safe_serialization=True)
        if v4:
            to_v4_config(os.path.join(d, "config.json"))
        ref = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(77 + i)
        cases = []
        for L in PROMPT_LENS:
            prompt = torch.randint(3, VOCAB, (L,), generator=g).tolist()
            gen, logits, margin = greedy(ref, prompt)
            cases.append({"prompt": prompt, "generated": gen, "first_logits": logits,
                          "min_top2_margin": margin})
            print(f"{name} L={L} margin={margin:.4f} gen={gen}")
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump({"reference": f"transformers {transformers.__version__} float32 eager",
                       "cases": cases}, f)
        print(name, open(os.path.join(d, "config.json")).read())


if __name__ == "__main__":
    main()
