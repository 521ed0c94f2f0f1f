#!/usr/bin/env python3
"""Writes reference encodings from the Hugging Face `tokenizers` library.

Usage (on a machine that has `tokenizers`, e.g. the GPU machine):
  python3 tests/tokenizer/make_reference.py --tokenizer llama3=PATH/llama3/tokenizer.json \
      --tokenizer qwen3=PATH/qwen3/tokenizer.json --out tests/data/tokenizer/reference.json

The output holds the text set itself, so the C++ test (tests/tokenizer/) needs nothing else:
  {"tokenizers_version": ..., "texts": [...], "unicode": {"classes", "nfc_changes"},
   "encodings": {name: {"plain": [[ids]...], "special": [[ids]...], "decoded": [str...],
                        "decoded_skip": [str...], "prefix_decodes": [{"ids": [...], "text": str}]}}}
plain = encode(text, add_special_tokens=False), special = add_special_tokens=True,
decoded = decode(plain ids of text + special-token ids), prefix_decodes = decode of id prefixes
that cut multi-byte characters (checks U+FFFD replacement).
"""
import argparse
import json
import random

import tokenizers
from tokenizers import Tokenizer


def make_texts():
    t = [
        "",
        "Hello world",
        "Hello, world! How are you doing today?",
        " leading space",
        "trailing space ",
        "The quick brown fox jumps over the lazy dog.",
        "I'm sure they'll say it's fine; we've done what you'd've done. DON'T SHOUT, I'M HERE.",
        "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'LL 'D 'sup 'x '",
        "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe \u00e0 la carte, se\u00f1or, \u00c5ngstr\u00f6m",
        # decomposed accents: NFC (Qwen) composes them, Llama 3 does not normalize
        "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m \u1e9b\u0323 \u212b \u2126",
        "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002"
        "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4. \u1100\u1161\u11a8 "
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea "
        "\u0939\u093f\u0928\u094d\u0926\u0940 \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 "
        "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
        "Emoji: \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D"
        "\U0001F466 \U0001F3F3\uFE0F\u200D\U0001F308 \U0001F1FA\U0001F1F8 \u2764\uFE0F\u200D\U0001F525"
        " \U0001F9D1\U0001F3FF\u200D\U0001F4BB!!",
        "   multiple   spaces   between     words    ",
        "tabs\tand\t\tnewlines\nline two\n\nline four\r\nwindows\r\n\r\n  \n \t \n",
        "\n\n\n",
        "  ",
        " ",
        "\t",
        "Numbers: 1 12 123 1234 12345 123456789 3.14159 -42 1,000,000 0x1F 1e-9 \u0661\u0662\u0663 "
        "\u00bd \u2163 \uff11\uff12\uff13\uff14",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", a[i++] >> 2);\n\treturn 0;\n}\n",
        "https://example.com/path/to/page?query=value&x=1#frag mailto:user@example.org "
        "C:\\Users\\me\\file.txt",
        "<|begin_of_text|>Hello<|end_of_text|>",
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>\n\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|><|endoftext|>",
        "<tool_call>{\"name\": \"f\"}</tool_call> <|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
        "not special: <|im_start <|begin_of_text| <| |> <|reserved_special_token_5|>x",
        "\u017fome long-s: '\u017f 'S words \u0130stanbul \u0131 K\u212a",
        "odd spaces:\u00a0nbsp\u2003em\u3000ideo\u2028ls\u2029ps\u0085nel\u180emvs\u200bzwsp\u000bvt\u000cff",
        "Mixed \u0645\u0631\u062d\u0628\u0627 and English and \u4e2d\u6587 and 123abc456 "
        "and caf\u00e9's r\u00f4le.",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "==========================================================================!!!!???....",
        "\u00ff\u00fe\u0100\u0120\u0121 \u010a \u0109 control\u0001\u0002\u007f chars",
    ]
    para = (
        "In 1969, Neil Armstrong and Buzz Aldrin landed on the Moon. The mission, Apollo 11, "
        "was watched by ~600 million people. \"That's one small step for [a] man,\" he said; "
        "later, scientists analysed 21.5 kg of samples. Today, we'd call it a triumph of "
        "engineering\u2014and luck. \u4eba\u7c7b\u7684\u4e00\u5927\u6b65\u3002 \U0001F680\U0001F315\n"
    )
    t.append(para * 6)
    rng = random.Random(1234)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789\u0660\u0661\u00b2\u2155\u216b",
        " \t\n\r\u00a0\u3000\u2009\u0085\u180e",
        "'\"!?.,;:()[]{}<>-_=+*&^%$#@/\\|`~",
        "\u00e9\u00e8\u00fc\u00df\u017f\u0301\u0308\u0323\u4e00\u4e8c\u3042\u30a2\uac00\u1100"
        "\u1161\u11a8\u0627\u05d0\u0915\u094d\U0001F600\u200d\ufe0f\U0001F3FD",
        ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", " the", "\r\n", "  ", "<|im_end|>",
         "<|eot_id|>", "<think>"],
    ]
    for _ in range(12):
        s = []
        for _ in range(rng.randint(40, 160)):
            pool = rng.choice(pools)
            s.append(rng.choice(pool))
        t.append("".join(s))
    return t


def prefix_cases(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    out = []
    for n in range(1, len(ids) + 1):
        out.append({"ids": ids[:n], "text": tok.decode(ids[:n], skip_special_tokens=False)})
    # single ids of multi-byte characters, in odd orders
    for i in range(len(ids)):
        sub = ids[i:i + 2][::-1]
        out.append({"ids": sub, "text": tok.decode(sub, skip_special_tokens=False)})
    return out


def unicode_sweep(llama_path, qwen_path):
    """Character classes as the Llama 3 Split regex (Oniguruma) sees them, and NFC as the Qwen
    normalizer does it, for every Unicode scalar value. Classes: 1 letter, 2 number, 3 space."""
    pre = Tokenizer.from_file(llama_path).pre_tokenizer
    norm = Tokenizer.from_file(qwen_path).normalizer

    def pieces(s):
        return len(pre.pre_tokenize_str(s))

    def cls(c):
        if pieces("a" + c) == 1:
            return 1
        if pieces("1" + c) == 1:
            return 2
        if c in "\r\n" or pieces("!" + c) == 2:
            return 3
        return 0

    ranges, nfc = [], []
    start, cur = 0, cls(chr(0))
    for cp in range(1, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            v = 0
        else:
            c = chr(cp)
            v = cls(c)
            n = norm.normalize_str(c)
            if n != c:
                nfc.append([cp, n])
        if v != cur:
            if cur:
                ranges.append([start, cp - 1, cur])
            start, cur = cp, v
    if cur:
        ranges.append([start, 0x10FFFF, cur])
    return {"classes": ranges, "nfc_changes": nfc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", action="append", required=True, help="name=path")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    texts = make_texts()
    result = {"tokenizers_version": tokenizers.__version__, "texts": texts, "encodings": {}}
    for spec in args.tokenizer:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        plain = [tok.encode(x, add_special_tokens=False).ids for x in texts]
        special = [tok.encode(x, add_special_tokens=True).ids for x in texts]
        decoded = [tok.decode(ids, skip_special_tokens=False) for ids in plain]
        decoded_skip = [tok.decode(ids, skip_special_tokens=True) for ids in plain]
        emoji = next(x for x in texts if x.startswith("Emoji"))
        result["encodings"][name] = {
            "plain": plain, "special": special, "decoded": decoded,
            "decoded_skip": decoded_skip, "prefix_decodes": prefix_cases(tok, emoji),
        }
    paths = dict(spec.split("=", 1) for spec in args.tokenizer)
    if "llama3" in paths and "qwen3" in paths:
        result["unicode"] = unicode_sweep(paths["llama3"], paths["qwen3"])
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote", args.out, "tokenizers", tokenizers.__version__)


if __name__ == "__main__":
    main()
