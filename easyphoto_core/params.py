"""Every default, bound and label of training and generation, in one place.

The UI, the HTTP API, the CLI and the infotext all read these models, so a default changes here
and nowhere else. Names follow EasyPhoto's UI so that its users recognise them.

The models work under pydantic 1.10 (AUTOMATIC1111) and pydantic 2 (Forge, standalone): they use
only `Field` constraints and `Literal` types, which both versions read the same way, and the few
version differences (dumping, schema, error texts) go through the helpers at the bottom.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, Field

PYDANTIC_V2 = pydantic.VERSION.startswith("2")

# The fixed caption every training image gets; the trigger words the LoRA learns.
TRIGGER_CAPTION = "easyphoto_face, easyphoto, 1person"

DEFAULT_POSITIVE_PROMPT = (
    "easyphoto_face, easyphoto, 1person, (best quality), (realistic, photo-realistic:1.2), "
    "detailed skin, natural light, high-res, sharp focus"
)
DEFAULT_NEGATIVE_PROMPT = (
    "(worst quality:2), (low quality:2), (normal quality:2), lowres, blurry, deformed, "
    "bad anatomy, extra fingers, watermark, text, nsfw"
)


class _Params(BaseModel):
    """Base: unknown fields are an error (a typo must not silently fall back to a default)."""

    class Config:  # read by pydantic 1 and (deprecated but supported) pydantic 2
        extra = "forbid"
        validate_assignment = True


class TrainParams(_Params):
    """Training a user's face LoRA (DESIGN.md §1.1). Defaults are EasyPhoto's."""

    resolution: int = Field(
        512, ge=256, le=1024, multiple_of=64, title="Resolution",
        description="Side of the square training crops, in pixels.",
    )
    val_and_checkpointing_steps: int = Field(
        100, ge=1, le=2000, title="Validation & save steps",
        description="Save a checkpoint and validate it every this many optimizer steps.",
    )
    max_train_steps: int = Field(
        800, ge=1, le=10000, title="Max train steps",
        description="Upper bound on optimizer steps, whatever the number of photos.",
    )
    steps_per_photos: int = Field(
        200, ge=1, le=1000, title="Max steps per photo",
        description="Optimizer steps = min(photos x this, max train steps).",
    )
    train_batch_size: int = Field(1, ge=1, le=16, title="Train batch size")
    gradient_accumulation_steps: int = Field(4, ge=1, le=64, title="Gradient accumulation steps")
    learning_rate: float = Field(1e-4, gt=0.0, le=1e-2, title="Learning rate")
    text_encoder_lr_ratio: float = Field(
        0.5, ge=0.0, le=1.0, title="Text encoder LR ratio",
        description="Text encoder learning rate = learning rate x this (0 freezes it).",
    )
    rank: int = Field(128, ge=1, le=256, title="Rank", description="LoRA rank (network dim).")
    network_alpha: int = Field(
        64, ge=1, le=256, title="Network alpha", description="LoRA scale = alpha / rank."
    )
    random_flip: bool = Field(True, title="Random flip")
    validation: bool = Field(True, title="Validation")
    num_validation_templates: int = Field(4, ge=1, le=8, title="Validation templates")
    lora_selection: Literal["best", "fusion"] = Field(
        "fusion", title="LoRA selection",
        description="Keep the best checkpoint, or fuse the top ones (on W = up x down).",
    )
    fusion_top_k: int = Field(3, ge=2, le=8, title="Checkpoints fused")
    skin_retouching: bool = Field(True, title="Skin retouching")
    crop_ratio: float = Field(
        3.0, ge=1.5, le=5.0, title="Crop ratio", description="Face box is enlarged by this."
    )
    min_face_size: int = Field(
        64, ge=16, le=512, title="Min face size",
        description="Smallest accepted face box side in pixels, in the original photo.",
    )
    identity_tolerance: float = Field(
        1.0, ge=0.5, le=1.5, title="Identity tolerance",
        description="Photos whose face differs from the majority's by more than the face model's "
        "same-person distance x this are dropped as someone else; lower is stricter.",
    )
    min_photos: int = Field(3, ge=1, le=50, title="Min usable photos")
    max_photos: int = Field(50, ge=1, le=200, title="Max photos")
    mixed_precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", title="Precision", description="auto = bf16 on CUDA when supported, else fp32."
    )
    low_vram: bool = Field(
        False, title="Low VRAM", description="Trade speed for memory (gradient checkpointing)."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, title="Seed")

    def optimizer_steps(self, photo_count: int) -> int:
        """Steps for a run on `photo_count` usable photos: min(photos x per-photo, max)."""
        return min(photo_count * self.steps_per_photos, self.max_train_steps)

    @property
    def effective_batch_size(self) -> int:
        return self.train_batch_size * self.gradient_accumulation_steps


class GenerateParams(_Params):
    """Painting user ids into a template (DESIGN.md §1.2). Defaults are EasyPhoto's."""

    seed: int = Field(-1, ge=-1, le=2**32 - 1, title="Seed", description="-1 = random.")
    prompt: str = Field(DEFAULT_POSITIVE_PROMPT, max_length=2000, title="Prompt")
    negative_prompt: str = Field(
        DEFAULT_NEGATIVE_PROMPT, max_length=2000, title="Negative prompt"
    )
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, title="CFG scale")
    lora_weight: float = Field(0.9, ge=0.0, le=2.0, title="LoRA weight")
    first_diffusion_resolution: int = Field(
        512, ge=256, le=1536, multiple_of=8, title="First diffusion resolution",
        description="Short side of the face crop in the first diffusion.",
    )
    first_diffusion_steps: int = Field(50, ge=1, le=200, title="First diffusion steps")
    first_denoising_strength: float = Field(
        0.45, ge=0.0, le=1.0, title="First diffusion denoising strength"
    )
    second_diffusion_steps: int = Field(20, ge=1, le=200, title="Second diffusion steps")
    second_denoising_strength: float = Field(
        0.30, ge=0.0, le=1.0, title="Second diffusion denoising strength"
    )
    apply_face_fusion_before: bool = Field(True, title="Apply face fusion before")
    apply_face_fusion_after: bool = Field(True, title="Apply face fusion after")
    face_fusion_ratio_before: float = Field(0.6, ge=0.0, le=1.0, title="Face fusion ratio before")
    face_fusion_ratio_after: float = Field(0.6, ge=0.0, le=1.0, title="Face fusion ratio after")
    color_shift_middle: bool = Field(True, title="Apply color shift first")
    color_shift_last: bool = Field(True, title="Apply color shift last")
    canny_weight: float = Field(0.5, ge=0.0, le=2.0, title="Canny weight (first diffusion)")
    openpose_weight: float = Field(0.5, ge=0.0, le=2.0, title="OpenPose weight (first diffusion)")
    color_control: bool = Field(False, title="Colour control (first diffusion)")
    color_weight: float = Field(0.85, ge=0.0, le=2.0, title="Colour weight (first diffusion)")
    second_canny_weight: float = Field(1.0, ge=0.0, le=2.0, title="Canny weight (second diffusion)")
    tile_weight: float = Field(1.0, ge=0.0, le=2.0, title="Tile weight (second diffusion)")
    mask_dilation: float = Field(
        0.1, ge=0.0, le=0.5, title="Face mask dilation",
        description="Dilation of the face mask, as a fraction of the face box side.",
    )
    background_restore: bool = Field(False, title="Background restore")
    background_restore_denoising: float = Field(
        0.35, ge=0.0, le=1.0, title="Background restore denoising strength"
    )
    seam_steps: int = Field(
        20, ge=1, le=100, title="Seam pass steps",
        description="Several people: steps of the light pass over the band where the pasted "
        "faces meet the photo.",
    )
    seam_denoising_strength: float = Field(
        0.2, ge=0.0, le=1.0, title="Seam pass denoising strength",
        description="Several people: how much the seam pass may change the band (0 skips it).",
    )
    high_resolution: bool = Field(False, title="High resolution second diffusion")
    high_resolution_scale: float = Field(1.5, ge=1.0, le=2.0, title="High resolution scale")


# --- helpers that hide the pydantic 1 / 2 differences --------------------------------------------

ParamsT = TypeVar("ParamsT", bound=BaseModel)


class ParamsError(ValueError):
    """Invalid parameters; the message names every offending field and what it accepts."""


def parse_params(model: type[ParamsT], data: dict[str, Any] | None = None) -> ParamsT:
    """Build `model` from `data`, turning pydantic's error into a ParamsError naming the fields."""
    data = dict(data or {})
    try:
        return model(**data)
    except pydantic.ValidationError as error:
        raise ParamsError(_describe_errors(model, error, data)) from None


def params_to_dict(params: BaseModel) -> dict[str, Any]:
    return params.model_dump() if PYDANTIC_V2 else params.dict()


def params_to_json(params: BaseModel) -> dict[str, Any]:
    """The model as JSON-ready values (paths as text), e.g. to write a file."""
    return params.model_dump(mode="json") if PYDANTIC_V2 else json.loads(params.json())


def replaced(params: ParamsT, **changes: Any) -> ParamsT:
    """A copy of a (frozen) model with `changes` (already valid values)."""
    return params.model_copy(update=changes) if PYDANTIC_V2 else params.copy(update=changes)


def params_schema(model: type[BaseModel]) -> dict[str, Any]:
    """JSON schema (title, default, minimum, maximum, enum, description per field)."""
    return model.model_json_schema() if PYDANTIC_V2 else model.schema()


def field_specs(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Per field: label, default, bounds and choices, for building UI widgets and CLI flags."""
    from easyphoto_core.i18n import gettext  # labels and help in the current language

    schema = params_schema(model)
    specs: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        specs[name] = {
            "label": gettext(prop.get("title", name)),
            "default": prop.get("default"),
            "type": prop.get("type", "string"),
            "minimum": prop.get("minimum", prop.get("exclusiveMinimum")),
            "maximum": prop.get("maximum", prop.get("exclusiveMaximum")),
            "choices": prop.get("enum"),
            "multiple_of": prop.get("multipleOf"),
            "help": gettext(prop.get("description", "")),
        }
    return specs


def infotext(params: BaseModel, *, only_changed: bool = True) -> dict[str, str]:
    """Label -> value pairs for A1111's infotext; by default only values that differ from defaults."""
    specs = field_specs(type(params))
    text: dict[str, str] = {}
    for name, value in params_to_dict(params).items():
        if name in ("prompt", "negative_prompt"):
            continue  # the host writes prompts itself
        if only_changed and value == specs[name]["default"]:
            continue
        text[f"EasyPhoto {specs[name]['label']}"] = str(value)
    return text


def _describe_errors(
    model: type[BaseModel], error: pydantic.ValidationError, data: dict[str, Any]
) -> str:
    specs = field_specs(model)
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        label = specs.get(field, {}).get("label", "unknown field")
        given = f" (got {data[field]!r})" if field in data else ""
        lines.append(f"{field} ({label}): {item['msg']}{given}")
    return f"Invalid {model.__name__}: " + "; ".join(lines)
