"""Generation inside the WebUI (AUTOMATIC1111 or Forge): the GenerationBackend over the host.

The host's SD model paints through `modules.processing` (img2img inpaint, "original" masked
content), ControlNet through the host's ControlNet (sd-webui-controlnet, or Forge's built-in
one) with our own drawn control images and no preprocessor, and the user's LoRA through the
prompt's `<lora:name:weight>` tag, which the host's built-in Lora loader applies. HOST.md has the
verified facts; every `modules.*` access goes through host.py and hosts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from easyphoto_core.jobs import JobCancelled
from easyphoto_core.pipeline.backend import (
    CONTROLNET_MODELS,
    InpaintRequest,
    LoraRef,
    MissingModelError,
    StepCallback,
    check_lora_file,
    keep_unmasked,
)
from easyphoto_core.workspace import atomic_save_with
from easyphoto_webui import host, hosts

SAMPLER = "DPM++ 2M"  # with the Karras schedule: the standalone backend's sampler
SCHEDULER = "Karras"


class ControlNetSetupError(ValueError):
    """The ControlNet extension is there, but its settings cannot run this request."""


class WebuiBackend:
    def __init__(self, *, lora_dir: Path, controlnet_dirs: list[Path],
                 webui: hosts.Host | None = None) -> None:
        self.host = webui or hosts.detect()
        self.name = self.host.name
        self.lora_dir = Path(lora_dir)
        self.controlnet_dirs = [Path(d) for d in controlnet_dirs]
        # every img2img script's defaults; building them runs each script's UI, so once
        self._script_args: list[Any] | None = None

    def check_controls(self, kinds: set[str]) -> None:
        api = self._controlnet_api()
        for kind in sorted(kinds):
            self._model_name(api, kind)

    def check_lora(self, lora: LoraRef) -> None:
        check_lora_file(lora)

    def inpaint(self, request: InpaintRequest, *, callback: StepCallback | None = None,
                interrupt: Callable[[], bool] | None = None) -> np.ndarray:
        api = self._controlnet_api()
        units = [api.unit(model=self._model_name(api, control.kind), weight=control.weight,
                          image=control.image) for control in request.controls]
        limit = host.controlnet_unit_limit()
        if len(units) > limit:
            raise ControlNetSetupError(
                f"This pass needs {len(units)} ControlNet units, but the WebUI allows {limit}: "
                f"raise Settings → ControlNet → Multi-ControlNet: ControlNet unit number to "
                f"{len(units)} and restart the WebUI.")
        if request.lora is not None:  # in the job: a copy may be hundreds of MB
            check_lora_file(request.lora)
            self._install_lora(request.lora)
        if self._script_args is None:
            self._script_args = host.img2img_default_script_args()
        run = host.run_img2img(self._settings(request), script_args=self._script_args,
                               host=self.host, controlnet=api, units=units,
                               interrupt=interrupt, progress=callback)
        if run.stopped_by == "easyphoto":
            raise JobCancelled("cancelled")
        if run.stopped_by == "host":
            raise JobCancelled(f"stopped by {host.HOST_INTERRUPT}")
        generated = np.asarray(run.image.convert("RGB").resize(request.image.shape[1::-1]))
        return keep_unmasked(request.image, generated, request.mask)

    def release(self) -> None:
        """Nothing to undo: the host applies and removes prompt LoRAs itself."""

    def _settings(self, request: InpaintRequest) -> dict[str, Any]:
        from PIL import Image

        prompt = request.prompt
        if request.lora is not None:
            prompt = f"{prompt}, <lora:{request.lora.name}:{request.lora.weight:g}>"
        height, width = request.image.shape[:2]
        return {
            "prompt": prompt, "negative_prompt": request.negative_prompt,
            "init_images": [Image.fromarray(request.image)],
            "mask": Image.fromarray(request.mask),  # uint8 H x W: mode L, white = repaint
            "mask_blur": 0,  # our masks come feathered; keep_unmasked blends them
            "inpainting_fill": 1,  # "original": start from the image, as the standalone does
            "inpaint_full_res": False, "denoising_strength": request.denoise,
            "width": width, "height": height, "steps": request.steps,
            "cfg_scale": request.cfg_scale, "sampler_name": SAMPLER, "scheduler": SCHEDULER,
            "seed": request.seed, "do_not_save_samples": True, "do_not_save_grid": True,
            "override_settings": {},
        }

    def _controlnet_api(self) -> hosts.ControlNet:
        api = self.host.controlnet()
        if api is None:
            stems = ", ".join(sorted(set(CONTROLNET_MODELS.values())))
            raise MissingModelError(
                f"{self.host.controlnet_missing()} Then put the ControlNet 1.1 models ({stems}) "
                "into models/ControlNet.")
        return api

    def _model_name(self, api: Any, kind: str) -> str:
        """The host's name for the model of `kind` ("stem [hash]"); the exact stem first, else
        the shortest that starts with it (e.g. ..._fp16)."""
        stem = CONTROLNET_MODELS[kind]
        names = self._names_for(api, stem, refresh=False) or self._names_for(api, stem,
                                                                             refresh=True)
        if not names:
            folders = ", ".join(str(d) for d in self.controlnet_dirs)
            raise MissingModelError(
                f"ControlNet model {stem} (needed for {kind}) is not among the WebUI's "
                f"ControlNet models: put {stem}.safetensors (or {stem}_fp16.safetensors) into "
                f"{folders}, or run `python -m easyphoto_core download {stem}` there.")
        exact = [n for n in names if n.split(" [")[0] == stem]
        return (exact or sorted(names, key=len))[0]

    @staticmethod
    def _names_for(api: hosts.ControlNet, stem: str, *, refresh: bool) -> list[str]:
        # a model put in the folder after start-up is found by the host's refresh
        return [n for n in api.model_names(refresh=refresh) if n.split(" [")[0].startswith(stem)]

    def _install_lora(self, lora: LoraRef) -> None:
        """The host loads prompt LoRAs from its Lora folder by name: put the file there (the
        trainer already copies it; a LoRA trained elsewhere or retrained gets copied now)."""
        target = self.lora_dir / f"{lora.name}.safetensors"
        source = lora.path
        if target.is_file() and target.stat().st_size == source.stat().st_size \
                and target.stat().st_mtime >= source.stat().st_mtime:
            return
        import shutil

        atomic_save_with(target, lambda tmp: shutil.copyfile(source, tmp))
