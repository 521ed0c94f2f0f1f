#!/usr/bin/env python3
"""Regenerates the seed corpus in tests/fuzz/corpus/<name>/ from tests/data and configs/.
Run from the repository root: python3 tests/fuzz/make_corpus.py [target...] (default: every
target). Regression inputs (files named crash-*) are kept; everything else of the named targets
is rewritten."""
import json
import os
import pathlib
import shutil
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fuzz/corpus"


def put(name, fname, data):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / fname).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)] -> file bytes with zero data."""
    size = {"F32": 4, "F16": 2, "BF16": 2}
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = size[dt]
        for s in shape:
            n *= s
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(off)


def tiny_tokenizer():
    # GPT-2 byte-level alphabet, the same construction as tests/tokenizer/tokenizer_json_test.cc.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_char[b]: b for b in range(256)}
    vocab.update({"\u0120t": 256, "he": 257, "\u0120the": 258})
    return {
        "version": "1.0",
        "normalizer": None,
        "added_tokens": [
            {"id": 259, "content": "<s>", "special": True, "normalized": False},
            {"id": 260, "content": "<s>x", "special": False, "normalized": False},
        ],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [259], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                  "merges": ["\u0120 t", ["h", "e"], ["\u0120t", "he"]]},
    }


def wire_frame(ftype, nseg=0, payload=b"", segs=(), xfer=1, chunk=1, aux=0, plen=None):
    plen = len(payload) if plen is None else plen
    h = struct.pack("<IBBHIIQQqQ", 0x31584B50, ftype, 0, nseg, aux, 0, xfer, chunk, 0, plen)
    return h + b"".join(struct.pack("<QII", o, l, a) for o, l, a in segs) + payload


# --- protobuf encoding (proto/pdserve.proto) for the requests corpus ---------------------------
def varint(n):
    n &= (1 << 64) - 1  # negative int32 -> 10-byte two's complement, as protobuf writes it
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vi(field, n):
    return varint(field << 3) + varint(n)


def ld(field, data):
    data = data.encode() if isinstance(data, str) else data
    return varint(field << 3 | 2) + varint(len(data)) + data


def f32(field, x):
    return varint(field << 3 | 5) + struct.pack("<f", x)


def packed(field, ids):
    return ld(field, b"".join(varint(i) for i in ids))


def sampling(temp=0.0, top_p=0.0, top_k=0, seed=0):
    return f32(1, temp) + f32(2, top_p) + vi(3, top_k) + vi(4, seed)


def requests():
    """(name, bytes): selector byte (0 Generate, 1 Reserve, 2 Decode, 3 Prefill) + message."""
    ids = list(range(1, 21))
    target = (ld(1, "decode-0") + vi(2, 7) + vi(3, 99) + vi(4, 5) + vi(5, 16)
              + packed(6, [3, 4]) + ld(7, b"meta") + vi(8, 16) + ld(9, "tcp")
              + ld(10, "127.0.0.1:1") + vi(11, 64))
    g = [
        ("gen_ids", ld(1, "r-1") + ld(4, packed(1, ids)) + vi(5, 8)),
        ("gen_text", ld(2, "tiny") + ld(3, "the <s>x h\u00e9llo \U0001F600") + vi(5, 16)
         + ld(6, sampling(0.7, 0.9, 5, 42)) + packed(8, [259, 1])),
        ("gen_ids_only_model", ld(2, "ids-only") + ld(4, packed(1, [0, 260])) + vi(5, 1)
         + vi(7, 1)),
        ("gen_bad_max_tokens", ld(4, packed(1, ids)) + vi(5, -1)),
        ("gen_over_context", ld(4, packed(1, list(range(100)))) + vi(5, 64)),
        ("gen_bad_utf8", ld(3, b"the \xff\xfe") + vi(5, 4)),
        ("gen_stop_flood", ld(4, packed(1, ids)) + vi(5, 4) + packed(8, [1] * 300)),
        ("gen_nan_sampling", ld(4, packed(1, ids)) + vi(5, 4)
         + ld(6, struct.pack("<B", 13) + b"\x00\x00\xc0\x7f")),
    ]
    r = [
        ("reserve", ld(1, "r-1") + packed(2, ids) + vi(3, 8) + vi(4, 1000) + vi(5, 99)),
        ("reserve_bad_lease", ld(1, "r-1") + packed(2, ids) + vi(4, -5)),
    ]
    d = [
        ("decode_remote", ld(1, "r-1") + vi(2, 5) + packed(4, ids) + vi(5, 8)
         + ld(6, sampling(1.0, 1.0, 0, 3)) + packed(8, [2]) + vi(9, 7) + vi(10, 17)),
        ("decode_local", ld(1, "r-2") + vi(3, 1) + packed(4, ids) + vi(5, 8) + vi(10, -1)),
    ]
    p = [
        ("prefill", ld(1, "r-1") + packed(2, list(range(1, 33))) + ld(3, target)
         + ld(4, "decode-0") + ld(5, sampling()) + vi(6, 99)),
        ("prefill_bad_blocks", ld(1, "r-1") + packed(2, ids) + ld(3, target + packed(6, [70]))),
    ]
    out = []
    for sel, group in enumerate([g, r, d, p]):
        out += [(n, bytes([sel]) + m) for n, m in group]
    return out


def main():
    only = set(sys.argv[1:])
    for d in OUT.glob("*"):
        if only and d.name not in only:
            continue
        for f in d.glob("*"):
            if not f.name.startswith("crash-"):
                f.unlink()
    for name, data in requests():
        put("requests", name + ".bin", data)
    if only and only <= {"requests"}:
        return
    golden = sorted((ROOT / "tests/data/golden").glob("*/config.json"))
    for cfg in golden:
        put("model_config", cfg.parent.name + ".json", cfg.read_bytes())
        # Header of the golden checkpoint with its data section cut short (DATA_LOSS path), and
        # a small complete file with the same kinds of entries.
        st = (cfg.parent / "model.safetensors").read_bytes()
        n = struct.unpack("<Q", st[:8])[0]
        put("safetensors", cfg.parent.name + "_header.safetensors", st[:8 + n + 64])
    put("safetensors", "small.safetensors",
        safetensors([("a", "F32", [2, 3]), ("b", "BF16", [4]), ("c", "F16", [1, 1, 2]),
                     ("empty", "F32", [0])], {"format": "pt"}))
    put("safetensors", "scalar.safetensors", safetensors([("s", "F32", [])]))
    for y in sorted((ROOT / "configs").glob("*.yaml")):
        put("deploy_config", y.name, y.read_bytes())
    tok = json.dumps(tiny_tokenizer(), ensure_ascii=False)
    put("tokenizer", "tiny.json", tok)
    put("tokenizer", "tiny_with_text.bin",
        tok.encode() + b"\0" + "the <s>x<s> h\u00e9llo \U0001F600 tthe".encode())
    put("wire", "hello.bin", wire_frame(1, payload=struct.pack("<QQQQ", 1, 2, 5, 0) + b"prefill-0"))
    put("wire", "data.bin",
        wire_frame(1, payload=struct.pack("<QQQQ", 1, 2, 5, 1) + b"p")
        + wire_frame(3, 2, b"A" * 48, [(0, 16, 0), (100, 32, 1)])
        + wire_frame(4, aux=48) + wire_frame(7, payload=b"kv-ready")
        + wire_frame(8) + wire_frame(2))
    put("wire", "read.bin",
        wire_frame(5, 2, b"", [(0, 64, 1), (4032, 64, 0), (0, 64, 0), (64, 64, 1)])
        + wire_frame(6, 1, b"B" * 64, [(4032, 64, 0)]))
    put("wire", "err.bin", wire_frame(9, payload=b"stale metadata", aux=9))


if __name__ == "__main__":
    main()
