"""The optimisation itself: cached latents, one caption, LoRA on UNet + text encoder, AdamW.

Everything per step stays on the device and has a fixed shape (indices, flips, timesteps and noise
are drawn there), so the same step can later be captured in a CUDA graph.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from easyphoto_core.params import TrainParams
from easyphoto_train.adamw import FusedAdamW


@dataclass
class TrainingModels:
    """What the loop trains: frozen base models with LoRA layers injected (see lora_layers)."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    network: Any  # easyphoto_core.lora_layers.LoRANetwork
    alphas_cumprod: torch.Tensor  # [1000] from the SD1.5 scheduler config
    device: torch.device
    dtype: torch.dtype  # compute dtype of the frozen weights


@torch.no_grad()
def encode_latents(vae: torch.nn.Module, images: np.ndarray, *, device: torch.device,
                   dtype: torch.dtype, batch_size: int = 4) -> torch.Tensor:
    """uint8 [N,H,W,3] -> latents [N, 2, 4, H/8, W/8]: unflipped and horizontally flipped.

    Encoded once per run (the VAE is then no longer needed); the distribution's mean is used so
    the cache is deterministic.
    """
    scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    pixels = torch.stack([pixels, pixels.flip(-1)], dim=1).flatten(0, 1)  # [2N,3,H,W]
    chunks = []
    for start in range(0, pixels.shape[0], batch_size):
        chunk = pixels[start : start + batch_size].to(device=device, dtype=dtype)
        chunks.append(vae.encode(chunk).latent_dist.mean.float() * scaling)
    latents = torch.cat(chunks)
    return latents.view(images.shape[0], 2, *latents.shape[1:])


def build_optimizer(network: Any, params: TrainParams, *, capturable: bool = False) -> Any:
    """AdamW, constant LR; the text encoder at lr x text_encoder_lr_ratio (EasyPhoto: lr/2).

    `capturable` (CUDA): FusedAdamW, one kernel for all LoRA tensors with its step counters on
    the GPU, so the step can live in a CUDA graph (adamw.py says why not torch.optim's).
    """
    unet_params, te_params = network.parameters_by_part()
    groups = [{"params": unet_params, "lr": params.learning_rate, "name": "unet"}]
    te_lr = params.learning_rate * params.text_encoder_lr_ratio
    if te_lr > 0:
        groups.append({"params": te_params, "lr": te_lr, "name": "text_encoder"})
    else:
        for parameter in te_params:
            parameter.requires_grad_(False)
    if capturable:
        return FusedAdamW(groups, lr=params.learning_rate, weight_decay=1e-2, eps=1e-8)
    return torch.optim.AdamW(groups, lr=params.learning_rate, weight_decay=1e-2, eps=1e-8)


class LoRATrainingLoop:
    """Optimizer steps over cached latents. `micro_batch` x `accumulation` = effective batch."""

    def __init__(self, models: TrainingModels, latents: torch.Tensor, token_ids: torch.Tensor,
                 params: TrainParams, *, micro_batch: int, seed: int) -> None:
        if params.effective_batch_size % micro_batch:
            raise ValueError(f"micro batch {micro_batch} must divide the effective batch "
                             f"{params.effective_batch_size}")
        self.models = models
        self.latents = latents.to(models.device)
        self.token_ids = token_ids.to(models.device)
        self.params = params
        self.micro_batch = micro_batch
        self.accumulation = params.effective_batch_size // micro_batch
        self.optimizer = build_optimizer(models.network, params,
                                         capturable=models.device.type == "cuda")
        self.generator = torch.Generator(device=models.device).manual_seed(seed)
        self.step_count = 0
        # the LoRA factors cast once per forward (lora_layers.LoRANetwork.compute_factors
        # says what that saves); not under gradient checkpointing, which recomputes forwards
        self.cast_factors_once = not params.low_vram and any(
            p.dtype != models.dtype for p in models.network.parameters())

    def _sample_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device, count = self.models.device, self.latents.shape[0]
        index = torch.randint(0, count, (self.micro_batch,), device=device, generator=self.generator)
        flip_choices = 2 if self.params.random_flip else 1
        flip = torch.randint(0, flip_choices, (self.micro_batch,), device=device,
                             generator=self.generator)
        clean = self.latents[index, flip]
        noise = torch.randn(clean.shape, device=device, generator=self.generator)
        steps = self.models.alphas_cumprod.shape[0]
        timesteps = torch.randint(0, steps, (self.micro_batch,), device=device,
                                  generator=self.generator)
        return clean, noise, timesteps

    def _micro_step_loss(self) -> torch.Tensor:
        models = self.models
        clean, noise, timesteps = self._sample_batch()
        alpha_bar = models.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
        # No autocast: the frozen weights are already in the compute dtype and the LoRA layers
        # cast their fp32 master weights themselves. Under autocast every GroupNorm and
        # LayerNorm ran in fp32 with a cast in and out (about 1,000 casts per step on the H200's
        # eager profile, bench/train_gpu.py --modes profile); bf16 norms keep fp32 statistics.
        with (models.network.compute_factors(models.dtype) if self.cast_factors_once
              else contextlib.nullcontext()):
            # one caption for every image: encode it once and share it across the batch
            hidden = models.text_encoder(self.token_ids)[0]
            hidden = hidden.expand(self.micro_batch, -1, -1)
            prediction = models.unet(noisy.to(models.dtype), timesteps, hidden).sample
        return F.mse_loss(prediction.float(), noise, reduction="mean")

    def step(self) -> float:
        """One optimizer step; returns the mean loss over its micro-batches."""
        total = 0.0
        for _ in range(self.accumulation):
            loss = self._micro_step_loss() / self.accumulation
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        if not math.isfinite(total):
            raise FloatingPointError(f"loss became {total} at step {self.step_count}")
        return total


@functools.cache
def training_graph_pool() -> Any:
    """The memory pool of the step graph, shared by the validation graphs (validation.py).

    Validation runs between steps, never during one, so its graphs can reuse the step graph's
    scratch memory (see sampler.CapturedCall): validation then adds no memory to a run's peak.
    One pool per process: a training process trains one LoRA on one GPU."""
    return torch.cuda.graph_pool_handle()


class CudaGraphStep:
    """The whole optimizer step (sampling, text encoder, UNet forward/backward, AdamW) captured
    once in a CUDA graph and replayed: the per-step cost is then the GPU's, not the Python
    launch overhead of ~2,000 kernels (which dominates eager SD1.5 LoRA training on a fast GPU).

    Built at start-up: AdamW's state is created up front (zeros, as its first step would), a
    few forward/backward passes on a side stream load the CUDA kernels and let cuBLAS/cuDNN
    settle without updating any weight, then the step is captured. Every `step()` is then one
    replay = one optimizer step. Needs CUDA, one micro-batch per step and FusedAdamW.
    """

    def __init__(self, loop: LoRATrainingLoop, *, warmup_passes: int = 3) -> None:
        if loop.accumulation != 1 or loop.models.device.type != "cuda":
            raise ValueError("CUDA graph steps need CUDA and one micro-batch per step")
        self.loop = loop
        self.timings: dict[str, float] = {}  # warm-up and capture seconds, for benchmarks
        started = time.perf_counter()
        loop.optimizer.initialise_state()
        self._warm_up(warmup_passes)
        self.timings["warmup_s"] = time.perf_counter() - started
        started = time.perf_counter()
        self.graph = torch.cuda.CUDAGraph()
        # our sampling generator is not the default one: the graph must advance its offsets
        self.graph.register_generator_state(loop.generator)
        loop.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph, pool=training_graph_pool()):
            self.static_loss = loop._micro_step_loss()
            self.static_loss.backward()
            loop.optimizer.step()
        torch.cuda.synchronize()
        self.timings["capture_s"] = time.perf_counter() - started

    def _warm_up(self, passes: int) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(passes):
                self.loop._micro_step_loss().backward()
                self.loop.optimizer.zero_grad(set_to_none=True)  # no weight changes
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()

    def step(self) -> float:
        self.graph.replay()
        self.loop.step_count += 1
        loss = float(self.static_loss.detach())  # a plain number: no autograd warning
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {self.loop.step_count}")
        return loss
