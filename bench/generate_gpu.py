"""Seconds per portrait on a GPU: our two diffusion passes against diffusers' stock pipeline.

    python bench/generate_gpu.py [--portraits 5]

SD1.5-architecture random weights (same FLOPs as real ones) and three ControlNet 1.1 files.
Per portrait, as the product does it: first pass 512x512, 50 steps x denoise 0.45, canny +
openpose; second pass 768x768, 20 steps x 0.3, canny + tile; a LoRA merged for the user. The
reference is `StableDiffusionControlNetInpaintPipeline` doing the same two passes (its
MultiControlNet, DPM++ 2M Karras), in the same process after ours. Our non-diffusion stages
(detection, fusion, masks, controls) run on the CPU: bench/stages_cpu.py measures them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIRST = {"size": 512, "steps": 50, "denoise": 0.45, "controls": ("canny", "openpose")}
SECOND = {"size": 768, "steps": 20, "denoise": 0.30, "controls": ("canny", "tile")}
WEIGHTS = {"canny": 0.5, "openpose": 0.5, "tile": 1.0}


def inputs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(size)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    control = np.zeros((size, size, 3), np.uint8)
    control[:, ::7] = 255
    return image, mask, control


def make_lora(path: Path, checkpoint: Path) -> Path:
    import torch

    from easyphoto_core.lora_format import build_metadata, save_lora
    from easyphoto_core.lora_layers import inject_lora
    from easyphoto_core.sd.loading import load_sd15_checkpoint

    parts = load_sd15_checkpoint(checkpoint, device="cpu", dtype=torch.float16)
    network = inject_lora(parts.unet, parts.text_encoder, rank=128, alpha=64)
    tensors = {k: (torch.randn_like(v.float()) * 0.01 if k.endswith("up.weight") else v.float())
               for k, v in network.state_dict_kohya().items()}
    save_lora(path, tensors, build_metadata(user_id="bench", rank=128, alpha=64,
                                            base_model_hash="0", steps=800, score=None,
                                            output_name="easyphoto_bench"))
    return path


def run_ours(backend, lora, portraits: int) -> dict:
    import torch

    from easyphoto_core.pipeline.backend import ControlSpec, InpaintRequest

    def portrait(seed: int) -> dict[str, float]:
        times = {}
        for name, spec in (("first", FIRST), ("second", SECOND)):
            image, mask, control = inputs(spec["size"])
            controls = tuple(ControlSpec(kind, control, WEIGHTS[kind]) for kind in spec["controls"])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            backend.inpaint(InpaintRequest(image=image, mask=mask, prompt="easyphoto_face, photo",
                                           negative_prompt="blurry", steps=spec["steps"],
                                           denoise=spec["denoise"], cfg_scale=7.0, seed=seed,
                                           controls=controls, lora=lora))
            torch.cuda.synchronize()
            times[name] = time.perf_counter() - t0
        return times

    t0 = time.perf_counter()
    warm = portrait(0)  # loads models, captures the graphs
    first_call = time.perf_counter() - t0
    runs = [portrait(seed) for seed in range(1, portraits + 1)]
    return {"first_call_s": round(first_call, 2), "warm_first_pass_s": round(warm["first"], 2),
            "first_pass_s": round(np.mean([r["first"] for r in runs]), 4),
            "second_pass_s": round(np.mean([r["second"] for r in runs]), 4),
            "portrait_s": round(np.mean([r["first"] + r["second"] for r in runs]), 4),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def run_stock(components, controlnets: dict, portraits: int) -> dict:
    import torch
    from diffusers import (
        DPMSolverMultistepScheduler,
        StableDiffusionControlNetInpaintPipeline,
    )
    from PIL import Image

    scheduler = DPMSolverMultistepScheduler.from_config(
        components.scheduler_config, use_karras_sigmas=True, algorithm_type="dpmsolver++")

    def pipe_for(kinds):
        return StableDiffusionControlNetInpaintPipeline(
            vae=components.vae, text_encoder=components.text_encoder,
            tokenizer=components.tokenizer, unet=components.unet,
            controlnet=[controlnets[k] for k in kinds],  # wrapped in its MultiControlNetModel
            scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)

    pipes = {"first": pipe_for(FIRST["controls"]), "second": pipe_for(SECOND["controls"])}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)

    def portrait(seed: int) -> dict[str, float]:
        times = {}
        for name, spec in (("first", FIRST), ("second", SECOND)):
            image, mask, control = inputs(spec["size"])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            pipes[name](prompt="easyphoto_face, photo", negative_prompt="blurry",
                        image=Image.fromarray(image), mask_image=Image.fromarray(mask),
                        control_image=[Image.fromarray(control)] * 2, height=spec["size"],
                        width=spec["size"], num_inference_steps=spec["steps"],
                        strength=spec["denoise"], guidance_scale=7.0,
                        controlnet_conditioning_scale=[WEIGHTS[k] for k in spec["controls"]],
                        generator=torch.Generator("cpu").manual_seed(seed))
            torch.cuda.synchronize()
            times[name] = time.perf_counter() - t0
        return times

    portrait(0)
    runs = [portrait(seed) for seed in range(1, portraits + 1)]
    return {"first_pass_s": round(np.mean([r["first"] for r in runs]), 4),
            "second_pass_s": round(np.mean([r["second"] for r in runs]), 4),
            "portrait_s": round(np.mean([r["first"] + r["second"] for r in runs]), 4)}


def timed(fn, repeat: int = 3) -> float:
    """Mean seconds of `fn` after one warm-up call, the GPU's work included."""
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return round((time.perf_counter() - t0) / repeat, 4)


def profile_first_pass(backend, lora) -> dict[str, float]:
    """Where a first pass's time goes (each part timed on its own, after warm-up)."""
    import torch

    with torch.inference_mode():
        return _profile_parts(backend, lora)


def _profile_parts(backend, lora) -> dict[str, float]:
    import torch

    from easyphoto_core.pipeline.backend import ControlSpec, InpaintRequest
    from easyphoto_core.pipeline.sampler import LatentInpainter

    components = backend.cache.checkpoint(backend.base_model)
    inpainter = LatentInpainter(components, device=backend.cache.device, dtype=backend.cache.dtype,
                                graph_cache=backend.cache.graphs)
    image, mask, control = inputs(512)
    controls = [(backend.cache.controlnet(backend.controlnet_path(k)),
                 inpainter.prepare_control(control), WEIGHTS[k]) for k in FIRST["controls"]]
    embeds = inpainter.encode_prompts("easyphoto_face", "blurry")
    latents = inpainter.prepare_latents(image)
    scheduler = inpainter.make_scheduler()
    steps = inpainter.prepare_timesteps(scheduler, 50, 0.45)
    parts = {
        "lora_merge_and_restore": timed(lambda: backend._apply_lora(components, lora).restore()),
        "encode_prompts": timed(lambda: inpainter.encode_prompts("easyphoto_face", "blurry")),
        "vae_encode": timed(lambda: inpainter.prepare_latents(image)),
        "one_unet_controlnets_step": timed(lambda: inpainter.predict_noise(
            scheduler, latents, steps[0], embeds, controls=controls, cfg_scale=7.0), repeat=20),
        "vae_decode_blend": timed(lambda: inpainter.decode_and_blend(latents, image, mask)),
        "prepare_control": timed(lambda: inpainter.prepare_control(control)),
        "prepare_mask": timed(lambda: inpainter.prepare_mask(mask, latents.shape[-2:])),
    }
    noise = torch.randn_like(latents)
    latent_mask = inpainter.prepare_mask(mask, latents.shape[-2:])

    def denoise_loop():  # a fresh scheduler each time: it keeps its step index
        loop_scheduler = inpainter.make_scheduler()
        return inpainter.denoise(
            loop_scheduler, inpainter.prepare_timesteps(loop_scheduler, 50, 0.45),
            init_latents=latents, noise=noise, latent_mask=latent_mask, prompt_embeds=embeds,
            controls=controls, cfg_scale=7.0)

    parts["denoise_loop"] = timed(denoise_loop)
    parts["host_syncs_in_loop"] = count_syncs(denoise_loop)
    parts["denoising_steps"] = len(steps)
    spec = [ControlSpec(k, control, WEIGHTS[k]) for k in FIRST["controls"]]
    parts["whole_first_pass"] = timed(lambda: backend.inpaint(InpaintRequest(
        image=image, mask=mask, prompt="easyphoto_face", negative_prompt="blurry", steps=50,
        denoise=0.45, cfg_scale=7.0, seed=1, controls=tuple(spec), lora=lora)))
    return parts


def count_syncs(fn) -> int:
    """Host-device synchronisations in `fn` (each stalls the CPU until the GPU catches up)."""
    import warnings

    import torch

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchronizing" in str(w.message)]
    for message in sorted({str(w.message)[:160] for w in syncs})[:5]:
        print("  sync:", message)
    return len(syncs)


def plain_modules(models) -> None:
    """Undo ModelCache's preparation (compile, channels-last, our kernels) for the stock run:
    it runs diffusers' modules as they come."""
    from easyphoto_core.sd.channels_last import restore_plain_modules

    for model in models:
        restore_plain_modules(model)


def main() -> None:
    import torch

    from easyphoto_core.pipeline.backend import LoraRef
    from easyphoto_core.pipeline.diffusers_backend import DiffusersBackend, ModelCache
    from easyphoto_core.sd.tiny import write_tiny_models

    parser = argparse.ArgumentParser()
    parser.add_argument("--portraits", type=int, default=5)
    parser.add_argument("--nchw", action="store_true", help="keep the default memory layout")
    parser.add_argument("--compile", action="store_true", help="torch.compile UNet/ControlNets")
    parser.add_argument("--skip-stock", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_tiny_models(Path(tmp), seed=0, size="sd15")
        lora = LoraRef("easyphoto_bench", make_lora(Path(tmp) / "lora.safetensors",
                                                    files.checkpoint), 0.9)
        print(f"random SD1.5 + 3 ControlNets + LoRA written in {time.perf_counter() - t0:.1f} s")
        cache = ModelCache(device=torch.device("cuda"), dtype=torch.float16,
                           channels_last=not args.nchw, compile_models=args.compile)
        backend = DiffusersBackend(base_model=files.checkpoint, controlnet_dirs=[Path(tmp)],
                                   cache=cache)
        ours = run_ours(backend, lora, args.portraits)
        print("ours ", ours, flush=True)
        print("first pass, by part:", profile_first_pass(backend, lora), flush=True)
        components = cache.checkpoint(files.checkpoint)
        controlnets = {k: cache.controlnet(backend.controlnet_path(k))
                       for k in ("canny", "openpose", "tile")}
        if args.skip_stock:
            return
        cache.graphs.graphs.clear()
        plain_modules([components.unet, components.vae, *controlnets.values()])
        torch.cuda.empty_cache()
        stock = run_stock(components, controlnets, args.portraits)
        print("stock", stock, flush=True)
    print(f"\nper portrait: ours {ours['portrait_s']:.3f} s (first pass {ours['first_pass_s']:.3f}"
          f", second {ours['second_pass_s']:.3f}), stock {stock['portrait_s']:.3f} s "
          f"(first {stock['first_pass_s']:.3f}, second {stock['second_pass_s']:.3f}); "
          f"speed-up {stock['portrait_s'] / ours['portrait_s']:.1f}x; peak {ours['peak_gib']} GiB;"
          f" first call (loading + graph capture) {ours['first_call_s']} s")


if __name__ == "__main__":
    main()
