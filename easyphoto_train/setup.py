"""Loading what a run needs: device and precision, the dataset's images, the base model + LoRA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from easyphoto_core.trainer_process.config import TrainerConfig, TrainerConfigError
from easyphoto_core.workspace import DatasetFiles
from easyphoto_train.engine import TrainingModels

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in",
                "proj_out")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def resolve_device(requested: str, precision: str) -> tuple[torch.device, torch.dtype]:
    """'auto' = CUDA when present; bf16 on GPUs that support it, else fp16; CPU always fp32."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainerConfigError("The training config asks for CUDA but torch sees no CUDA "
                                 "device; use --device cpu.")
    if device.type != "cuda":
        return device, torch.float32
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def prefer_flash_attention() -> None:
    """PyTorch's flash attention instead of cuDNN's, for the trainer's process.

    cuDNN's builds a plan per attention shape on first use. Measured on the H200 (torch 2.11,
    `bench/train_gpu.py`, the job with cuDNN's attention on and off): the step graph's warm-up + capture took 12.6 s
    with it and 2.1 s without, its kernels made the 800 steps 4.2 s faster (46.7 vs 50.8 s),
    and the default job went from 100.2 to 92.4 s. torch < 2.2 (A1111's 2.1.2) has no cuDNN
    attention: nothing to turn off.
    """
    if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def load_dataset_images(dataset_dir: Path, resolution: int) -> np.ndarray:
    """The preprocessed training crops as uint8 [N, res, res, 3] (metadata.jsonl lists them)."""
    index = DatasetFiles(dataset_dir).index
    if not index.is_file():
        raise TrainerConfigError(f"No dataset at {dataset_dir} ({index.name} missing): run "
                                 "preprocess first.")
    images = []
    for line in index.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        image = Image.open(dataset_dir / entry["file_name"]).convert("RGB")
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.LANCZOS)
        images.append(np.asarray(image, dtype=np.uint8))
    if not images:
        raise TrainerConfigError(f"The dataset at {dataset_dir} lists no images.")
    return np.stack(images)


def load_training_models(config: TrainerConfig, *, device: torch.device, dtype: torch.dtype
                         ) -> tuple[TrainingModels, Any]:
    """Base model from the single-file checkpoint, frozen, with LoRA injected; components too."""
    from easyphoto_core.lora_layers import inject_lora
    from easyphoto_core.pipeline.dpm_solver import alphas_cumprod as train_alphas_cumprod
    from easyphoto_core.sd.loading import load_sd15_checkpoint

    # native: torch-only models, no diffusers/transformers import (easyphoto_core.sd.native
    # says what that saves of the start-up)
    components = load_sd15_checkpoint(config.base_model, device=device, dtype=dtype, native=True)
    for module in (components.unet, components.text_encoder, components.vae):
        module.requires_grad_(False)
        module.eval()
    if device.type == "cuda":
        # cuDNN's Hopper convolutions are NHWC; the native UNet's GroupNorm and attention
        # blocks keep NHWC activations NHWC (native/layers.py), so no layout copies remain
        components.unet.to(memory_format=torch.channels_last)
    if config.params.low_vram:
        enable_checkpointing(components.unet)
        components.unet.train()  # older diffusers checkpoint only in train mode; no dropout here
    network = inject_lora(components.unet, components.text_encoder, rank=config.params.rank,
                          alpha=config.params.network_alpha, unet_targets=UNET_TARGETS,
                          te_targets=TEXT_ENCODER_TARGETS)
    network.to(device=device, dtype=torch.float32)  # trainable LoRA weights stay fp32
    # the base model's training noise schedule (SD1.5: 'scaled_linear' over 1000 steps)
    alphas_cumprod = train_alphas_cumprod(components.scheduler_config).to(device)
    models = TrainingModels(components.unet, components.text_encoder, network, alphas_cumprod,
                            device, dtype)
    return models, components


def enable_checkpointing(unet: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (less memory, ~30% more compute).

    The UNet has no dropout, so the RNG state need not be saved and restored around each
    block; not doing so keeps the step capturable in a CUDA graph.
    """
    import functools
    import inspect

    from torch.utils.checkpoint import checkpoint

    if "gradient_checkpointing_func" in inspect.signature(
            unet.enable_gradient_checkpointing).parameters:
        unet.enable_gradient_checkpointing(gradient_checkpointing_func=functools.partial(
            checkpoint, use_reentrant=False, preserve_rng_state=False))
    else:  # older diffusers: its own checkpoint call
        unet.enable_gradient_checkpointing()


def legacy_model_hash(path: Path) -> str:
    """A1111's short model hash (sha256 of 64 KiB at 1 MiB): instant even for a 4 GB file."""
    import hashlib

    with open(path, "rb") as handle:
        handle.seek(0x100000)
        return hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]


