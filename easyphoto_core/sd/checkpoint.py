"""Read single-file checkpoints safely and tell which kind of Stable Diffusion model they hold.

Only two formats are read: `.safetensors`, and PyTorch pickles (`.ckpt`/`.pt`/`.pth`) through
`torch.load(weights_only=True)`, which refuses any Python object other than tensors and plain
containers, so a malicious pickle cannot run code. Every error names the file and says what to do.
"""

from __future__ import annotations

import enum
import json
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
# safetensors itself refuses headers above 100 MB; a larger value means "not a safetensors file".
MAX_SAFETENSORS_HEADER = 100_000_000

REDOWNLOAD_ADVICE = "The download or copy was probably interrupted: download the file again."


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and says what to do."""


class SDKind(enum.Enum):
    """What a state dict holds; the value is a phrase for messages ("this looks like ...")."""

    SD1 = "a Stable Diffusion 1.x checkpoint"
    SD1_INPAINTING = "a Stable Diffusion 1.x inpainting checkpoint (9-channel UNet)"
    SD2 = "a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder)"
    SDXL = "an SDXL checkpoint"
    CONTROLNET = "a ControlNet model"
    UNKNOWN = "not a Stable Diffusion checkpoint"


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the string metadata of a `.safetensors` or weights-only pickle file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path), {}
    allowed = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
    raise CheckpointError(
        f"{path}: unsupported model file type {path.suffix!r}; expected one of {allowed} "
        "(.safetensors is preferred)."
    )


def detect_sd_kind(state_dict: Mapping[str, Any]) -> SDKind:
    """Recognise SD 1.x (and its inpainting variant), SD 2.x, SDXL and ControlNet files by key."""
    keys = state_dict.keys()
    if any(key.startswith("conditioner.embedders.") for key in keys):
        return SDKind.SDXL
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        return SDKind.SD2
    has_unet = any(key.startswith("model.diffusion_model.") for key in keys)
    has_clip = any(key.startswith("cond_stage_model.transformer.") for key in keys)
    if has_unet and has_clip:
        conv_in = state_dict.get("model.diffusion_model.input_blocks.0.0.weight")
        if isinstance(conv_in, torch.Tensor) and conv_in.ndim == 4 and conv_in.shape[1] == 9:
            return SDKind.SD1_INPAINTING
        return SDKind.SD1
    if any(key.startswith(("control_model.", "input_hint_block.")) for key in keys):
        return SDKind.CONTROLNET
    return SDKind.UNKNOWN


# --- safetensors ---------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    header = _read_safetensors_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read this safetensors file ({exc}). {REDOWNLOAD_ADVICE}"
        ) from exc
    metadata = header.get("__metadata__") or {}
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    """Parse the JSON header and check that the file is as long as the header says.

    The safetensors library reports a cut file with a terse code; checking here lets us say
    "truncated" and name the file.
    """
    size = path.stat().st_size
    not_safetensors = f"{path} is not a safetensors file (the header is unreadable)."
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(
                f"{path} is empty or too short ({size} bytes) to be a model file. "
                f"{REDOWNLOAD_ADVICE}"
            )
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > MAX_SAFETENSORS_HEADER:
            raise CheckpointError(not_safetensors)
        if 8 + header_length > size:
            raise CheckpointError(_truncated(path, size, 8 + header_length))
        raw = handle.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(not_safetensors) from None
    if not isinstance(header, dict):
        raise CheckpointError(not_safetensors)
    data_length = _data_length(header, path)
    expected = 8 + header_length + data_length
    if size < expected:
        raise CheckpointError(_truncated(path, size, expected))
    if size > expected:
        raise CheckpointError(
            f"{path} is damaged: it has {size - expected:,} bytes more than its header describes. "
            f"{REDOWNLOAD_ADVICE}"
        )
    return header


def _data_length(header: Mapping[str, Any], path: Path) -> int:
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        ):
            raise CheckpointError(f"{path} is not a valid safetensors file (bad entry {name!r}).")
        end = max(end, offsets[1])
    return end


def _truncated(path: Path, size: int, expected: int) -> str:
    return (
        f"{path} is truncated: it has {size:,} bytes but its header describes {expected:,}. "
        f"{REDOWNLOAD_ADVICE}"
    )


# --- pickles -------------------------------------------------------------------------------------


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses classes outside tensors and plain containers: never retry unsafely.
        raise CheckpointError(
            f"{path} was refused: it contains Python objects other than tensors, and EasyPhoto only "
            "loads pickles with torch.load(weights_only=True) for safety. Use the .safetensors "
            f"version of this model, or convert it to .safetensors. ({_first_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({_first_line(exc)}). It may be "
            f"truncated or not a model file. {REDOWNLOAD_ADVICE}"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]  # Lightning checkpoints wrap the weights
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors.")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; it is not a model file.")
    return tensors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
