"""The offline CLIP tokenizer gives openai/clip-vit-large-patch14's ids under transformers 4 and 5."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from easyphoto_core.sd.tokenizer import (
    DEFAULT_TOKENIZER_DIR,
    TokenizerFileError,
    TokenizerFileMissingError,
    load_clip_tokenizer,
)

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer(DEFAULT_TOKENIZER_DIR)


@pytest.fixture
def tokenizer_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tokenizer"
    shutil.copytree(DEFAULT_TOKENIZER_DIR, target)
    return target


def test_default_dir_is_in_repo_models():
    assert DEFAULT_TOKENIZER_DIR.parts[-3:] == ("models", "sd15", "tokenizer")
    assert (DEFAULT_TOKENIZER_DIR / "vocab.json").is_file()


def test_known_prompt_ids(tokenizer):
    ids = tokenizer("a photo of a cat, smiling").input_ids
    # Reference ids from openai/clip-vit-large-patch14's tokenizer.
    assert ids == [49406, 320, 1125, 539, 320, 2368, 267, 9200, 49407]


def test_vocab_size_and_special_tokens(tokenizer):
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    assert tokenizer.bos_token_id == BOS
    assert tokenizer.eos_token_id == EOS
    assert tokenizer.pad_token_id == EOS
    assert tokenizer.unk_token_id == EOS


def test_pads_to_max_length(tokenizer):
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[0] == BOS
    assert ids[1:6] == [320, 1125, 539, 320, 2368]
    assert ids[6:] == [EOS] * 71


def test_long_prompt_truncates_with_eos_last(tokenizer):
    prompt = ", ".join(["a photo of a smiling cat"] * 40)
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == BOS
    assert ids[-1] == EOS
    assert EOS not in ids[1:-1]


def test_trigger_caption_has_no_unknown_tokens(tokenizer):
    ids = tokenizer("easyphoto_face, easyphoto, 1person").input_ids
    assert ids[0] == BOS and ids[-1] == EOS
    assert EOS not in ids[1:-1]  # unk is <|endoftext|>: an unk would show up as 49407 inside
    assert "easyphoto" in tokenizer.decode(ids, skip_special_tokens=True)


def test_uppercase_is_lowered(tokenizer):
    assert tokenizer("A Photo OF a CAT").input_ids == tokenizer("a photo of a cat").input_ids


def test_copied_dir_loads_the_same(tokenizer, tokenizer_copy: Path):
    copy = load_clip_tokenizer(str(tokenizer_copy))
    text = "easyphoto_face, easyphoto, 1person, best quality"
    assert copy(text).input_ids == tokenizer(text).input_ids


def test_missing_vocab_names_the_file(tokenizer_copy: Path):
    (tokenizer_copy / "vocab.json").unlink()
    with pytest.raises(TokenizerFileMissingError, match="vocab.json") as info:
        load_clip_tokenizer(tokenizer_copy)
    assert isinstance(info.value, FileNotFoundError)


def test_missing_merges_names_the_file(tokenizer_copy: Path):
    (tokenizer_copy / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        load_clip_tokenizer(tokenizer_copy)


def test_corrupt_vocab_names_the_file(tokenizer_copy: Path):
    (tokenizer_copy / "vocab.json").write_text('{"a": 0,', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="vocab.json"):
        load_clip_tokenizer(tokenizer_copy)


def test_merges_without_header_is_rejected(tokenizer_copy: Path):
    path = tokenizer_copy / "merges.txt"
    path.write_text(path.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    with pytest.raises(ValueError, match="merges.txt"):
        load_clip_tokenizer(tokenizer_copy)


def test_merge_outside_vocab_is_rejected(tokenizer_copy: Path):
    path = tokenizer_copy / "merges.txt"
    path.write_text("#version: 0.2\nzz qq\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt:2"):
        load_clip_tokenizer(tokenizer_copy)


def test_corrupt_config_names_the_file(tokenizer_copy: Path):
    (tokenizer_copy / "tokenizer_config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="tokenizer_config.json"):
        load_clip_tokenizer(tokenizer_copy)


def test_config_files_are_optional(tokenizer, tokenizer_copy: Path):
    (tokenizer_copy / "tokenizer_config.json").unlink()
    (tokenizer_copy / "special_tokens_map.json").unlink()
    copy = load_clip_tokenizer(tokenizer_copy)
    assert copy.model_max_length == 77
    assert copy("a photo of a cat").input_ids == tokenizer("a photo of a cat").input_ids
