"""Load single-file SD 1.5 checkpoints and ControlNet files without the Hugging Face hub.

The component configs and tokenizer files live in `models/`; the file provides only weights. Models
are built on the meta device (no memory, no random init) and the mapped tensors are then assigned
in place, strictly: a missing, unexpected or wrongly shaped tensor is an error that names the file.

Config choice: an explicit `config_dir` wins; otherwise configs embedded in the file's metadata
(written by the tiny-model writer, see tiny.py) are used; otherwise the SD 1.5 configs in
`models/sd15` (ControlNet: `models/controlnet/sd15`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from easyphoto_core import MODELS_DIR
from easyphoto_core.sd.checkpoint import CheckpointError, SDKind, detect_sd_kind, read_state_dict
from easyphoto_core.sd.ldm_keys import (
    COMPONENT_PREFIXES,
    TEXT_ENCODER_IGNORED_SUFFIX,
    component_key_map,
    diffusers_tensor,
)
from easyphoto_core.sd.tokenizer import DEFAULT_TOKENIZER_DIR, load_clip_tokenizer

if TYPE_CHECKING:  # diffusers/transformers are heavy: imported when a model is actually built
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

SD15_CONFIG_DIR = MODELS_DIR / "sd15"
CONTROLNET_CONFIG_DIR = MODELS_DIR / "controlnet" / "sd15"
SD_COMPONENTS = ("unet", "vae", "text_encoder")
SCHEDULER_CONFIG_FILE = Path("scheduler") / "scheduler_config.json"

# safetensors metadata keys written by tiny.py.
EMBEDDED_CONFIGS_KEY = "easyphoto_configs"
RANDOM_WEIGHTS_KEY = "easyphoto_random_weights"

COMPONENT_NAMES = {
    "unet": "UNet",
    "vae": "VAE",
    "text_encoder": "text encoder",
    "controlnet": "ControlNet",
}
EXAMPLES_SHOWN = 3
# Training-only tensors some full (non-pruned) SD 1.x files carry; the host ignores them too.
IGNORED_HOST_PREFIXES = ("first_stage_model.loss.",)


@dataclass
class SDComponents:
    """The pieces of an SD 1.5 pipeline loaded from one checkpoint file."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict[str, Any]
    source: Path


@dataclass(frozen=True)
class _Configs:
    """Component configs and where they came from (for messages)."""

    by_component: dict[str, dict[str, Any]]
    origin: str


def load_sd15_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config_dir: str | os.PathLike[str] | None = None,
    native: bool = False,
) -> SDComponents:
    """UNet, VAE, CLIP text encoder, tokenizer and scheduler config from a host-layout file.

    `native`: our own torch-only models and tokenizer (easyphoto_core.sd.native, for the
    trainer's start-up) instead of diffusers' and transformers'; same weights, same outputs.
    """
    source = Path(path)
    tensors, metadata = read_state_dict(source)
    kind = detect_sd_kind(tensors)
    if kind is not SDKind.SD1:
        raise CheckpointError(
            f"{source}: {_looks_like(kind)}; EasyPhoto needs a Stable Diffusion 1.5 "
            "checkpoint (keys model.diffusion_model.*, first_stage_model.*, "
            "cond_stage_model.transformer.*)."
        )
    configs = _sd_configs(metadata, config_dir, source)
    context = _LoadContext(source, configs.origin, torch.device(device), dtype, native)
    models = {
        component: _load_component(
            component,
            configs.by_component[component],
            tensors=tensors,
            prefix=COMPONENT_PREFIXES[component],
            context=context,
        )
        for component in SD_COMPONENTS
    }
    scheduler_config = configs.by_component.get("scheduler") or _read_json(
        SD15_CONFIG_DIR / SCHEDULER_CONFIG_FILE
    )
    return SDComponents(
        unet=models["unet"],
        vae=models["vae"],
        text_encoder=models["text_encoder"],
        tokenizer=_tokenizer(native),
        scheduler_config=dict(scheduler_config),
        source=source,
    )


def _tokenizer(native: bool) -> Any:
    if not native:
        return load_clip_tokenizer(DEFAULT_TOKENIZER_DIR)
    from easyphoto_core.sd.tokenizer import load_bpe_tokenizer

    return load_bpe_tokenizer(DEFAULT_TOKENIZER_DIR)


def load_controlnet(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config_dir: str | os.PathLike[str] | None = None,
) -> ControlNetModel:
    """A diffusers ControlNetModel from an SD 1.5 ControlNet file (cldm keys, any prefix)."""
    source = Path(path)
    tensors, metadata = read_state_dict(source)
    prefix = _controlnet_prefix(tensors, source)
    embedded = _embedded_configs(metadata, source) if config_dir is None else None
    if config_dir is not None:
        config, origin = read_controlnet_config(config_dir), str(config_dir)
    elif embedded is not None and "controlnet" in embedded:
        config, origin = embedded["controlnet"], "the configs embedded in the file"
    else:
        config, origin = read_controlnet_config(CONTROLNET_CONFIG_DIR), str(CONTROLNET_CONFIG_DIR)
    return _load_component(
        "controlnet",
        config,
        tensors=tensors,
        prefix=prefix,
        context=_LoadContext(source, origin, torch.device(device), dtype),
    )


def read_sd15_configs(config_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """`{"unet", "vae", "text_encoder", "scheduler": config}` from a models/sd15-style folder.

    A folder without `scheduler/` (models/tiny) gets the SD 1.5 scheduler config.
    """
    root = Path(config_dir)
    configs = {c: _read_json(root / c / "config.json") for c in SD_COMPONENTS}
    scheduler = root / SCHEDULER_CONFIG_FILE
    configs["scheduler"] = _read_json(
        scheduler if scheduler.is_file() else SD15_CONFIG_DIR / SCHEDULER_CONFIG_FILE
    )
    return configs


def read_controlnet_config(config_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ControlNet config from a models/controlnet/sd15-style folder (`config.json`)."""
    return _read_json(Path(config_dir) / "config.json")


def build_component(component: str, config: Mapping[str, Any], *, native: bool = False
                    ) -> torch.nn.Module:
    """An untrained model for `component` built from `config` on torch's current default device.

    Call it inside `with torch.device("meta"):` to get a model without memory or random init.
    `native`: easyphoto_core.sd.native's model (no ControlNet there) instead of diffusers'.
    """
    if native:
        from easyphoto_core.sd.native import build_native_component

        return build_native_component(component, config)
    if component == "text_encoder":
        from transformers import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig.from_dict(dict(config)))
    import diffusers

    classes = {
        "unet": diffusers.UNet2DConditionModel,
        "vae": diffusers.AutoencoderKL,
        "controlnet": diffusers.ControlNetModel,
    }
    if component not in classes:
        raise ValueError(f"unknown SD component {component!r}")
    return classes[component].from_config(dict(config))


# --- configs -------------------------------------------------------------------------------------


def _sd_configs(
    metadata: Mapping[str, str], config_dir: str | os.PathLike[str] | None, source: Path
) -> _Configs:
    if config_dir is not None:
        return _Configs(read_sd15_configs(config_dir), str(config_dir))
    embedded = _embedded_configs(metadata, source)
    if embedded is not None:
        missing = [c for c in SD_COMPONENTS if c not in embedded]
        if missing:
            raise CheckpointError(f"{source}: embedded configs lack {', '.join(missing)}.")
        return _Configs(embedded, "the configs embedded in the file")
    return _Configs(read_sd15_configs(SD15_CONFIG_DIR), str(SD15_CONFIG_DIR))


def _embedded_configs(
    metadata: Mapping[str, str], source: Path
) -> dict[str, dict[str, Any]] | None:
    text = metadata.get(EMBEDDED_CONFIGS_KEY)
    if text is None:
        return None
    try:
        configs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{source}: metadata {EMBEDDED_CONFIGS_KEY} is not JSON ({exc})."
        ) from None
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for v in configs.values()):
        raise CheckpointError(
            f"{source}: metadata {EMBEDDED_CONFIGS_KEY} must map names to configs."
        )
    return configs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"Model config file is missing: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Model config file is not valid JSON: {path} ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"Model config file must hold a JSON object: {path}")
    return data


def _controlnet_prefix(tensors: Mapping[str, torch.Tensor], source: Path) -> str:
    """`control_model.` (ControlNet 1.0 / most single files), "" (bare cldm keys) or diffusers."""
    prefix = COMPONENT_PREFIXES["controlnet"]
    if any(key.startswith(prefix) for key in tensors):
        return prefix
    if "input_hint_block.0.weight" in tensors:
        return ""
    kind = detect_sd_kind(tensors)
    what = _looks_like(kind) if kind is not SDKind.UNKNOWN else "this is not a ControlNet model"
    raise CheckpointError(
        f"{source}: {what}; expected an SD 1.5 ControlNet file such as "
        "control_v11p_sd15_canny (keys control_model.* or input_hint_block.*)."
    )


def _looks_like(kind: SDKind) -> str:
    if kind is SDKind.UNKNOWN:
        return f"this is {kind.value}"
    return f"this looks like {kind.value}"


# --- loading one component -----------------------------------------------------------------------


@dataclass(frozen=True)
class _LoadContext:
    source: Path
    config_origin: str
    device: torch.device
    dtype: torch.dtype
    native: bool = False


def _load_component(
    component: str,
    config: Mapping[str, Any],
    *,
    tensors: dict[str, torch.Tensor],
    prefix: str,
    context: _LoadContext,
) -> Any:
    """Build `component` on meta, then assign its tensors popped from `tensors` (host layout).

    Popping frees each source tensor as soon as it is converted, which keeps peak memory near one
    copy of the model even when an fp16 file is loaded as fp32.
    """
    with torch.device("meta"):
        model = build_component(component, config, native=context.native)
    expected = model.state_dict()
    key_map = component_key_map(component, config, expected.keys())
    loaded: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    for diffusers_key, ldm_key in key_map.items():
        tensor = tensors.pop(prefix + ldm_key, None)
        if tensor is None:
            missing.append(prefix + ldm_key)
            continue
        want = expected[diffusers_key].shape
        tensor = diffusers_tensor(tensor, want)
        if tensor.shape != want:
            mismatched.append(f"{prefix + ldm_key} {list(tensor.shape)} (expected {list(want)})")
            continue
        target_dtype = context.dtype if tensor.is_floating_point() else tensor.dtype
        # to the device first, cast there: torch casts a CPU-to-GPU copy on the CPU
        loaded[diffusers_key] = tensor.to(device=context.device).to(dtype=target_dtype)
    unexpected = [key for key in tensors if key.startswith(prefix) and not _is_ignored(key)]
    _raise_on_problems(component, missing, unexpected, mismatched, context)
    result = model.load_state_dict(loaded, strict=False, assign=True)
    buffers = {name for name, _ in model.named_buffers()}
    if result.unexpected_keys or set(result.missing_keys) - buffers:
        raise RuntimeError(f"internal key map error for {component}: {result}")
    _materialize_buffers(model, context.device)
    return model.eval()


def _is_ignored(key: str) -> bool:
    return key.endswith(TEXT_ENCODER_IGNORED_SUFFIX) or key.startswith(IGNORED_HOST_PREFIXES)


def _raise_on_problems(
    component: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
    context: _LoadContext,
) -> None:
    name = COMPONENT_NAMES[component]
    problems = []
    if missing:
        problems.append(f"{len(missing)} {name} tensors are missing (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected {name} tensors (e.g. {_examples(unexpected)})"
        )
    if mismatched:
        problems.append(
            f"{len(mismatched)} {name} tensors have the wrong shape (e.g. {_examples(mismatched)})"
        )
    if not problems:
        return
    target = "an SD 1.5 ControlNet" if component == "controlnet" else "SD 1.5"
    raise CheckpointError(
        f"{context.source}: does not match {target} as described by {context.config_origin}: "
        + "; ".join(problems)
        + ". The file may be for another architecture (SD 2.x, SDXL), a partial file (a LoRA, a "
        "VAE or an embedding), or damaged."
    )


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:EXAMPLES_SHOWN])
    return shown + (", ..." if len(items) > EXAMPLES_SHOWN else "")


def _materialize_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Give real values to buffers still on meta (they are computed, never read from files)."""
    for name, buffer in list(model.named_buffers()):
        if not buffer.is_meta:
            continue
        if not name.endswith("position_ids"):
            raise RuntimeError(f"cannot materialize buffer {name!r} built on the meta device")
        owner_name, _, attribute = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        # CLIP's position ids are arange(max_positions) with a leading batch dim of 1.
        value = torch.arange(buffer.shape[-1], device=device, dtype=buffer.dtype).expand(
            buffer.shape
        )
        setattr(owner, attribute, value)
