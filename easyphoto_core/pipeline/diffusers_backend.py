"""The standalone generation backend: SD1.5 + ControlNet single files through diffusers.

Models are loaded once into a `ModelCache` owned by whoever creates the backend (the studio, the
CLI, a test); a user's LoRA is applied to the loaded modules for one request and removed after,
so switching users never reloads the base model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easyphoto_core.lora_format import load_lora
from easyphoto_core.lora_layers import merge_lora_in_place
from easyphoto_core.pipeline.backend import (
    CONTROLNET_MODELS,
    BaseModelMismatchError,
    InpaintRequest,
    LoraRef,
    MissingModelError,
    StepCallback,
    check_lora_file,
)
from easyphoto_core.pipeline.sampler import (
    ControlInput,
    GraphCache,
    InpaintSpec,
    LatentInpainter,
)
from easyphoto_core.sd.channels_last import prepare_channels_last
from easyphoto_core.sd.loading import load_controlnet, load_sd15_checkpoint

CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".pt")


@dataclass
class ModelCache:
    """Loaded components by file: the SD checkpoint, ControlNets and LoRA tensors."""

    device: torch.device
    dtype: torch.dtype
    checkpoints: dict[Path, Any] = field(default_factory=dict)
    controlnets: dict[Path, Any] = field(default_factory=dict)
    loras: dict[tuple[Path, float], Any] = field(default_factory=dict)  # (path, mtime)
    graphs: GraphCache = field(default_factory=GraphCache)
    # NHWC lets cuDNN pick its faster fp16 convolution kernels on recent GPUs; with it come our
    # channels-last GroupNorm and bias kernels (sd/channels_last.py), without which NHWC is slower
    channels_last: bool = True
    # torch.compile the UNet and ControlNets (fuses their elementwise kernels; compiling takes
    # minutes per shape on first use, so it is opt-in)
    compile_models: bool = False

    def checkpoint(self, path: Path) -> Any:
        if path not in self.checkpoints:
            self.checkpoints.clear()  # one base model at a time: they are large
            self.graphs.graphs.clear()
            components = load_sd15_checkpoint(path, device=self.device, dtype=self.dtype)
            self._prepare(components.unet)
            self._prepare(components.vae, compile_it=False)  # runs twice per pass: not worth it
            self.checkpoints[path] = components
        return self.checkpoints[path]

    def _prepare(self, model: Any, *, compile_it: bool = True) -> Any:
        """Memory layout and optional compilation for CUDA; nothing on the CPU."""
        if self.device.type != "cuda":
            return model
        compiled = self.compile_models and compile_it
        if self.channels_last and compiled:
            model.to(memory_format=torch.channels_last)  # inductor fuses the norms itself
        elif self.channels_last:
            prepare_channels_last(model)  # our GroupNorm, conv-bias and ResNet-block kernels
        if compiled:
            model.forward = torch.compile(model.forward, dynamic=False)
        return model

    def controlnet(self, path: Path) -> Any:
        if path not in self.controlnets:
            self.controlnets[path] = self._prepare(
                load_controlnet(path, device=self.device, dtype=self.dtype))
        return self.controlnets[path]

    def lora(self, path: Path) -> Any:
        """The LoRA file, its factors moved to the device once (not on every request)."""
        key = (path, path.stat().st_mtime)
        if key not in self.loras:
            self.loras = {k: v for k, v in self.loras.items() if k[0] != path}  # stale versions
            lora = load_lora(path)
            modules = {name: dataclasses.replace(module, down=module.down.to(self.device),
                                                 up=module.up.to(self.device))
                       for name, module in lora.modules.items()}
            self.loras[key] = dataclasses.replace(lora, modules=modules)
        return self.loras[key]


def find_controlnet(stem: str, folders: list[Path]) -> Path | None:
    """The file for `stem`: exact stem first, else the shortest stem that starts with it
    (e.g. control_v11p_sd15_canny_fp16), as sd-webui-controlnet matches names."""
    candidates = [p for folder in folders if folder.is_dir() for p in folder.rglob("*")
                  if p.suffix in CONTROLNET_SUFFIXES and p.stem.startswith(stem)]
    if not candidates:
        return None
    exact = [p for p in candidates if p.stem == stem]
    return (exact or sorted(candidates, key=lambda p: len(p.stem)))[0]


class DiffusersBackend:
    name = "diffusers"

    def __init__(self, *, base_model: Path, controlnet_dirs: list[Path], cache: ModelCache
                 ) -> None:
        self.base_model = Path(base_model)
        self.controlnet_dirs = [Path(d) for d in controlnet_dirs]
        self.cache = cache
        # the LoRA merged into the weights now; kept across the passes of one face
        self._merged: tuple[LoraRef, Any] | None = None

    def controlnet_path(self, kind: str) -> Path:
        stem = CONTROLNET_MODELS[kind]
        path = find_controlnet(stem, self.controlnet_dirs)
        if path is None:
            folders = ", ".join(str(d) for d in self.controlnet_dirs) or "(none configured)"
            raise MissingModelError(
                f"ControlNet model {stem} (needed for {kind}) is missing: put {stem}.safetensors "
                f"(or {stem}_fp16.safetensors) into {folders}, or run "
                f"`python -m easyphoto_core download {stem}`.")
        return path

    def check_controls(self, kinds: set[str]) -> None:
        for kind in sorted(kinds):
            self.controlnet_path(kind)

    def check_lora(self, lora: LoraRef) -> None:
        check_lora_file(lora)

    def inpaint(self, request: InpaintRequest, *, callback: StepCallback | None = None,
                interrupt: Callable[[], bool] | None = None) -> np.ndarray:
        components = self.cache.checkpoint(self.base_model)
        controls = tuple(
            ControlInput(self.cache.controlnet(self.controlnet_path(c.kind)), c.image, c.weight)
            for c in request.controls)
        spec = InpaintSpec(image=request.image, mask=request.mask, prompt=request.prompt,
                           negative_prompt=request.negative_prompt, steps=request.steps,
                           denoise=request.denoise, cfg_scale=request.cfg_scale,
                           seed=request.seed, controls=controls)
        inpainter = LatentInpainter(components, device=self.cache.device, dtype=self.cache.dtype,
                                    graph_cache=self.cache.graphs)
        self._use_lora(components, request.lora)
        try:
            return inpainter(spec, callback=callback, interrupt=interrupt)
        except BaseException:
            self.release()  # an error leaves the base model as it was
            raise

    def release(self) -> None:
        """Take a merged LoRA out of the weights (exactly); the caller's job is finished."""
        if self._merged is not None:
            self._merged[1].restore()
            self._merged = None

    def _use_lora(self, components: Any, lora: LoraRef | None) -> None:
        """Merge `lora` unless it is the one already merged (both passes of a face share it)."""
        if self._merged is not None and self._merged[0] == lora:
            return
        self.release()
        if lora is not None:
            self._merged = (lora, self._apply_lora(components, lora))

    def _apply_lora(self, components: Any, lora: LoraRef) -> Any:
        try:  # the pipeline's check_inputs read the file's header at the job's start
            return merge_lora_in_place(components.unet, components.text_encoder,
                                       self.cache.lora(lora.path).modules, lora.weight)
        except (ValueError, RuntimeError) as error:
            raise BaseModelMismatchError(
                f"LoRA {lora.name} ({lora.path}) does not fit the base model "
                f"{self.base_model.name}: {error}") from None
