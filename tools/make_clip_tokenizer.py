"""Derive the Hugging Face CLIP tokenizer files from open-clip-torch's BPE file.

SD 1.5's text encoder uses OpenAI's CLIP BPE. The product must never reach the hub, so the
tokenizer files live in ``models/sd15/tokenizer/``; this script is how they were made, from the
``open_clip/bpe_simple_vocab_16e6.txt.gz`` that the open-clip-torch wheel ships (read straight out
of the zip: ``import open_clip`` needs torchvision, which we must not depend on).

The derivation is the one OpenAI's ``clip/simple_tokenizer.py`` performs at run time, so the ids
equal openai/clip-vit-large-patch14's (49408 of them).

Usage::

    pip download --no-deps -d /tmp/oc open-clip-torch
    python tools/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl models/sd15/tokenizer

Standard library only, so it runs in any interpreter.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# OpenAI keeps merges[1 : 49152 - 256 - 2 + 1]: line 0 is a header, and the vocabulary is capped
# at 49152 entries less the 256 byte tokens and the 2 special tokens.
N_MERGES = 49152 - 256 - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
VOCAB_SIZE = 2 * 256 + N_MERGES + 2  # 49408
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's byte -> printable unicode table (same order, since the order fixes the ids)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def read_bpe_text(source: Path) -> str:
    """The decompressed BPE text, from a wheel (zip) or from the .txt.gz itself."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            data = zf.read(BPE_MEMBER)
    else:
        data = source.read_bytes()
    return gzip.decompress(data).decode("utf-8")


def derive(bpe_text: str) -> tuple[dict[str, int], list[str]]:
    """Return (vocab token -> id, merge lines "a b") exactly as OpenAI's tokenizer builds them."""
    lines = bpe_text.split("\n")[1 : N_MERGES + 1]
    if len(lines) != N_MERGES:
        raise ValueError(f"expected {N_MERGES} merge lines, found {len(lines)}")
    merges = [tuple(line.split()) for line in lines]
    if any(len(m) != 2 for m in merges):
        raise ValueError("a merge line does not have exactly two parts")

    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m) for m in merges]
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:  # duplicates would silently shift ids
        raise ValueError(f"vocab has {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, [" ".join(m) for m in merges]


def write_files(vocab: dict[str, int], merges: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # One line per entry keeps the committed file diffable; ensure_ascii=False as HF writes it.
    body = ",\n".join(f"{json.dumps(tok, ensure_ascii=False)}: {idx}" for tok, idx in vocab.items())
    (out_dir / "vocab.json").write_text("{\n" + body + "\n}\n", encoding="utf-8")
    # "#version: 0.2" is the header HF writes; transformers 4.x's slow CLIPTokenizer drops line 0.
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    _write_json(out_dir / "special_tokens_map.json", special)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
    }
    _write_json(out_dir / "tokenizer_config.json", config)


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="open-clip-torch wheel, or the .txt.gz")
    parser.add_argument("out_dir", type=Path, help="e.g. models/sd15/tokenizer")
    args = parser.parse_args(argv)
    vocab, merges = derive(read_bpe_text(args.source))
    write_files(vocab, merges, args.out_dir)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
