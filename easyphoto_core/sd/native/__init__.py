"""SD1.5's UNet, VAE and text encoder without diffusers or transformers, for the trainer.

Why: the training subprocess's start-up was mostly imports. On the H200 machine a cProfile of
the job showed 8.4 s importing diffusers' UNet module (its package imports every model family,
torch._dynamo and, where installed, peft and transformers) and 4.4 s in the metadata scans those
imports do; on this repo's 2-core CPU machine importing diffusers' models, scheduler and
transformers' CLIP costs ~4.5 s over torch alone (`python -X importtime`). These modules need
only torch. Their parameters carry diffusers'/transformers' names and shapes, so the same key
maps load them from single-file checkpoints and LoRA injection and kohya names apply unchanged;
tests/unit/test_native_models.py holds them to diffusers' and transformers' outputs.
The generation backend keeps diffusers' models (ControlNet, channels-last kernels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def build_native_component(component: str, config: Mapping[str, Any]) -> nn.Module:
    """The native model for "unet", "vae" or "text_encoder" from its diffusers-style config."""
    if component == "unet":
        from easyphoto_core.sd.native.unet import UNet2DConditionModel

        return UNet2DConditionModel(config)
    if component == "vae":
        from easyphoto_core.sd.native.vae import AutoencoderKL

        return AutoencoderKL(config)
    if component == "text_encoder":
        from easyphoto_core.sd.native.clip_text import CLIPTextModel

        return CLIPTextModel(config)
    raise ValueError(f"no native model for the SD component {component!r}")
