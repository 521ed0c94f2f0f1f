#!/usr/bin/env python3
"""Side-by-side baseline: transformers (torch bf16, sdpa) on the same GPU, 8B Llama shape with
random init (no weights on disk). Prints decode ms/token at batch 1 (eager, DynamicCache, ctx 1k)
and prefill time of one 4k prompt (logits of the last position only). Compare with cuda_bench's
"decode batch 1 ctx 1024" and "prefill 4096" lines from the same run.
Usage: python3 bench/hf_compare.py [--compile]   (--compile: static cache + torch.compile decode)
"""
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, rms_norm_eps=1e-5, max_position_embeddings=131072,
                      rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192},
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = LlamaForCausalLM(cfg).eval()
    torch.cuda.synchronize()
    print(f"hf       transformers {transformers.__version__} torch {torch.__version__} "
          f"{torch.cuda.get_device_name()} init {time.time() - t0:.1f}s", flush=True)
    ev = lambda: torch.cuda.Event(enable_timing=True)

    # Prefill 4k, last-position logits only.
    ids = torch.randint(0, cfg.vocab_size, (1, 4096), device="cuda")
    times = []
    with torch.inference_mode():
        for i in range(4):
            a, b = ev(), ev()
            a.record()
            model(ids, use_cache=False, logits_to_keep=1)
            b.record()
            torch.cuda.synchronize()
            if i:
                times.append(a.elapsed_time(b))
    print(f"hf       prefill 4096 tokens: {statistics.median(times):8.1f} ms", flush=True)

    # Decode batch 1 at ctx 1k.
    prompt = torch.randint(0, cfg.vocab_size, (1, 1024), device="cuda")
    compile_mode = "--compile" in sys.argv
    with torch.inference_mode():
        if compile_mode:
            from transformers import StaticCache
            cache = StaticCache(config=cfg, max_cache_len=1100)
            fwd = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        else:
            cache = None
            fwd = model
        out = model(prompt, use_cache=True, past_key_values=cache, logits_to_keep=1) if cache \
            else model(prompt, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        steps = []
        pos = 1024
        for i in range(40):
            a, b = ev(), ev()
            a.record()
            kw = {"cache_position": torch.tensor([pos], device="cuda")} if compile_mode else {}
            out = fwd(tok, past_key_values=past, use_cache=True, **kw)
            tok = out.logits[:, -1:].argmax(-1)
            b.record()
            torch.cuda.synchronize()
            pos += 1
            if i >= 8:
                steps.append(a.elapsed_time(b))
    m = statistics.median(steps)
    print(f"hf       decode batch 1 ctx 1024 ({'static cache + torch.compile' if compile_mode else 'eager'}): "
          f"{m:7.2f} ms/step  {1000 / m:6.1f} tok/s", flush=True)


if __name__ == "__main__":
    main()
