#!/usr/bin/env python3
"""Makes a many-layer random-weight model fast from a one-layer one (device time is scarce).

Usage: scripts/plan_fastmodel.py SRC_DIR OUT_DIR NUM_LAYERS

SRC_DIR is `pd-makemodel --layers 1 ...` output (config.json + model.safetensors). OUT_DIR gets
the same config with num_hidden_layers = NUM_LAYERS and a model.safetensors in which every layer
is a byte copy of layer 0 (embeddings, final norm and lm_head unchanged). Kernel times do not
depend on the weights' values, so a profile or a benchmark of this model times like one of
`pd-makemodel --layers NUM_LAYERS` (which generates every element: ~85 s for the 8B on the
GPU machine, vs ~15 s for one layer plus the copy).
"""
import json
import os
import re
import struct
import sys


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    src, out, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = layers
    path = os.path.join(src, "model.safetensors")
    f = open(path, "rb")
    (hlen,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(hlen))
    base = 8 + hlen
    meta = header.pop("__metadata__", None)
    layer0 = {k: v for k, v in header.items() if k.startswith("model.layers.0.")}
    others = {k: v for k, v in header.items() if not re.match(r"model\.layers\.\d+\.", k)}
    if len(layer0) + len(others) != len(header):
        raise SystemExit("plan_fastmodel: SRC must have exactly one layer")
    # New layout: the non-layer tensors first (as they were), then layer 0..N-1.
    plan = []  # (name, dtype, shape, src_begin, src_end)
    for k, v in sorted(others.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        plan.append((k, v, v["data_offsets"]))
    for i in range(layers):
        for k, v in sorted(layer0.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            plan.append((k.replace("model.layers.0.", "model.layers.%d." % i, 1), v,
                         v["data_offsets"]))
    newh = {}
    if meta is not None:
        newh["__metadata__"] = meta
    off = 0
    for name, v, (b, e) in plan:
        newh[name] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + e - b]}
        off += e - b
    hb = json.dumps(newh, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as o:
        o.write(struct.pack("<Q", len(hb)))
        o.write(hb)
        cache = {}
        for name, v, (b, e) in plan:
            if (b, e) not in cache:
                f.seek(base + b)
                cache[(b, e)] = f.read(e - b)
            o.write(cache[(b, e)])
    os.rename(tmp, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as c:
        json.dump(cfg, c, indent=2)
    print("plan_fastmodel: %s: %d layers, %.2f GB" % (out, layers, off / 1e9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
