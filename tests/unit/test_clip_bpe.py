"""The pure-Python CLIP BPE (the trainer's tokenizer) gives transformers' ids for our calls."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from easyphoto_core.params import DEFAULT_NEGATIVE_PROMPT, DEFAULT_POSITIVE_PROMPT, TRIGGER_CAPTION
from easyphoto_core.sd import tokenizer as tokenizer_module
from easyphoto_core.sd.tokenizer import (
    BPE_CACHE_SIZE,
    DEFAULT_TOKENIZER_DIR,
    TokenizerFileError,
    TokenizerFileMissingError,
    load_bpe_tokenizer,
    load_clip_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]
BOS, EOS = 49406, 49407

TEXTS = {
    "trigger caption": TRIGGER_CAPTION,
    "default prompt": DEFAULT_POSITIVE_PROMPT,
    "default negative prompt": DEFAULT_NEGATIVE_PROMPT,
    "mixed case": "A Photo OF a CAT, Mixed CASE With ÀÉÎ",
    "punctuation": "Hello, World! (masterpiece:1.3) [bad] {x} a/b; c? -- ... <lora:x:0.8>",
    "numbers": "1girl, 2 boys, 3.14159, 2024-01-01, 100%, 12345",
    "apostrophes": "it's a dog, don't stop, we're here, I'll go, you've, I'm, he'd, 'stop",
    "extra whitespace": "  lots   of\twhitespace \n here\u00a0and\u3000there  ",
    "accented latin": "café naïve résumé Ångström straße",
    "decomposed accent (NFC)": "cafe\u0301",
    "cjk": "一个人的照片",
    "emoji": "a photo 😀 👍🏽 ❤️ of joy",
    "too long (truncated)": ", ".join(["a photo of a smiling cat"] * 40),
    "empty": "",
}
# Texts whose ids transformers 4.30 (the A1111 host's; ftfy cleans the text first there) and
# 5.x disagree on: ours follows 5.x, checked only against 5.x.
TEXTS_AS_5X = {
    "special tokens in the text": "a <|endoftext|> b !<|startoftext|>! x<|endoftext|>y",
    "special tokens after lower case": "<|ENDOFTEXT|>! x<|StartOfText|> !<|ENDOFTEXT|>",
    "greek capitals (no final sigma)": "ΣΑΣ",
    "U+001C is not whitespace for transformers": "x\x1cy",
}


@pytest.fixture(scope="module")
def bpe():
    return load_bpe_tokenizer()


@pytest.fixture(scope="module")
def reference():
    return load_clip_tokenizer()


def reference_ids(reference, text, max_length=77):
    return reference(text, padding="max_length", max_length=max_length, truncation=True,
                     return_tensors="pt").input_ids


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_ids_equal_transformers(bpe, reference, text):
    ids = bpe(text, padding="max_length", max_length=77, truncation=True,
              return_tensors="pt").input_ids
    assert ids.dtype == torch.long and ids.shape == (1, 77)
    assert torch.equal(ids, reference_ids(reference, text))


@pytest.mark.parametrize("text", TEXTS_AS_5X.values(), ids=TEXTS_AS_5X.keys())
def test_ids_equal_transformers_5_on_odd_text(bpe, reference, text):
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("transformers 4.x cleans such text its own way (ftfy)")
    test_ids_equal_transformers(bpe, reference, text)


def test_trainer_call(bpe, reference):
    # easyphoto_train/run.py's call, word for word
    ids = bpe(TRIGGER_CAPTION, padding="max_length", max_length=77, truncation=True,
              return_tensors="pt").input_ids
    assert torch.equal(ids, reference_ids(reference, TRIGGER_CAPTION))
    assert ids[0, 0] == BOS and EOS not in ids[0, 1:ids[0].tolist().index(EOS)]


def test_sampler_call_with_two_texts(bpe, reference):
    # easyphoto_core/pipeline/sampler.py's call: [negative, prompt], model_max_length
    texts = [DEFAULT_NEGATIVE_PROMPT, TEXTS["too long (truncated)"]]
    ids = bpe(texts, padding="max_length", truncation=True, max_length=bpe.model_max_length,
              return_tensors="pt").input_ids
    assert ids.shape == (2, 77)
    assert torch.equal(ids, reference_ids(reference, texts, reference.model_max_length))


def test_truncation_keeps_eos_last(bpe):
    ids = bpe(TEXTS["too long (truncated)"], truncation=True).input_ids[0]
    assert ids[0] == BOS and ids[-1] == EOS and EOS not in ids[1:-1]


def test_shorter_max_length_matches(bpe, reference):
    text = DEFAULT_POSITIVE_PROMPT
    assert torch.equal(bpe(text, max_length=10, truncation=True).input_ids,
                       reference_ids(reference, text, max_length=10))


def test_defaults_pad_to_model_max_length(bpe, reference):
    assert bpe.model_max_length == reference.model_max_length == 77
    assert torch.equal(bpe("a photo of a cat").input_ids, reference_ids(reference, "a photo of a cat"))


def test_stdlib_re_fallback_gives_the_same_ids(bpe, monkeypatch):
    monkeypatch.setitem(sys.modules, "regex", None)  # `import regex` now raises ImportError
    fallback = load_bpe_tokenizer()
    texts = list(TEXTS.values())
    assert torch.equal(fallback(texts, truncation=True).input_ids,
                       bpe(texts, truncation=True).input_ids)


def test_word_cache_is_bounded(bpe):
    bpe(DEFAULT_POSITIVE_PROMPT, truncation=True)
    info = bpe._word_ids.cache_info()
    assert info.maxsize == BPE_CACHE_SIZE and 0 < info.currsize <= BPE_CACHE_SIZE


@pytest.mark.parametrize("options, words", [
    ({"padding": "longest"}, "padding"),
    ({"padding": True}, "padding"),
    ({"return_tensors": "np"}, "return_tensors"),
    ({"return_tensors": None}, "return_tensors"),
    ({"max_length": 1}, "max_length"),
    ({"max_length": "77"}, "max_length"),
    ({"truncation": "longest_first"}, "truncation"),
    ({"return_attention_mask": True}, "return_attention_mask"),
])
def test_unsupported_option_raises(bpe, options, words):
    with pytest.raises(ValueError, match=words):
        bpe("a photo", **options)


@pytest.mark.parametrize("text", [None, 3, [], ["ok", 3], ("a", "b")])
def test_bad_text_raises(bpe, text):
    with pytest.raises(ValueError, match="text must be"):
        bpe(text)


def test_long_text_without_truncation_raises(bpe):
    assert bpe("a photo").input_ids.shape == (1, 77)  # fits: fine without truncation
    with pytest.raises(ValueError, match="truncation=True"):
        bpe(TEXTS["too long (truncated)"])


@pytest.fixture
def tokenizer_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tokenizer"
    shutil.copytree(DEFAULT_TOKENIZER_DIR, target)
    return target


@pytest.mark.parametrize("damage, error, words", [
    (lambda d: (d / "vocab.json").unlink(), TokenizerFileMissingError, "vocab.json"),
    (lambda d: (d / "merges.txt").unlink(), TokenizerFileMissingError, "merges.txt"),
    (lambda d: (d / "vocab.json").write_text('{"a": 0,', encoding="utf-8"),
     TokenizerFileError, "vocab.json"),
    (lambda d: (d / "merges.txt").write_text("#version: 0.2\nzz qq\n", encoding="utf-8"),
     TokenizerFileError, r"merges\.txt:2"),
    (lambda d: (d / "tokenizer_config.json").write_text("[1, 2]", encoding="utf-8"),
     TokenizerFileError, "tokenizer_config.json"),
], ids=["no vocab", "no merges", "corrupt vocab", "merge outside vocab", "corrupt config"])
@pytest.mark.parametrize("loader", [load_bpe_tokenizer, load_clip_tokenizer])
def test_same_file_errors_as_transformers_loader(tokenizer_copy, damage, error, words, loader):
    damage(tokenizer_copy)
    with pytest.raises(error, match=words):
        loader(tokenizer_copy)


def test_does_not_import_transformers():
    code = ("import sys; from easyphoto_core.sd.tokenizer import load_bpe_tokenizer; "
            "load_bpe_tokenizer()('x'); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_module_names_both_loaders():
    # The diffusers generation backend keeps transformers' tokenizer; the trainer uses the BPE.
    assert {"load_clip_tokenizer", "load_bpe_tokenizer"} <= set(dir(tokenizer_module))
