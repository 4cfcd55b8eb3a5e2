"""Random-weight SD 1.5-shaped models in the host's file formats, for tests and benchmarks.

`write_tiny_models(out_dir)` builds a UNet, VAE, CLIP text encoder and three ControlNets from the
configs in `models/tiny` (or, with `size="sd15"`, the real SD 1.5 architecture for GPU
benchmarks), and saves them exactly as the real files are laid out (host keys, safetensors), so
the real loaders (loading.py, the trainer, the host) run on them. The weights are random: outputs
are noise, but shapes, FLOPs and code paths are those of the real models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from easyphoto_core import MODELS_DIR
from easyphoto_core.sd.ldm_keys import COMPONENT_PREFIXES, component_key_map, to_ldm_state_dict
from easyphoto_core.sd.loading import (
    CONTROLNET_CONFIG_DIR,
    EMBEDDED_CONFIGS_KEY,
    RANDOM_WEIGHTS_KEY,
    SD15_CONFIG_DIR,
    SD_COMPONENTS,
    build_component,
    read_controlnet_config,
    read_sd15_configs,
)
from easyphoto_core.workspace import atomic_save_with

TINY_CONFIG_DIR = MODELS_DIR / "tiny"
# File stems of the real ControlNet 1.1 models EasyPhoto uses (the host finds models by stem).
CONTROLNET_STEMS = (
    "control_v11p_sd15_canny",
    "control_v11p_sd15_openpose",
    "control_v11f1e_sd15_tile",
)
# Each model gets its own seed, `seed + offset`, so the files differ from one another and a test
# can rebuild any source model with `random_model(component, config, seed=seed + offset)`.
SEED_OFFSETS = {
    "unet": 0,
    "vae": 1,
    "text_encoder": 2,
    **{stem: 3 + i for i, stem in enumerate(CONTROLNET_STEMS)},
}
# diffusers zero-initialises some convs (ControlNet zero convs, hint conv_out); with those at zero a
# ControlNet has no effect and tests could not see it. Such weights get this much noise instead.
ZERO_WEIGHT_NOISE_STD = 0.02


@dataclass(frozen=True)
class ModelSize:
    """Which configs to build from, and how the files are named and stored."""

    checkpoint_name: str
    sd_config_dir: Path
    controlnet_config_dir: Path
    default_dtype: torch.dtype


SIZES = {
    "tiny": ModelSize(
        "sd15-tiny.safetensors", TINY_CONFIG_DIR, TINY_CONFIG_DIR / "controlnet", torch.float32
    ),
    # Full SD 1.5 architecture for GPU benchmarks; fp16 like the checkpoints people download.
    "sd15": ModelSize(
        "sd15-random.safetensors", SD15_CONFIG_DIR, CONTROLNET_CONFIG_DIR, torch.float16
    ),
}


@dataclass(frozen=True)
class TinyModelFiles:
    """Paths of the files `write_tiny_models` wrote."""

    checkpoint: Path
    canny: Path
    openpose: Path
    tile: Path

    @property
    def controlnets(self) -> dict[str, Path]:
        """`{file stem: path}` for the three ControlNet files."""
        return {path.stem: path for path in (self.canny, self.openpose, self.tile)}


def write_tiny_models(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    size: str = "tiny",
    dtype: torch.dtype | None = None,
) -> TinyModelFiles:
    """Write the random-weight checkpoint and ControlNet files into `out_dir`; return their paths.

    The same `seed` and library versions give the same weights. Files are written atomically.
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(SIZES)}")
    spec = SIZES[size]
    dtype = dtype or spec.default_dtype
    out = Path(out_dir)
    sd_configs = read_sd15_configs(spec.sd_config_dir)
    checkpoint = out / spec.checkpoint_name
    tensors: dict[str, torch.Tensor] = {}
    for component in SD_COMPONENTS:
        model = random_model(component, sd_configs[component], seed=seed + SEED_OFFSETS[component])
        tensors.update(_host_tensors(component, sd_configs[component], model, dtype=dtype))
        del model  # the full-size models are large: keep one at a time
    _save(checkpoint, tensors, _metadata(sd_configs, seed=seed, size=size))

    controlnet_config = read_controlnet_config(spec.controlnet_config_dir)
    controlnet_paths = []
    for stem in CONTROLNET_STEMS:
        model = random_model("controlnet", controlnet_config, seed=seed + SEED_OFFSETS[stem])
        tensors = _host_tensors("controlnet", controlnet_config, model, dtype=dtype)
        del model
        path = out / f"{stem}.safetensors"
        _save(path, tensors, _metadata({"controlnet": controlnet_config}, seed=seed, size=size))
        controlnet_paths.append(path)
    canny, openpose, tile = controlnet_paths
    return TinyModelFiles(checkpoint=checkpoint, canny=canny, openpose=openpose, tile=tile)


def random_model(component: str, config: dict[str, Any], *, seed: int) -> torch.nn.Module:
    """`component` with seeded random weights; all-zero weight tensors get small noise."""
    # fork_rng: seeding here must not change the caller's global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_component(component, config)
        _replace_zero_weights(model)
    return model.eval()


def _replace_zero_weights(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            # Biases may stay zero and norm scales are ones; only zeroed weights kill a signal.
            if name.endswith("bias") or "norm" in name:
                continue
            if not torch.any(parameter):
                parameter.normal_(0.0, ZERO_WEIGHT_NOISE_STD)


def _host_tensors(
    component: str, config: dict[str, Any], model: torch.nn.Module, *, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    key_map = component_key_map(component, config, state.keys())
    ldm = to_ldm_state_dict(state, key_map, prefix=COMPONENT_PREFIXES[component])
    return {key: t.to(dtype) if t.is_floating_point() else t for key, t in ldm.items()}


def _metadata(configs: dict[str, dict[str, Any]], *, seed: int, size: str) -> dict[str, str]:
    return {
        "format": "pt",
        EMBEDDED_CONFIGS_KEY: json.dumps(configs, sort_keys=True),
        RANDOM_WEIGHTS_KEY: "true",
        "easyphoto_seed": str(seed),
        "easyphoto_size": size,
    }


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    atomic_save_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
