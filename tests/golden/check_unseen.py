#!/usr/bin/env python3
"""Issue 2's acceptance check, run on the GPU machine: a model directory written by transformers
that no test has seen (architecture/shape below), greedy `generate` there vs `pd-generate`.

usage: check_unseen.py PD_GENERATE_BINARY WORK_DIR
Prints one line per prompt and backend; exits 1 on any mismatch of the CPU backend.
"""
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, LlamaConfig

binary, work = sys.argv[1], sys.argv[2]
torch.manual_seed(4242)
cases = [
    ("qwen2_unseen", Qwen2Config(vocab_size=777, hidden_size=96, intermediate_size=200,
                                 num_hidden_layers=3, num_attention_heads=6,
                                 num_key_value_heads=3, tie_word_embeddings=False,
                                 max_position_embeddings=512, initializer_range=0.3,
                                 bos_token_id=1, eos_token_id=2)),
    ("llama3_unseen", LlamaConfig(vocab_size=1031, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=2, num_attention_heads=8,
                                  num_key_value_heads=2, tie_word_embeddings=True,
                                  max_position_embeddings=512, initializer_range=0.3,
                                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                   "factor": 4.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 64},
                                  bos_token_id=1, eos_token_id=2)),
]
bad = 0
for name, cfg in cases:
    model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
    d = f"{work}/{name}"
    model.save_pretrained(d, safe_serialization=True)
    ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(9)
    for plen in (3, 29):
        prompt = torch.randint(3, cfg.vocab_size, (plen,), generator=g).tolist()
        with torch.no_grad():
            out = ref.generate(torch.tensor([prompt]), max_new_tokens=16, min_new_tokens=16,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
        want = out[0, plen:].tolist()
        for backend, kv in (("cpu", "fp32"), ("cuda", "bf16")):
            r = subprocess.run([binary, "--model", d, "--prompt-ids", ",".join(map(str, prompt)),
                                "--max-tokens", "16", "--ignore-eos", "--backend", backend,
                                "--kv-dtype", kv], capture_output=True, text=True)
            got = [int(x) for x in r.stdout.strip().split(",") if x] if r.returncode == 0 else None
            ok = got == want
            if backend == "cpu" and not ok:
                bad += 1
            print(f"{name} prompt_len={plen} backend={backend}: {'MATCH' if ok else 'DIFF'}"
                  f" transformers={want} pdserve={got} {r.stderr.strip()[-160:] if not ok else ''}")
sys.exit(1 if bad else 0)
