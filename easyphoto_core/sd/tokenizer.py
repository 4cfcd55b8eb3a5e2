"""Offline CLIP tokenizer for SD 1.5, built from the files in ``models/sd15/tokenizer/``.

The product never reaches the Hugging Face hub, so the tokenizer is built from local files
(``vocab.json``, ``merges.txt`` and, optionally, ``tokenizer_config.json`` /
``special_tokens_map.json``; ``tools/make_clip_tokenizer.py`` derives them from the public CLIP BPE).

transformers changed the constructor between the versions we support: 4.x takes
``vocab_file=``/``merges_file=`` paths, 5.x takes ``vocab=``/``merges=`` objects and silently
ignores ``vocab_file=`` (the tokenizer then has 2 tokens and returns garbage ids). We read and check
the files ourselves, then call whichever form the installed class declares.

``load_bpe_tokenizer`` builds ``ClipBpeTokenizer``, a pure-Python CLIP BPE over the same checked
files, for the training subprocess: importing ``transformers.models.clip.tokenization_clip`` costs
about 1.7 s on top of torch on the dev machine (more on the GPU machine), all of it start-up time
before the first step, to turn one fixed caption into 77 ids. It mirrors transformers' CLIP
pipeline (5.x / ``CLIPTokenizerFast``: NFC, whitespace runs to one space, lower case, CLIP's regex
split, byte-to-unicode, BPE with ``</w>``, bos/eos, truncation keeping eos, padding with the pad
token), which for ordinary prompts also equals 4.x's slow tokenizer with ftfy installed.
``load_clip_tokenizer`` (transformers) remains for the diffusers generation backend.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # transformers is heavy; only import it when a tokenizer is actually built
    import torch
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
    vocab, merges, options = _read_checked(directory)

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


def load_bpe_tokenizer(tokenizer_dir: str | os.PathLike = DEFAULT_TOKENIZER_DIR) -> ClipBpeTokenizer:
    """Build the pure-Python ``ClipBpeTokenizer`` from local files (no transformers import).

    Raises TokenizerFileMissingError / TokenizerFileError exactly as ``load_clip_tokenizer`` does.
    """
    return ClipBpeTokenizer(*_read_checked(Path(tokenizer_dir)))


def _read_checked(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, Any]]:
    """vocab, merges and constructor options, each file read and checked once."""
    vocab = _read_vocab(directory / VOCAB_FILE)
    merges = _read_merges(directory / MERGES_FILE, vocab)
    options = _read_options(directory)
    _check_special_tokens(options, vocab, directory)
    return vocab, merges, options


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


# --- pure-Python CLIP BPE (see the module docstring) ---------------------------------------------

BPE_CACHE_SIZE = 10_000  # words; every cache bounded
END_OF_WORD = "</w>"

# Unicode White_Space: what `regex` and the tokenizers library mean by \s. (The stdlib's \s also
# takes U+001C..U+001F, which transformers 5 keeps as symbols.)
_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WHITESPACE_RUN = re.compile(f"[{_WHITESPACE}]+")
# transformers' CLIP split (tokenization_clip.py), with \s spelled out as White_Space.
_WORD_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
    r"|[\p{L}]+|[\p{N}]|[^WS\p{L}\p{N}]+"
).replace("WS", _WHITESPACE)

# The split's first two alternatives can only match here once lower case has made a special token
# of, say, "<|ENDOFTEXT|>" (exact special tokens are split out before). transformers 5's byte-level
# pre-tokenizer then splits such a piece again (GPT-2's pattern); for every other piece of CLIP's
# split that second split changes nothing.
_BYTE_LEVEL_SPLIT = {token: ("<|", token[2:-2], "|>")
                     for token in ("<|startoftext|>", "<|endoftext|>")}


@dataclass(frozen=True)
class BpeEncoding:
    """What ``ClipBpeTokenizer`` returns: ``input_ids``, torch.long [batch, max_length]."""

    input_ids: torch.Tensor


class ClipBpeTokenizer:
    """CLIP's byte-level BPE in plain Python, giving transformers' ids for the calls we make.

    Only ``padding="max_length"`` and ``return_tensors="pt"`` are supported; anything else (and a
    text longer than max_length without ``truncation=True``) is a ValueError.
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 options: dict[str, Any]) -> None:
        self.model_max_length: int = options["model_max_length"]
        self.bos_token_id = vocab[options["bos_token"]]
        self.eos_token_id = vocab[options["eos_token"]]
        self.pad_token_id = vocab[options["pad_token"]]
        # transformers splits special tokens out of the raw text first (case-sensitive, before
        # any cleaning) and maps them straight to their ids.
        self._special_ids = {options[key]: vocab[options[key]] for key in SPECIAL_TOKEN_KEYS}
        specials = sorted(self._special_ids, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, specials)) + ")")
        self._find_words = _word_finder()
        self._word_ids: Callable[[str], tuple[int, ...]] = functools.lru_cache(
            maxsize=BPE_CACHE_SIZE)(_bpe_word(vocab, merges, vocab[options["unk_token"]]))

    def __call__(self, text: str | list[str], padding: str = "max_length",
                 max_length: int | None = None, truncation: bool = False,
                 return_tensors: str = "pt", **unsupported: Any) -> BpeEncoding:
        if unsupported:
            raise ValueError(f"ClipBpeTokenizer does not support {', '.join(sorted(unsupported))}")
        if padding != "max_length":
            raise ValueError(f'ClipBpeTokenizer only pads to max_length (padding="max_length"), '
                             f"not padding={padding!r}")
        if return_tensors != "pt":
            raise ValueError(f'ClipBpeTokenizer only returns torch tensors (return_tensors="pt"), '
                             f"not return_tensors={return_tensors!r}")
        if not isinstance(truncation, bool):
            raise ValueError(f"truncation must be True or False, not {truncation!r}")
        if max_length is None:
            max_length = self.model_max_length
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise ValueError(f"max_length must be an integer of at least 2 (room for bos and eos), "
                             f"not {max_length!r}")
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a non-empty list of strings")

        import torch

        rows = [self._encode(t, max_length, truncation) for t in texts]
        return BpeEncoding(input_ids=torch.tensor(rows, dtype=torch.long))

    def _encode(self, text: str, max_length: int, truncation: bool) -> list[int]:
        ids = self._token_ids(text)
        if len(ids) > max_length - 2:
            if not truncation:
                raise ValueError(f"text is {len(ids) + 2} tokens, more than max_length="
                                 f"{max_length}; pass truncation=True to cut it: {text[:80]!r}")
            ids = ids[:max_length - 2]  # transformers cuts the text, then adds bos/eos
        ids = [self.bos_token_id, *ids, self.eos_token_id]
        return ids + [self.pad_token_id] * (max_length - len(ids))

    def _token_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for index, segment in enumerate(self._special_split.split(text)):
            if index % 2:  # a special token (re.split returns the separators at odd indices)
                ids.append(self._special_ids[segment])
                continue
            for word in self._find_words(_clean_text(segment)):
                for piece in _BYTE_LEVEL_SPLIT.get(word, (word,)):
                    ids.extend(self._word_ids(piece))
        return ids


def _clean_text(text: str) -> str:
    """transformers 5's CLIP normalizer: NFC, whitespace runs to one space, lower case.

    ftfy's fix_text (4.x slow tokenizer) also ends in NFC, and whitespace_clean + lower() follow it.
    """
    text = _WHITESPACE_RUN.sub(" ", unicodedata.normalize("NFC", text))
    if "\u03a3" in text:  # tokenizers lowers char by char; str.lower() would give a final sigma
        return "".join(char.lower() for char in text)
    return text.lower()


def _word_finder() -> Callable[[str], list[str]]:
    """findall for CLIP's split: the `regex` module (\\p{L}/\\p{N}), else an equivalent re."""
    try:
        import regex
    except ImportError:
        return re.compile(_stdlib_word_pattern()).findall
    return regex.compile(_WORD_PATTERN).findall


def _stdlib_word_pattern() -> str:
    # re has no \p{..}: spell the letter (L*) and number (N*) categories out as ranges. No
    # assigned code point past U+3FFFF is a letter or number, so the scan stops there (~30 ms).
    ranges: dict[str, list[list[int]]] = {"L": [], "N": []}
    for code in range(0x40000):
        major = unicodedata.category(chr(code))[0]
        if major in ranges:
            spans = ranges[major]
            if spans and spans[-1][1] == code - 1:
                spans[-1][1] = code
            else:
                spans.append([code, code])

    def char_class(major: str) -> str:
        return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                       for a, b in ranges[major])

    letters, numbers = char_class("L"), char_class("N")
    return _WORD_PATTERN.replace(r"\p{L}", letters).replace(r"\p{N}", numbers)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (transformers' bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
                 *range(ord("\xae"), ord("\xff") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


# str.translate table: a word's UTF-8 bytes, decoded as latin-1 (byte b -> chr(b)), to BPE symbols.
_BYTE_SYMBOLS = _bytes_to_unicode()


def _bpe_word(vocab: dict[str, int], merges: list[tuple[str, str]],
              unk_id: int) -> Callable[[str], tuple[int, ...]]:
    """The function from one split word to its BPE ids (wrapped in a bounded cache by the caller)."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    no_merge = len(ranks)

    def word_ids(word: str) -> tuple[int, ...]:
        symbols = word.encode("utf-8").decode("latin-1").translate(_BYTE_SYMBOLS)
        parts = [*symbols[:-1], symbols[-1] + END_OF_WORD]
        while len(parts) > 1:
            # merge every occurrence of the best-ranked adjacent pair, left to right (CLIP's bpe)
            pairs = zip(parts, parts[1:], strict=False)
            first, second = min(pairs, key=lambda pair: ranks.get(pair, no_merge))
            if (first, second) not in ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(vocab.get(part, unk_id) for part in parts)

    return word_ids
