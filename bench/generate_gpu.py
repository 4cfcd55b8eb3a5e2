"""Seconds per portrait on a GPU: our two diffusion passes against diffusers' stock pipeline.

    python bench/generate_gpu.py [--portraits 5]
    python bench/generate_gpu.py --tiny      # CPU dry run of the same code paths (tiny models)

SD1.5-architecture random weights (same FLOPs as real ones) and three ControlNet 1.1 files.
Per portrait, as the product does it: first pass 512x512, 50 steps x denoise 0.45, canny +
openpose; second pass 768x768, 20 steps x 0.3, canny + tile; a LoRA merged for the user. The
reference is `StableDiffusionControlNetInpaintPipeline` doing the same two passes (its
MultiControlNet, DPM++ 2M Karras), in the same process after ours. Our non-diffusion stages
(detection, fusion, masks, controls) run on the CPU: bench/stages_cpu.py measures them.

Also timed: start-up (loading the base model, the ControlNets and the LoRA), the first portrait
after it (graph captures, kernel compiles), and a two-person portrait on a 1024x768 template:
each face's two passes with its own user's LoRA, then the seam pass portrait.py runs where the
pasted faces meet the photo (canny only, no LoRA, over the whole template).
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
TWO_PERSON_TEMPLATE = (768, 1024)  # height, width
TARGETS = {"portrait_s": 0.5, "speed_up": 5.0, "first_call_s": 10.0}


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def inputs(size: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    height, width = size, width or size
    rng = np.random.default_rng(size)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    control = np.zeros((height, width, 3), np.uint8)
    control[:, ::7] = 255
    return image, mask, control


def make_lora(path: Path, checkpoint: Path, seed: int = 0) -> Path:
    import torch

    from easyphoto_core.lora_format import build_metadata, save_lora
    from easyphoto_core.lora_layers import inject_lora
    from easyphoto_core.sd.loading import load_sd15_checkpoint

    parts = load_sd15_checkpoint(checkpoint, device="cpu", dtype=torch.float16)
    network = inject_lora(parts.unet, parts.text_encoder, rank=128, alpha=64)
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: (torch.randn(v.shape, generator=generator) * 0.01
                   if k.endswith("up.weight") else v.float())
               for k, v in network.state_dict_kohya().items()}
    save_lora(path, tensors, build_metadata(user_id="bench", rank=128, alpha=64,
                                            base_model_hash="0", steps=800, score=None,
                                            output_name="easyphoto_bench"))
    return path


def one_pass(backend, spec: dict, *, seed: int, lora, size: tuple[int, int] | None = None
             ) -> float:
    """Seconds of one inpaint request as the portrait pipeline makes it, the GPU's work in."""
    from easyphoto_core.pipeline.backend import ControlSpec, InpaintRequest

    image, mask, control = inputs(*(size or (spec["size"],)))
    controls = tuple(ControlSpec(kind, control, WEIGHTS[kind]) for kind in spec["controls"])
    sync()
    t0 = time.perf_counter()
    backend.inpaint(InpaintRequest(image=image, mask=mask, prompt="easyphoto_face, photo",
                                   negative_prompt="blurry", steps=spec["steps"],
                                   denoise=spec["denoise"], cfg_scale=7.0, seed=seed,
                                   controls=controls, lora=lora))
    sync()
    return time.perf_counter() - t0


def run_ours(backend, loras: list, portraits: int, passes: dict) -> dict:
    """Start-up, the first portrait, warm portraits, and the two-person portrait."""
    import torch

    from easyphoto_core.params import GenerateParams

    first, second = passes["first"], passes["second"]

    def portrait(seed: int, lora) -> dict[str, float]:
        return {"first": one_pass(backend, first, seed=seed, lora=lora),
                "second": one_pass(backend, second, seed=seed, lora=lora)}

    defaults = GenerateParams()
    seam = {"steps": defaults.seam_steps, "denoise": defaults.seam_denoising_strength,
            "controls": ("canny",)}

    def two_people(seed: int) -> dict[str, float]:
        times = {}
        for number, lora in enumerate(loras[:2]):  # each face with its own user's LoRA
            for name, seconds in portrait(seed + number, lora).items():
                times[f"face{number + 1}_{name}"] = seconds
        backend.release()  # the seam pass runs on the plain base model
        times["seam"] = one_pass(backend, seam, seed=seed, lora=None, size=passes["template"])
        return times

    t0 = time.perf_counter()  # start-up: the models into the GPU (what a server does once)
    components = backend.cache.checkpoint(backend.base_model)
    for kind in ("canny", "openpose", "tile"):
        backend.cache.controlnet(backend.controlnet_path(kind))
    for lora in loras:
        backend.cache.lora(lora.path)
    sync()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = portrait(0, loras[0])  # graph captures and kernel compiles happen here
    first_call = time.perf_counter() - t0
    runs = [portrait(seed, loras[0]) for seed in range(1, portraits + 1)]
    t0 = time.perf_counter()
    two_people(100)  # captures the seam pass's graphs (a new shape)
    two_first_call = time.perf_counter() - t0
    two = [two_people(200 + seed) for seed in range(max(2, portraits // 2))]
    totals = [r["first"] + r["second"] for r in runs]
    del components
    return {"load_s": round(load, 2), "first_call_s": round(first_call, 2),
            "warm_first_pass_s": round(warm["first"], 2),
            "first_pass_s": round(np.mean([r["first"] for r in runs]), 4),
            "second_pass_s": round(np.mean([r["second"] for r in runs]), 4),
            "portrait_s": round(np.mean(totals), 4),
            "portrait_min_s": round(min(totals), 4), "portrait_max_s": round(max(totals), 4),
            "two_person_first_call_s": round(two_first_call, 2),
            "two_person_s": round(np.mean([sum(t.values()) for t in two]), 4),
            "two_person_seam_s": round(np.mean([t["seam"] for t in two]), 4),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if torch.cuda.is_available() else None}


def run_stock(components, controlnets: dict, portraits: int, passes: dict) -> dict:
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

    pipes = {name: pipe_for(passes[name]["controls"]) for name in ("first", "second")}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)

    def portrait(seed: int) -> dict[str, float]:
        times = {}
        for name in ("first", "second"):
            spec = passes[name]
            image, mask, control = inputs(spec["size"])
            sync()
            t0 = time.perf_counter()
            pipes[name](prompt="easyphoto_face, photo", negative_prompt="blurry",
                        image=Image.fromarray(image), mask_image=Image.fromarray(mask),
                        control_image=[Image.fromarray(control)] * 2, height=spec["size"],
                        width=spec["size"], num_inference_steps=spec["steps"],
                        strength=spec["denoise"], guidance_scale=7.0,
                        controlnet_conditioning_scale=[WEIGHTS[k] for k in spec["controls"]],
                        generator=torch.Generator("cpu").manual_seed(seed))
            sync()
            times[name] = time.perf_counter() - t0
        return times

    portrait(0)
    runs = [portrait(seed) for seed in range(1, portraits + 1)]
    return {"first_pass_s": round(np.mean([r["first"] for r in runs]), 4),
            "second_pass_s": round(np.mean([r["second"] for r in runs]), 4),
            "portrait_s": round(np.mean([r["first"] + r["second"] for r in runs]), 4)}


def timed(fn, repeat: int = 3) -> float:
    """Mean seconds of `fn` after one warm-up call, the GPU's work included."""

    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
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
    nets = [backend.cache.controlnet(backend.controlnet_path(k)) for k in FIRST["controls"]]
    controls = [(net, inpainter.prepare_control(control, net), WEIGHTS[k])
                for net, k in zip(nets, FIRST["controls"], strict=True)]
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
        "prepare_control": timed(lambda: inpainter.prepare_control(control, nets[0])),
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
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: tiny models, small sizes")
    parser.add_argument("--no-cudnn-attention", action="store_true",
                        help="PyTorch's flash attention instead of cuDNN's (first-call time)")
    args = parser.parse_args()
    if args.no_cudnn_attention:
        import torch

        torch.backends.cuda.enable_cudnn_sdp(False)
    passes = {"first": FIRST, "second": SECOND, "template": TWO_PERSON_TEMPLATE}
    device, dtype = torch.device("cuda"), torch.float16
    if args.tiny:  # the same steps and strengths at an eighth of the area
        passes = {"first": {**FIRST, "size": 128}, "second": {**SECOND, "size": 192},
                  "template": (128, 256)}
        device, dtype, args.portraits, args.skip_profile = torch.device("cpu"), torch.float32, 1, True
    else:
        props = torch.cuda.get_device_properties(0)
        print(f"GPU {props.name}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_tiny_models(Path(tmp), seed=0, size="tiny" if args.tiny else "sd15")
        loras = [LoraRef(f"easyphoto_user{n}", make_lora(Path(tmp) / f"lora{n}.safetensors",
                                                         files.checkpoint, seed=n), 0.9)
                 for n in (1, 2)]
        print(f"random SD1.5 + 3 ControlNets + 2 LoRAs written in {time.perf_counter() - t0:.1f} s")
        cache = ModelCache(device=device, dtype=dtype, channels_last=not args.nchw,
                           compile_models=args.compile)
        backend = DiffusersBackend(base_model=files.checkpoint, controlnet_dirs=[Path(tmp)],
                                   cache=cache)
        ours = run_ours(backend, loras, args.portraits, passes)
        print("ours ", ours, flush=True)
        if not args.skip_profile:
            print("first pass, by part:", profile_first_pass(backend, loras[0]), flush=True)
        backend.release()
        if args.skip_stock:
            return
        components = cache.checkpoint(files.checkpoint)
        controlnets = {k: cache.controlnet(backend.controlnet_path(k))
                       for k in ("canny", "openpose", "tile")}
        cache.graphs.graphs.clear()
        plain_modules([components.unet, components.vae, *controlnets.values()])
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        stock = run_stock(components, controlnets, args.portraits, passes)
        if device.type == "cuda":
            stock["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print("stock", stock, flush=True)
    report(ours, stock)


def report(ours: dict, stock: dict) -> None:
    speed_up = stock["portrait_s"] / ours["portrait_s"]
    print(f"\nper portrait: ours {ours['portrait_s']:.3f} s (first pass {ours['first_pass_s']:.3f}"
          f", second {ours['second_pass_s']:.3f}; spread {ours['portrait_min_s']:.3f}-"
          f"{ours['portrait_max_s']:.3f}), stock {stock['portrait_s']:.3f} s "
          f"(first {stock['first_pass_s']:.3f}, second {stock['second_pass_s']:.3f}); "
          f"speed-up {speed_up:.1f}x; peak {ours['peak_gib']} GiB (stock "
          f"{stock.get('peak_gib')} GiB)")
    print(f"start-up (models to the GPU) {ours['load_s']} s; first portrait after it "
          f"{ours['first_call_s']} s; two-person portrait with the seam pass "
          f"{ours['two_person_s']:.3f} s (seam pass {ours['two_person_seam_s']:.3f} s; its first "
          f"call {ours['two_person_first_call_s']} s)")
    for name, value, target, sign in (
            ("portrait s", ours["portrait_s"], TARGETS["portrait_s"], "<="),
            ("speed-up vs stock", speed_up, TARGETS["speed_up"], ">="),
            ("first call s", ours["first_call_s"], TARGETS["first_call_s"], "<=")):
        met = value <= target if sign == "<=" else value >= target
        print(f"  {name:18s} {value:8.3f} (target {sign} {target}): "
              f"{'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
