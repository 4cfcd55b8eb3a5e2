"""One catalogue of EasyPhoto's user-visible text: English (the source) and 简体中文.

The English text itself is the key, as in AUTOMATIC1111's `localizations/*.json`, so the same
catalogue also produces the host's `localizations/zh_CN.json`. An entry may hold placeholders
(`"{kept} of {total} photos kept."`); `gettext` fills them in the chosen language, and
`translate_message` turns an already formatted English message (an error raised deep in the
core) into Chinese by matching it against those templates — its placeholder values are
translated too, so "Cannot generate: {error}" carries a translated error.

The language is, in order: the one passed explicitly, the one of the current request or command
(`use_language`), the process default (`set_default_language`: `app.py --lang`, a setting).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

LANGUAGES = ("en", "zh")
CATALOGUE_FILE = Path(__file__).with_name("i18n_zh.json")

_default_language = "en"
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "easyphoto_language", default=None)
_PLACEHOLDER = re.compile(r"\{(\w*)(?:![rsa])?(?::[^{}]*)?\}")


def normalize_language(value: str | None) -> str | None:
    """"zh", "zh-CN", "zh_CN", "zh-Hans", "中文" -> "zh"; "en-GB" -> "en"; anything else -> None."""
    if not value:
        return None
    value = value.strip().lower().replace("_", "-")
    if value.startswith("zh") or value in ("cn", "chinese", "中文", "简体中文"):
        return "zh"
    if value.startswith("en") or value == "english":
        return "en"
    return None


def language_from_header(accept_language: str | None) -> str | None:
    """The first supported language of an HTTP Accept-Language header, by its q weights."""
    choices = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            weight = 0.0
        language = normalize_language(tag)
        if language and weight > 0:
            choices.append((-weight, index, language))
    return min(choices)[2] if choices else None


def set_default_language(language: str | None) -> str:
    """The process's language (standalone `--lang`, the host's setting); returns what was set."""
    global _default_language
    _default_language = normalize_language(language) or "en"
    return _default_language


def current_language() -> str:
    return _current.get() or _default_language


@contextlib.contextmanager
def use_language(language: str | None) -> Iterator[str]:
    """Within the block (one request, one command) messages come in `language`."""
    chosen = normalize_language(language) or current_language()
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


@lru_cache(maxsize=1)
def catalogue() -> dict[str, str]:
    """English -> 简体中文, every entry of the catalogue file."""
    with CATALOGUE_FILE.open(encoding="utf-8") as handle:
        data = json.load(handle)
    return {key: value for key, value in data.items() if not key.startswith("//")}


def has_entry(english: str) -> bool:
    return english in catalogue()


def gettext(english: str, language: str | None = None, **values: object) -> str:
    """`english` in the chosen language, with `values` filled in (English when no entry)."""
    language = normalize_language(language) or current_language()
    template = catalogue().get(english, english) if language == "zh" else english
    return template.format(**values) if values else template


def translate_message(message: str, language: str | None = None) -> str:
    """A formatted English message in the chosen language: the catalogue's exact entry, or the
    template it was formatted from (its values translated in turn); unchanged when none fits."""
    language = normalize_language(language) or current_language()
    if language == "en" or not message:
        return message
    return _translate(message, depth=0)


def _translate(message: str, depth: int) -> str:
    entries = catalogue()
    if message in entries:
        return entries[message]
    if depth > 3:
        return message
    for pattern, names, english in _patterns():
        match = pattern.match(message)
        if match is None:
            continue
        values = {name: _translate(match.group(name), depth + 1) for name in names}
        return _PLACEHOLDER.sub(lambda m, v=values: v.get(m.group(1), m.group(0)), entries[english])
    return message


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[re.Pattern[str], list[str], str]]:
    """Each template entry as an anchored regex, the most specific (most literal text) first."""
    compiled = []
    for english in catalogue():
        pieces = _PLACEHOLDER.split(english)
        if len(pieces) == 1:
            continue
        literal, names, regex = "", [], ""
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                literal += piece
                regex += re.escape(piece.replace("{{", "{").replace("}}", "}"))
            elif piece in names:
                regex += f"(?P={piece})"
            else:
                names.append(piece)
                regex += f"(?P<{piece}>.+?)"
        if len(literal.strip(" :.,()")) >= 3:  # "{source}: {error}" would match anything
            compiled.append((len(literal), re.compile(regex + r"\Z", re.DOTALL), names, english))
    compiled.sort(key=lambda item: -item[0])
    return [(pattern, names, english) for _, pattern, names, english in compiled]


# Entries of ours whose English the host shows itself: AUTOMATIC1111's localization replaces
# every text node that equals a key, on the whole page, so "Train" would rename its Train tab,
# "Generate" txt2img's button, "Seed" and "Prompt" its fields; and every extension's zh_CN.json
# is merged into one dict (modules/localization.py), so ours would also override a Chinese
# language pack's wording of the host. They stay out of the host's file: the tab is built in
# the user's language instead (easyphoto_webui.integration). Found as the catalogue's keys that
# are string literals of A1111 1.10.1 (modules/, scripts/, extensions-builtin/, javascript/);
# "or" is kept on purpose: gradio's upload text "- or -", and the host's one other "or" (the
# Extensions tab's or/and filter) reads right translated.
HOST_WORDS = frozenset({
    "Batch", "CFG scale", "Generate", "Gradient accumulation steps", "Interrupt",
    "Learning rate", "Model", "Negative prompt", "Progress", "Prompt", "Refresh", "Seed",
    "State", "Train", "finished", "prompt", "saving", "train", "training",
})


def host_localization() -> dict[str, str]:
    """AUTOMATIC1111's `localizations/zh_CN.json`: the entries a page shows as they are (the host
    replaces a text node, placeholder or title that equals a key); templates and the host's own
    words (`HOST_WORDS`) are left out."""
    return {key: value for key, value in sorted(catalogue().items())
            if not _PLACEHOLDER.search(key) and key not in HOST_WORDS}


def write_host_localization(path: Path) -> Path:
    """Regenerate `localizations/zh_CN.json` from the catalogue (`python -m easyphoto_core.i18n`)."""
    from easyphoto_core.workspace import atomic_write_bytes

    text = json.dumps(host_localization(), ensure_ascii=False, indent=1) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


if __name__ == "__main__":
    print(write_host_localization(Path(__file__).resolve().parents[1] / "localizations"
                                  / "zh_CN.json"))
