"""Training speed and memory on a GPU, ours against a plain diffusers + peft reference loop.

    python bench/train_gpu.py [--steps 800] [--reference-steps 12] [--photos 12]

SD1.5-architecture random weights (same FLOPs as real ones), 512 px, rank 128, alpha 64, effective
batch 4. Each configuration runs in its own process (clean peak-memory figures) and prints one JSON
line; the parent prints a table and the ratio. Modes:
  ours       cached latents, batch 4 in one pass, the whole step captured in a CUDA graph
  ours_eager the same step without the CUDA graph (shows what the graph buys)
  low_vram   cached latents, batch 1 x accumulation 4, gradient checkpointing, eager
  reference  diffusers + peft LoRA, batch 1 x accumulation 4, eager, VAE + text encoder every step
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("ours", "ours_eager", "low_vram", "reference")
sys.path.insert(0, str(REPO))


def make_inputs(work: Path, photos: int) -> tuple[Path, Path]:
    """A random-weight SD1.5 checkpoint and a dataset of `photos` random 512 px crops."""
    import numpy as np
    from PIL import Image

    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(work / "models", seed=0, size="sd15")
    dataset = work / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for index in range(photos):
        name = f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(dataset / name)
        lines.append(json.dumps({"file_name": name, "text": "easyphoto_face"}))
    (dataset / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return files.checkpoint, dataset


def run_ours(checkpoint: Path, dataset: Path, steps: int, *, mode: str) -> dict:
    import torch

    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.training.events import EventWriter
    from easyphoto_core.training.job import TrainJob
    from easyphoto_train.engine import LoRATrainingLoop, encode_latents
    from easyphoto_train.run import make_stepper, micro_batch_size
    from easyphoto_train.setup import load_dataset_images, load_training_models, resolve_device

    started = time.perf_counter()
    low_vram = mode == "low_vram"
    params = parse_params(TrainParams, {"low_vram": low_vram, "max_train_steps": steps})
    job = TrainJob("bench", checkpoint, dataset, dataset.parent / "out", params, device="cuda")
    device, dtype = resolve_device("cuda", params.mixed_precision)
    images = load_dataset_images(dataset, params.resolution)
    models, components = load_training_models(job, device=device, dtype=dtype)
    latents = encode_latents(components.vae, images, device=device, dtype=dtype)
    tokens = components.tokenizer("easyphoto_face, easyphoto, 1person", padding="max_length",
                                  max_length=77, return_tensors="pt").input_ids
    loop = LoRATrainingLoop(models, latents, tokens, params,
                            micro_batch=micro_batch_size(params, device), seed=0)
    stepper = loop if mode == "ours_eager" else make_stepper(loop, EventWriter())
    torch.cuda.synchronize()
    startup = time.perf_counter() - started
    timed = steps if mode == "ours" else min(steps, 60)
    t0 = time.perf_counter()
    losses = [stepper.step() for _ in range(timed)]
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    steady = total / timed
    result = {"mode": mode, "startup_s": round(startup, 2), "steps_timed": timed,
              "s_per_step": round(steady, 4), "timed_steps_s": round(total, 1),
              "full_run_s": round(steady * 800, 1),
              "loss_first": losses[0], "loss_last": losses[-1],
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    if hasattr(stepper, "timings"):  # the CUDA graph's warm-up and capture (in start-up)
        result.update({k: round(v, 2) for k, v in stepper.timings.items()})
    if mode == "ours":
        result["validation_s"] = round(_validation_seconds(components, device, dtype), 2)
        result["full_run_with_8_validations_s"] = round(
            result["full_run_s"] + 8 * result["validation_s"], 1)
    return result


def _validation_seconds(components, device, dtype) -> float:
    """One validation: the face of 4 templates redrawn with the live LoRA (scoring is on CPU)."""
    import numpy as np
    import torch

    from easyphoto_core.pipeline.sampler import InpaintSpec, LatentInpainter
    from easyphoto_train.validation import VALIDATION_DENOISE, VALIDATION_STEPS

    inpaint = LatentInpainter(components, device=device, dtype=dtype)
    image = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    mask = np.zeros((512, 512), np.uint8)
    mask[128:384, 160:352] = 255
    spec = InpaintSpec(image=image, mask=mask, prompt="easyphoto_face", steps=VALIDATION_STEPS,
                       denoise=VALIDATION_DENOISE)
    inpaint(spec)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(4):
        inpaint(spec)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_reference(checkpoint: Path, dataset: Path, steps: int) -> dict:
    """The loop of diffusers' train_dreambooth_lora.py, reduced to what we compare."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig, get_peft_model_state_dict  # noqa: F401

    from easyphoto_core.sd.loading import load_sd15_checkpoint
    from easyphoto_train.setup import load_dataset_images

    started = time.perf_counter()
    device, dtype = torch.device("cuda"), torch.bfloat16
    parts = load_sd15_checkpoint(checkpoint, device=device, dtype=dtype)
    unet, vae, text_encoder = parts.unet, parts.vae, parts.text_encoder
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=128, lora_alpha=64, init_lora_weights="gaussian", target_modules=[
        "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"]))
    text_encoder.add_adapter(LoraConfig(r=128, lora_alpha=64, init_lora_weights="gaussian",
                                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj",
                                                        "fc1", "fc2"]))
    lora_unet = [p for p in unet.parameters() if p.requires_grad]
    lora_te = [p for p in text_encoder.parameters() if p.requires_grad]
    for parameter in lora_unet + lora_te:
        parameter.data = parameter.data.float()
    optimizer = torch.optim.AdamW([{"params": lora_unet, "lr": 1e-4},
                                   {"params": lora_te, "lr": 5e-5}])
    scheduler = DDPMScheduler.from_config(parts.scheduler_config)
    images = torch.from_numpy(load_dataset_images(dataset, 512)).permute(0, 3, 1, 2)
    tokens = parts.tokenizer("easyphoto_face, easyphoto, 1person", padding="max_length",
                             max_length=77, return_tensors="pt").input_ids.to(device)
    startup = time.perf_counter() - started

    def micro_step(index: int) -> torch.Tensor:
        pixels = images[index : index + 1].to(device, dtype).div(127.5).sub(1)
        with torch.autocast("cuda", dtype=dtype):
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (1,), device=device)
            noisy = scheduler.add_noise(latents, noise, t)
            hidden = text_encoder(tokens)[0]
            pred = unet(noisy, t, hidden).sample
        return F.mse_loss(pred.float(), noise.float()) / 4

    def optimizer_step(step: int) -> float:
        total = 0.0
        for micro in range(4):
            loss = micro_step((step * 4 + micro) % images.shape[0])
            loss.backward()
            total += float(loss)
        optimizer.step()
        optimizer.zero_grad()
        return total

    for warm in range(2):
        optimizer_step(warm)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses = [optimizer_step(step) for step in range(steps)]
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / steps
    return {"mode": "reference", "startup_s": round(startup, 2), "steps_timed": steps,
            "s_per_step": round(per_step, 4), "full_run_s": round(per_step * 800, 1),
            "loss_first": losses[0], "loss_last": losses[-1],
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--reference-steps", type=int, default=12)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    args = parser.parse_args()
    if args.mode:  # child process: one configuration
        checkpoint, dataset = args.work / "models/sd15-random.safetensors", args.work / "dataset"
        if args.mode == "reference":
            result = run_reference(checkpoint, dataset, args.reference_steps)
        else:
            result = run_ours(checkpoint, dataset, args.steps, mode=args.mode)
        print("RESULT " + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(work, args.photos)
        print(f"random SD1.5 weights + {args.photos} photos written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        results = {}
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--mode", mode, "--work", str(work),
                       "--steps", str(args.steps), "--reference-steps", str(args.reference_steps)]
            output = subprocess.run(command, capture_output=True, text=True)
            line = next((x for x in output.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{mode} failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
                continue
            results[mode] = json.loads(line[len("RESULT "):])
            print(json.dumps(results[mode]), flush=True)
    report(results)


def report(results: dict) -> None:
    print("\nmode        s/step   800 steps (s)  start-up (s)  peak GiB")
    for mode, r in results.items():
        print(f"{mode:10s} {r['s_per_step']:7.4f} {r['full_run_s']:14.1f} {r['startup_s']:13.2f} "
              f"{r['peak_gib']:9.2f}")
    if "ours" in results and "reference" in results:
        ratio = results["reference"]["s_per_step"] / results["ours"]["s_per_step"]
        print(f"\nspeed-up per optimizer step, ours vs reference: {ratio:.1f}x")
    if "validation_s" in results.get("ours", {}):
        ours = results["ours"]
        print(f"one validation (4 templates, {ours['validation_s']} s); default run with 8 "
              f"validations: {ours['full_run_with_8_validations_s']} s")


if __name__ == "__main__":
    main()
