"""Offline CLIP tokenizer for SD 1.5, built from the files in ``models/sd15/tokenizer/``.

The product never reaches the Hugging Face hub, so the tokenizer is built from local files
(``vocab.json``, ``merges.txt`` and, optionally, ``tokenizer_config.json`` /
``special_tokens_map.json``; ``tools/make_clip_tokenizer.py`` derives them from the public CLIP BPE).

transformers changed the constructor between the versions we support: 4.x takes
``vocab_file=``/``merges_file=`` paths, 5.x takes ``vocab=``/``merges=`` objects and silently
ignores ``vocab_file=`` (the tokenizer then has 2 tokens and returns garbage ids). We read and check
the files ourselves, then call whichever form the installed class declares.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # transformers is heavy; only import it when a tokenizer is actually built
    from transformers import CLIPTokenizer

# models/ sits next to easyphoto_core/ (editable install or run from the repo root).
DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "models" / "sd15" / "tokenizer"

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")

# CLIP's own values; used when the optional config files are absent (e.g. a tiny test tokenizer).
DEFAULT_OPTIONS: dict[str, Any] = {
    "model_max_length": 77,
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}


class TokenizerFileError(ValueError):
    """A tokenizer file exists but cannot be used (bad JSON, wrong structure, inconsistent)."""


class TokenizerFileMissingError(FileNotFoundError):
    """A required tokenizer file is absent."""


def load_clip_tokenizer(tokenizer_dir: str | os.PathLike = DEFAULT_TOKENIZER_DIR) -> CLIPTokenizer:
    """Build a ``transformers.CLIPTokenizer`` from local files, without any hub access.

    Raises TokenizerFileMissingError / TokenizerFileError naming the offending file.
    """
    directory = Path(tokenizer_dir)
    vocab_path, merges_path = directory / VOCAB_FILE, directory / MERGES_FILE
    vocab = _read_vocab(vocab_path)
    merges = _read_merges(merges_path, vocab)
    options = _read_options(directory)
    _check_special_tokens(options, vocab, directory)

    from transformers import CLIPTokenizer

    params = inspect.signature(CLIPTokenizer.__init__).parameters
    if "vocab_file" in params:  # transformers 4.x: the class reads the (already checked) files
        return CLIPTokenizer(vocab_file=str(vocab_path), merges_file=str(merges_path), **options)
    if "vocab" in params and "merges" in params:  # transformers 5.x: in-memory vocab and merges
        # tokenizers' BPE wants merges as (a, b) tuples; "a b" strings raise a TypeError there.
        return CLIPTokenizer(vocab=vocab, merges=merges, **options)
    raise RuntimeError(
        "unsupported transformers.CLIPTokenizer: its constructor takes neither "
        "vocab_file= nor vocab=/merges="
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        error = TokenizerFileMissingError(f"CLIP tokenizer file is missing: {path}")
        error.filename = str(path)
        raise error from None
    except UnicodeDecodeError as exc:
        raise TokenizerFileError(f"CLIP tokenizer file is not UTF-8: {path} ({exc})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise TokenizerFileError(f"CLIP tokenizer file is not valid JSON: {path} ({exc})") from None
    if not isinstance(data, dict):
        raise TokenizerFileError(f"CLIP tokenizer file must hold a JSON object: {path}")
    return data


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = _read_json_object(path)
    if not vocab:
        raise TokenizerFileError(f"CLIP tokenizer vocab is empty: {path}")
    # bool is an int subclass; a true/false id can only come from a damaged file.
    ids = [i for i in vocab.values() if isinstance(i, int) and not isinstance(i, bool) and i >= 0]
    if len(ids) != len(vocab):
        raise TokenizerFileError(f"CLIP tokenizer vocab ids must be non-negative integers: {path}")
    if len(set(ids)) != len(ids):  # two tokens sharing an id would decode wrongly
        raise TokenizerFileError(f"CLIP tokenizer vocab has duplicate ids: {path}")
    return vocab


def _read_merges(path: Path, vocab: dict[str, int]) -> list[tuple[str, str]]:
    lines = _read_text(path).split("\n")
    # transformers 4.x drops line 0 unconditionally, so a file without the header would silently
    # lose its first merge there: insist on it.
    if not lines[0].startswith("#version"):
        raise TokenizerFileError(f"CLIP merges file must start with a '#version' line: {path}")
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerFileError(f"{path}:{number}: a merge must be two tokens: {line!r}")
        # BPE fails late and vaguely on merges outside the vocab; say which file and line.
        for token in (parts[0], parts[1], parts[0] + parts[1]):
            if token not in vocab:
                raise TokenizerFileError(
                    f"{path}:{number}: merge token {token!r} is not in {VOCAB_FILE}"
                )
        merges.append((parts[0], parts[1]))
    return merges


def _read_options(directory: Path) -> dict[str, Any]:
    """Constructor options from the optional config files (HF precedence: the map wins)."""
    options = dict(DEFAULT_OPTIONS)
    for name in (CONFIG_FILE, SPECIAL_TOKENS_FILE):
        path = directory / name
        if not path.exists():
            continue
        data = _read_json_object(path)
        for key in SPECIAL_TOKEN_KEYS:
            if key in data:
                options[key] = _token_content(data[key], path, key)
        if "model_max_length" in data:
            options["model_max_length"] = _max_length(data["model_max_length"], path)
    # do_lower_case is not passed on: both transformers versions always lowercase for CLIP.
    return options


def _token_content(value: Any, path: Path, key: str) -> str:
    # HF writes special tokens either as plain strings or as serialised AddedToken objects.
    if isinstance(value, dict):
        value = value.get("content")
    if not isinstance(value, str) or not value:
        raise TokenizerFileError(f"{path}: {key} must be a non-empty string")
    return value


def _max_length(value: Any, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TokenizerFileError(f"{path}: model_max_length must be a positive integer")
    return value


def _check_special_tokens(options: dict[str, Any], vocab: dict[str, int], directory: Path) -> None:
    # A special token missing from the vocab would be added with an id past the end of the text
    # encoder's embedding table (transformers does this silently): refuse instead.
    for key in SPECIAL_TOKEN_KEYS:
        if options[key] not in vocab:
            raise TokenizerFileError(
                f"{directory / VOCAB_FILE}: {key} {options[key]!r} is not in the vocab"
            )
