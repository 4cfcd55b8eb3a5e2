"""What the portrait pipeline needs from a backend: inpaint with ControlNets and one LoRA.

Two backends implement it: the standalone diffusers backend (diffusers_backend.py) and the A1111
adapter (easyphoto_webui), which drives the host's own model and sd-webui-controlnet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from easyphoto_core.callbacks import StepCallback
from easyphoto_core.lora_format import read_lora_metadata

ControlKind = Literal["canny", "openpose", "tile", "color"]

# The ControlNet 1.1 model each control kind needs (file stems as distributed; a file whose stem
# starts with this, e.g. "..._fp16", is accepted too). Colour guidance rides on the tile model.
CONTROLNET_MODELS: dict[str, str] = {
    "canny": "control_v11p_sd15_canny",
    "openpose": "control_v11p_sd15_openpose",
    "tile": "control_v11f1e_sd15_tile",
    "color": "control_v11f1e_sd15_tile",
}


class MissingModelError(FileNotFoundError):
    """A model file the request needs is absent; the message says which and where to put it."""


class BaseModelMismatchError(ValueError):
    """A LoRA trained on another base model type (SD2, SDXL) than the loaded SD1.5 model."""


@dataclass(frozen=True)
class ControlSpec:
    kind: ControlKind
    image: np.ndarray  # uint8 H x W x 3, the inpaint image's size, already preprocessed
    weight: float


@dataclass(frozen=True)
class LoraRef:
    name: str  # e.g. "easyphoto_alice" (the A1111 prompt tag name)
    path: Path
    weight: float


@dataclass(frozen=True)
class InpaintRequest:
    image: np.ndarray  # uint8 H x W x 3, sides multiples of 8
    mask: np.ndarray  # uint8 H x W, 255 = repaint
    prompt: str
    negative_prompt: str
    steps: int
    denoise: float
    cfg_scale: float
    seed: int
    controls: tuple[ControlSpec, ...] = field(default_factory=tuple)
    lora: LoraRef | None = None




def check_lora_file(lora: LoraRef) -> None:
    """The LoRA file is there, readable, and says it was trained on SD1.5 (header only)."""
    if not lora.path.is_file():
        raise MissingModelError(f"LoRA {lora.name} not found at {lora.path}: train it first.")
    base = read_lora_metadata(lora.path).get("ss_base_model_version", "sd_v1")
    if not base.startswith("sd_v1"):
        raise BaseModelMismatchError(
            f"LoRA {lora.name} was trained on {base}, but EasyPhoto generates with an SD1.5 "
            "model: retrain it on an SD1.5 checkpoint.")


def keep_unmasked(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`generated` inside the mask (uint8, 255 = repaint; soft edges blend), `original` exactly
    everywhere else: whatever a backend's sampler did outside the mask is undone."""
    weight = mask.astype(np.float32)[..., None] / 255.0
    blended = generated.astype(np.float32) * weight + original.astype(np.float32) * (1 - weight)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


class GenerationBackend(Protocol):
    name: str

    def check_controls(self, kinds: set[str]) -> None:
        """Raise MissingModelError naming the first missing ControlNet file and where it goes."""

    def check_lora(self, lora: LoraRef) -> None:
        """Raise BaseModelMismatchError / a clear error when the LoRA cannot apply here. Cheap
        and without side effects (files and headers only): it runs on the request thread."""

    def inpaint(self, request: InpaintRequest, *, callback: StepCallback | None = None,
                interrupt: Callable[[], bool] | None = None) -> np.ndarray:
        """The repainted image (same size); only the mask's region changes. The request's LoRA
        may stay applied for the next request with the same LoRA, until `release()`."""

    def release(self) -> None:
        """Leave the base model as it was loaded (no LoRA applied); called after each job."""
