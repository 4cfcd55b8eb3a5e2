"""Infotext: the generation parameters written into every portrait, as AUTOMATIC1111 writes them.

A portrait's PNG carries a `parameters` text chunk in the host's layout — the prompt, a
`Negative prompt:` line, then `Key: value` pairs — so the host's PNG Info tab shows it and its
paste mechanism splits it. Ours are the params model's fields (keyed `EasyPhoto <title>`), the
seed, the base model's name and hash and each LoRA's name and hash (`Model hash`, `Lora hashes`,
the hashes the host itself computes), and the user ids. `parse` reads such a text back (the
host's grammar) and `generate_params` turns it into our params again.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core.params import GenerateParams, params_schema, params_to_dict, parse_params

PREFIX = "EasyPhoto"
PNG_KEY = "parameters"  # the chunk AUTOMATIC1111 writes and its PNG Info reads
USER_IDS_KEY = f"{PREFIX} user ids"
VERSION_KEY = f"{PREFIX} version"
# Fields the host has its own key for (the first two are the text's first lines).
HOST_KEYS = {"prompt": "Prompt", "negative_prompt": "Negative prompt", "seed": "Seed",
             "cfg_scale": "CFG scale"}
# A1111's modules/infotext_utils.py grammar for one `Key: value` pair.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def infotext_key(title: str) -> str:
    """`EasyPhoto <title>` with what the host's grammar cannot hold in a key ((), &, .) dropped."""
    cleaned = re.sub(r"[^\w \-/]", " ", title)
    return f"{PREFIX} " + re.sub(r"\s+", " ", cleaned).strip()


def field_keys(model: type = GenerateParams) -> dict[str, str]:
    """Field name -> its infotext key (English whatever the UI's language: a text is data)."""
    keys = {}
    for name, prop in params_schema(model)["properties"].items():
        keys[name] = HOST_KEYS.get(name) or infotext_key(prop.get("title", name))
    return keys


@dataclass
class Provenance:
    """What made a portrait besides its params: the seed used, the models and the people."""

    seed: int
    width: int
    height: int
    user_ids: Sequence[str] = ()
    base_model: Path | None = None
    base_model_hash: str | None = None  # the host's short hash when it has one at hand
    loras: Sequence[tuple[str, Path]] = ()  # (name as in <lora:name:w>, file)
    extra: dict[str, Any] = field(default_factory=dict)


def quote(value: object) -> str:
    """A value as the host writes it: JSON-quoted when it holds a comma, colon or newline."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',\n:"') else text


def unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value
    return value


def build(params: GenerateParams, provenance: Provenance) -> str:
    """The infotext of one portrait: every field (so pasting restores them all), seed, models."""
    from easyphoto_core import __version__

    values = params_to_dict(params)
    keys = field_keys(type(params))
    pairs: dict[str, object] = {
        "Steps": values["first_diffusion_steps"],
        "CFG scale": values["cfg_scale"],
        "Seed": provenance.seed,
        "Size": f"{provenance.width}x{provenance.height}",
    }
    if provenance.base_model is not None:
        pairs["Model hash"] = provenance.base_model_hash or model_hash(provenance.base_model)
        pairs["Model"] = provenance.base_model.stem
    if provenance.loras:
        pairs["Lora hashes"] = ", ".join(f"{name}: {lora_hash(path)}"
                                         for name, path in provenance.loras)
    if provenance.user_ids:
        pairs[USER_IDS_KEY] = ", ".join(provenance.user_ids)
    for name, value in values.items():
        if name not in HOST_KEYS:
            pairs[keys[name]] = value
    pairs.update(provenance.extra)
    pairs[VERSION_KEY] = __version__
    line = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items())
    return f"{params.prompt}\nNegative prompt: {params.negative_prompt}\n{line}"


def parse(text: str) -> dict[str, str]:
    """An infotext as `Prompt`, `Negative prompt` and each `Key` -> value (the host's reading)."""
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:  # no parameter line: it is all prompt
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PAIR.findall(last):
        result[key.strip()] = unquote(value.strip())
    return result


def generate_params(text: str) -> tuple[GenerateParams, list[str]]:
    """Our params (fields the text lacks keep their defaults) and the user ids, from a text.

    Raises ParamsError (naming the fields) when a value is out of bounds, ValueError when the
    text is not EasyPhoto's."""
    values = parse(text)
    if not any(key.startswith(f"{PREFIX} ") for key in values):
        raise ValueError("This image has no EasyPhoto settings: it was not made by EasyPhoto.")
    data: dict[str, Any] = {}
    schema = params_schema(GenerateParams)["properties"]
    for name, key in field_keys(GenerateParams).items():
        if key in values and (values[key] or name in ("prompt", "negative_prompt")):
            data[name] = _typed(values[key], schema[name].get("type"))
    ids = [uid.strip() for uid in values.get(USER_IDS_KEY, "").split(",") if uid.strip()]
    return parse_params(GenerateParams, data), ids


def _typed(value: str, kind: str | None) -> Any:
    """The text of a value as the field's JSON type (pydantic checks the bounds after)."""
    if kind == "boolean":
        return value.strip().lower() in ("true", "1", "yes")
    if kind in ("integer", "number"):
        try:
            number = float(value)
        except ValueError:
            return value  # pydantic names the field and what it accepts
        return int(number) if kind == "integer" and number.is_integer() else number
    return value


# --- PNG --------------------------------------------------------------------------------------

def png_info(text: str) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, text)
    return info


def save_png(path: Path, image: Any, text: str) -> None:
    """Write `image` (HWC uint8 array or PIL image) atomically as a PNG carrying `text`."""
    import numpy as np
    from PIL import Image

    from easyphoto_core.workspace import atomic_save_with

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    atomic_save_with(path, lambda tmp: picture.save(tmp, format="PNG", pnginfo=png_info(text)))


def read_infotext(image: Any) -> str | None:
    """The infotext of a PIL image or a file (PNG chunk, or the host's JPEG/WebP EXIF comment)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            return read_infotext(opened)
    text = image.info.get(PNG_KEY)
    if text is None:
        exif = image.getexif().get_ifd(0x8769).get(0x9286)  # UserComment, as the host writes
        if isinstance(exif, bytes):
            text = exif[8:].decode("utf-16-be" if exif.startswith(b"UNICODE") else "utf-8",
                                   errors="replace").strip("\x00")
    return str(text) if text else None


# --- hashes, as AUTOMATIC1111 computes and prints them ----------------------------------------

_HASHES: OrderedDict[tuple[str, int, int, str], str] = OrderedDict()
_HASH_CACHE_SIZE = 256


def model_hash(path: Path) -> str:
    """A checkpoint's `Model hash`: the first 10 hex digits of the whole file's sha256."""
    return _cached(path, "model", lambda handle: _sha256(handle, 0))[:10]


def lora_hash(path: Path) -> str:
    """A LoRA's `Lora hashes` entry: the first 12 hex digits of the sha256 of a safetensors
    file's tensor data (the header skipped, the "addnet" hash the host's Lora network uses)."""
    def digest(handle: Any) -> str:
        header = handle.read(8)
        offset = 8 + struct.unpack("<Q", header)[0] if len(header) == 8 else 0
        return _sha256(handle, offset)

    return _cached(path, "lora", digest)[:12]


def _cached(path: Path, kind: str, compute: Any) -> str:
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, kind)
    if key not in _HASHES:
        with path.open("rb") as handle:
            _HASHES[key] = compute(handle)
        while len(_HASHES) > _HASH_CACHE_SIZE:  # bounded: a long-running studio sees many LoRAs
            _HASHES.popitem(last=False)
    return _HASHES[key]


def _sha256(handle: Any, offset: int) -> str:
    handle.seek(offset)
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def for_portrait(params: GenerateParams, result: Any, *, workspace: Any,
                 base_model: Path | None, base_model_hash: str | None = None) -> str:
    """The infotext of a PortraitResult: its seed and size, the base model, each painted user's
    LoRA (the name the host's Lora tab knows it by) — what studio, API, host and CLI write."""
    user_ids = list(dict.fromkeys(face.user_id for face in result.faces))
    loras = []
    for user_id in user_ids:
        files = workspace.user(user_id)
        if files.lora_file.is_file():
            loras.append((files.lora_name, files.lora_file))
    seed = getattr(result, "seed", None)
    height, width = result.image.shape[:2]
    return build(params, Provenance(
        seed=params.seed if seed is None else seed, width=width, height=height,
        user_ids=user_ids, base_model=base_model, base_model_hash=base_model_hash,
        loras=loras))
