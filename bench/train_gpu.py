"""Training on a GPU: the default job launch to final LoRA, against a diffusers + peft loop.

    python bench/train_gpu.py [--modes job,low_vram,reference] [--weights DIR]
    python bench/train_gpu.py --tiny          # CPU dry run of the same code paths (tiny models)

SD1.5-architecture random weights (same FLOPs as real ones), 12 photos at 512 px. Each
configuration runs in its own process (clean peak-memory figures); the parent prints a table.
  job        the default job as the product launches it (`python -m easyphoto_train --config`):
             start-up, latent caching, 800 steps x effective batch 4, rank 128, UNet + text
             encoder, a checkpoint + validation (4 templates) every 100 steps, selection /
             fusion, save. Timed from the launch to the process's exit; the phases are read
             off the trainer's own JSON events as they arrive.
  low_vram   the same job with Low VRAM on, 100 steps (one checkpoint + validation): its
             figure is the peak memory; per step it costs what gradient checkpointing costs.
  reference  the loop of diffusers' train_dreambooth_lora.py with peft LoRA on the same
             targets, batch 1 x accumulation 4, VAE + text encoder every step, eager; timed
             over --reference-steps optimizer steps and scaled to 800.
  steps      diagnosis: our optimizer step alone (CUDA graph), no job around it
  steps_flash   the same with FlashAttention preferred over cuDNN's (as the job does)
  steps_nchw    steps_flash with the UNet in NCHW memory, as before the trainer went
             channels-last (cuDNN's Hopper convolutions are NHWC: on NCHW tensors they
             transpose in and out, 12% of a step's GPU time)
  eager      diagnosis: the same step without the CUDA graph
  profile    diagnosis: the GPU time of 5 eager steps by kernel and by kind of kernel
`--weights` is a folder with the YuNet file (validation detects faces with it); identity
embedding needs dlib (face_recognition_models). Random-weight outputs show no face, so each
validation image costs one detection and no embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("job", "low_vram", "reference", "steps", "steps_flash", "steps_nchw", "eager",
         "profile")
DEFAULT_MODES = "job,low_vram,reference"
LOW_VRAM_STEPS = 100
LAUNCHED_ENV = "EASYPHOTO_BENCH_LAUNCHED"  # the parent's launch time, for the child's imports
TARGETS = {"job_s": 90.0, "steps_s": 40.0, "startup_s": 15.0, "peak_gib": 8.0,
           "low_vram_peak_gib": 5.0}
sys.path.insert(0, str(REPO))


def make_inputs(work: Path, photos: int, *, size: str, resolution: int) -> tuple[Path, Path]:
    """Random-weight SD1.5 files and a dataset as preprocess leaves it: random crops with a face
    box each (validation masks it), identity embeddings, a reference photo."""
    import numpy as np
    from PIL import Image

    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(work / "models", seed=0, size=size)
    dataset = work / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    box = [resolution * 0.3, resolution * 0.25, resolution * 0.7, resolution * 0.75]
    for index in range(photos):
        name = f"{index:03d}.png"
        pixels = rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(dataset / name)
        lines.append(json.dumps({"file_name": name, "text": "easyphoto_face, easyphoto, 1person",
                                 "face_box": box}))
    (dataset / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    embeddings = rng.normal(size=(photos, 128)).astype(np.float32)
    np.save(dataset / "embeddings.npy", embeddings / np.linalg.norm(embeddings, axis=1,
                                                                    keepdims=True))
    Image.fromarray(pixels).save(dataset / "reference.png")
    return files.checkpoint, dataset


# --- the job, as the product launches it ------------------------------------------------------

def run_job(work: Path, checkpoint: Path, dataset: Path, *, name: str, overrides: dict,
            weights: Path | None, device: str) -> dict:
    """Launch the trainer subprocess on a job file; time every phase from its events."""
    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.trainer_process.config import TrainerConfig
    from easyphoto_core.trainer_process.events import parse_event

    (work / "Lora").mkdir(exist_ok=True)
    job = TrainerConfig(user_id="bench", base_model=checkpoint, dataset_dir=dataset,
                        output_dir=work / f"out-{name}",
                        params=parse_params(TrainParams, overrides), device=device,
                        lora_copy_dirs=(work / "Lora",), weights_dir=weights)
    config = work / f"job-{name}.json"
    job.save(config)
    command = [sys.executable, __file__, "--job-child", str(config)]
    launched = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO, env={**os.environ, LAUNCHED_ENV: str(launched)})
    events, other = [], []
    for line in process.stdout:  # one JSON event per line, flushed as it happens
        event = parse_event(line)
        if event is None:
            other.append(line)
            continue
        event["arrived"] = time.time()
        events.append(event)
    stderr = process.stderr.read()
    code = process.wait()
    ended = time.time()
    peak = next((json.loads(x[len("PEAK "):]) for x in other if x.startswith("PEAK ")), {})
    if code != 0 or not any(e["event"] == "done" for e in events):
        tail = "".join(other[-20:]) + stderr[-4000:]
        raise RuntimeError(f"training job exited with {code}:\n{tail}\n{events[-3:]}")
    return {"mode": name, **phases(events, launched, ended), **peak}


def phases(events: list[dict], launched: float, ended: float) -> dict:
    """Seconds per phase. Each event's arrival closes the phase that led to it: the time before
    a `step` event is that optimizer step (the trainer syncs on its loss), before `validation`
    the validation. Checkpoints are written on a thread while training goes on: their event
    closes no phase (the copy off the GPU is in the next step's time; `parts_s` has both)."""
    start = next(e for e in events if e["event"] == "start")
    spent = {"step": 0.0, "validation": 0.0}
    step_times = []
    previous = start["arrived"]
    for event in events[events.index(start) + 1:]:
        if event["event"] == "checkpoint":
            continue
        if event["event"] in spent:
            spent[event["event"]] += event["arrived"] - previous
        if event["event"] == "step":
            step_times.append(event["arrived"] - previous)
        previous = event["arrived"]
        if event["event"] == "done":
            break
    done = next(e for e in events if e["event"] == "done")
    steps = sum(1 for e in events if e["event"] == "step")
    validations = sum(1 for e in events if e["event"] == "validation")
    last_before_done = next(e for e in reversed(events[:events.index(done)])
                            if e["event"] != "checkpoint")["arrived"]  # incl. the last write
    return {
        "job_s": round(ended - launched, 2),
        "startup_s": round(start["arrived"] - launched, 2),  # launch to the first step
        "trainer_startup_s": start.get("startup_seconds"),  # the same, inside the process
        "optimizer_steps": steps,
        "steps_s": round(spent["step"], 2),
        "s_per_step": round(spent["step"] / max(steps, 1), 4),
        # a mean above the median: some steps waited (a checkpoint's copy off the GPU, the
        # writer thread holding the interpreter)
        "step_median_s": round(statistics.median(step_times), 4) if step_times else None,
        "step_p99_s": round(sorted(step_times)[int(0.99 * (len(step_times) - 1))], 4)
        if step_times else None,
        "validations": validations,
        "validations_s": round(spent["validation"], 2),
        "select_fuse_save_s": round(done["arrived"] - last_before_done, 2),
        "exit_s": round(ended - done["arrived"], 2),  # interpreter and CUDA teardown
        "selected_steps": done.get("selected"),
        "fusion_error": done.get("fusion_error"),
    }


def job_child(config: Path) -> int:
    """The trainer's entry point, plus where its start-up goes and its peak GPU memory."""
    import easyphoto_train.run as run
    from easyphoto_train.__main__ import main

    timings: dict[str, float] = {}
    timings["imports_from_launch"] = time.time() - float(os.environ.get(LAUNCHED_ENV, time.time()))
    for name in ("resolve_device", "load_dataset_images", "load_training_models",
                 "encode_latents", "LoRATrainingLoop", "_prepare_state", "_validator",
                 "make_stepper"):
        setattr(run, name, _timed(getattr(run, name), name, timings))
    import torch

    import easyphoto_core.lora_layers as lora_layers
    import easyphoto_core.sd.loading as loading

    loading.load_sd15_checkpoint = _timed(loading.load_sd15_checkpoint, "load_sd15_checkpoint",
                                          timings)  # inside load_training_models
    lora_layers.inject_lora = _timed(lora_layers.inject_lora, "inject_lora", timings)
    import easyphoto_train.checkpoints as checkpoints

    run.snapshot_checkpoint = _timed(run.snapshot_checkpoint, "checkpoint_snapshots", timings)
    checkpoints.CheckpointSnapshot.write = _timed(checkpoints.CheckpointSnapshot.write,
                                                  "checkpoint_writes_on_the_thread", timings)
    import easyphoto_train.output as output

    output.final_lora_tensors = _timed(output.final_lora_tensors, "select_fuse", timings)
    stepper_of = run.make_stepper
    after_startup: dict[str, float] = {}

    def make_stepper(loop, events):  # the graph's warm-up / capture split, and memory so far
        stepper = stepper_of(loop, events)
        timings.update({f"step_graph_{k}": v for k, v in getattr(stepper, "timings", {}).items()})
        # torch.optim's first use imports it (adamw.py): 4.1 s of this start-up on the H200
        after_startup["torch_dynamo_imported_by_startup"] = "torch._dynamo" in sys.modules
        if torch.cuda.is_available():
            after_startup["peak_after_startup_gib"] = round(
                torch.cuda.max_memory_allocated() / 2**30, 2)
        return stepper

    run.make_stepper = make_stepper
    # a validation's time, split: the GPU's inpainting and the CPU's identity scoring
    from easyphoto_core.pipeline.sampler import LatentInpainter
    from easyphoto_train.validation import IdentityScorer

    LatentInpainter.__call__ = _timed(LatentInpainter.__call__, "validation_inpaint", timings)
    IdentityScorer.score = _timed(IdentityScorer.score, "validation_scoring", timings)
    code = main(["--config", str(config)])
    result = {"parts_s": {k: round(v, 2) for k, v in timings.items()}, **after_startup}
    if torch.cuda.is_available():
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    print("PEAK " + json.dumps(result), flush=True)
    return code


def _timed(function, name: str, timings: dict[str, float]):
    def wrapper(*args, **kwargs):
        import torch

        started = time.perf_counter()
        result = function(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return result

    return wrapper


# --- our step alone (diagnosis) ---------------------------------------------------------------

def run_steps(checkpoint: Path, dataset: Path, steps: int, *, mode: str) -> dict:
    import torch

    from easyphoto_core.params import TrainParams, parse_params
    from easyphoto_core.trainer_process.config import TrainerConfig
    from easyphoto_core.trainer_process.events import EventWriter
    from easyphoto_train.engine import LoRATrainingLoop, encode_latents
    from easyphoto_train.run import make_stepper, micro_batch_size
    from easyphoto_train.setup import load_dataset_images, load_training_models, resolve_device

    started = time.perf_counter()
    if mode in ("steps_flash", "steps_nchw", "profile"):  # the job's attention kernels
        from easyphoto_train.setup import prefer_flash_attention

        prefer_flash_attention()
    params = parse_params(TrainParams, {"max_train_steps": steps})
    job = TrainerConfig(user_id="bench", base_model=checkpoint, dataset_dir=dataset,
                        output_dir=dataset.parent / "out", params=params, device="cuda")
    device, dtype = resolve_device("cuda", params.mixed_precision)
    images = load_dataset_images(dataset, params.resolution)
    models, components = load_training_models(job, device=device, dtype=dtype)
    if mode == "steps_nchw":
        models.unet.to(memory_format=torch.contiguous_format)
    latents = encode_latents(components.vae, images, device=device, dtype=dtype)
    tokens = components.tokenizer("easyphoto_face, easyphoto, 1person", padding="max_length",
                                  max_length=77, return_tensors="pt").input_ids
    loop = LoRATrainingLoop(models, latents, tokens, params,
                            micro_batch=micro_batch_size(params, device), seed=0)
    stepper = loop if mode in ("eager", "profile") else make_stepper(loop, EventWriter())
    if mode == "profile":
        return profile_steps(stepper)
    torch.cuda.synchronize()
    startup = time.perf_counter() - started
    timed = min(steps, 30 if mode == "eager" else 200)
    t0 = time.perf_counter()
    losses = [stepper.step() for _ in range(timed)]
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / timed
    result = {"mode": mode, "startup_s": round(startup, 2), "steps_timed": timed,
              "s_per_step": round(per_step, 4), "steps_s": round(per_step * 800, 1),
              "loss_first": losses[0], "loss_last": losses[-1],
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    if hasattr(stepper, "timings"):  # the CUDA graph's warm-up and capture (in start-up)
        result.update({k: round(v, 2) for k, v in stepper.timings.items()})
    return result


KERNEL_KINDS = (("attention", ("flash", "fmha", "attention", "sdpa")),
                ("matmul", ("gemm", "nvjet", "cutlass", "sm90_", "cublas", "matmul")),
                ("conv", ("conv", "implicit", "cudnn", "winograd", "dgrad", "wgrad")),
                ("norm", ("norm",)),
                ("elementwise", ("elementwise", "vectorized", "unrolled", "reduce", "copy",
                                 "cat", "index", "fill")))


def profile_steps(loop, steps: int = 5) -> dict:
    """Where an eager step's GPU time goes, by kernel kind (the graph replays these kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        loop.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            loop.step()
        torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    kernels = []
    for item in prof.key_averages():
        total = getattr(item, "self_device_time_total", None)
        total = item.self_cuda_time_total if total is None else total
        if total <= 0:
            continue
        name = item.key.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + total / steps / 1000
        kernels.append((total / steps / 1000, item.count // steps, kind, item.key[:90]))
    kernels.sort(reverse=True)
    print(f"  {sum(k[1] for k in kernels)} kernels per step", flush=True)
    for ms, count, kind, name in kernels[:45]:
        print(f"  {ms:7.2f} ms/step  {count:5d}x  {kind:11s} {name}", flush=True)
    gpu_ms = sum(kinds.values())
    return {"mode": "profile", "s_per_step": round(gpu_ms / 1000, 4), "steps_s": gpu_ms * 0.8,
            "startup_s": float("nan"), "gpu_ms_per_step": round(gpu_ms, 2),
            "by_kind_ms": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda x: -x[1])}}


# --- the reference ----------------------------------------------------------------------------

def run_reference(checkpoint: Path, dataset: Path, steps: int, *, device: str,
                  resolution: int) -> dict:
    """The loop of diffusers' train_dreambooth_lora.py, reduced to what we compare."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig, inject_adapter_in_model

    from easyphoto_core.sd.loading import load_sd15_checkpoint
    from easyphoto_train.setup import load_dataset_images

    started = time.perf_counter()
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    parts = load_sd15_checkpoint(checkpoint, device=device, dtype=dtype)
    unet, vae, text_encoder = parts.unet, parts.vae, parts.text_encoder
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    # peft's own injection for both (transformers' add_adapter refuses some peft versions)
    inject_adapter_in_model(LoraConfig(
        r=128, lora_alpha=64, init_lora_weights="gaussian", target_modules=[
            "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in",
            "proj_out"]), unet)
    inject_adapter_in_model(LoraConfig(
        r=128, lora_alpha=64, init_lora_weights="gaussian",
        target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]), text_encoder)
    lora_unet = [p for p in unet.parameters() if p.requires_grad]
    lora_te = [p for p in text_encoder.parameters() if p.requires_grad]
    for parameter in lora_unet + lora_te:
        parameter.data = parameter.data.float()
    optimizer = torch.optim.AdamW([{"params": lora_unet, "lr": 1e-4},
                                   {"params": lora_te, "lr": 5e-5}])
    scheduler = DDPMScheduler.from_config(parts.scheduler_config)
    images = torch.from_numpy(load_dataset_images(dataset, resolution)).permute(0, 3, 1, 2)
    tokens = parts.tokenizer("easyphoto_face, easyphoto, 1person", padding="max_length",
                             max_length=77, return_tensors="pt").input_ids.to(device)
    startup = time.perf_counter() - started

    def micro_step(index: int) -> torch.Tensor:
        pixels = images[index : index + 1].to(device, dtype).div(127.5).sub(1)
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
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
    _sync()
    t0 = time.perf_counter()
    losses = [optimizer_step(step) for step in range(steps)]
    _sync()
    per_step = (time.perf_counter() - t0) / steps
    result = {"mode": "reference", "startup_s": round(startup, 2), "steps_timed": steps,
              "s_per_step": round(per_step, 4), "steps_s": round(per_step * 800, 1),
              "loss_first": losses[0], "loss_last": losses[-1]}
    if device.type == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- driver -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of {MODES}")
    parser.add_argument("--reference-steps", type=int, default=20)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models",
                        help="folder with the YuNet detector file")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU dry run: tiny models, 256 px, a few steps")
    parser.add_argument("--job-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job_child:
        sys.exit(job_child(args.job_child))
    if args.mode:  # child process for one of the in-process modes
        checkpoint = next((args.work / "models").glob("sd15-*.safetensors"))
        dataset = args.work / "dataset"
        device, resolution = ("cpu", 256) if args.tiny else ("cuda", 512)
        if args.mode == "reference":
            result = run_reference(checkpoint, dataset, args.reference_steps, device=device,
                                   resolution=resolution)
        else:
            result = run_steps(checkpoint, dataset, 800, mode=args.mode)
        print("RESULT " + json.dumps(result), flush=True)
        return
    _print_machine()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        size, resolution = ("tiny", 256) if args.tiny else ("sd15", 512)
        photos = min(args.photos, 3) if args.tiny else args.photos
        checkpoint, dataset = make_inputs(work, photos, size=size, resolution=resolution)
        print(f"random {size} weights + {photos} photos written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        for mode in args.modes.split(","):
            try:
                results[mode] = run_mode(mode, work, checkpoint, dataset, args)
            except Exception as error:  # noqa: BLE001 - report and go on with the other modes
                print(f"{mode} failed: {error}", flush=True)
                continue
            print(json.dumps(results[mode]), flush=True)
    report(results)


def run_mode(mode: str, work: Path, checkpoint: Path, dataset: Path, args) -> dict:
    device, resolution = ("cpu", 256) if args.tiny else ("cuda", 512)
    if mode in ("job", "low_vram"):
        overrides = {"low_vram": mode == "low_vram", "resolution": resolution}
        if mode == "low_vram":
            overrides["max_train_steps"] = LOW_VRAM_STEPS
        if args.tiny:  # 8 steps, a checkpoint + validation every 4: fusion of two
            overrides.update(max_train_steps=8, val_and_checkpointing_steps=4, fusion_top_k=2)
        return run_job(work, checkpoint, dataset, name=mode, overrides=overrides,
                       weights=args.weights, device=device)
    command = [sys.executable, __file__, "--mode", mode, "--work", str(work),
               "--reference-steps", str(2 if args.tiny else args.reference_steps)]
    command += ["--tiny"] if args.tiny else []
    output = subprocess.run(command, capture_output=True, text=True)
    line = next((x for x in output.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
    if mode == "profile":  # its kernel table
        print("\n".join(x for x in output.stdout.splitlines() if x.startswith("  ")))
    return json.loads(line[len("RESULT "):])


def _print_machine() -> None:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, capability "
              f"{props.major}.{props.minor}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"arch list {torch.cuda.get_arch_list()}", flush=True)
    else:
        print(f"no GPU; torch {torch.__version__}", flush=True)


def report(results: dict) -> None:
    print("\nmode        s/step  steps (s)  start-up (s)  whole job (s)  peak GiB")
    for mode, r in results.items():
        print(f"{mode:10s} {r['s_per_step']:7.4f} {r['steps_s']:10.1f} {r['startup_s']:13.2f} "
              f"{r.get('job_s', float('nan')):14.1f} {r.get('peak_gib', float('nan')):9.2f}")
    job, reference = results.get("job"), results.get("reference")
    if job and reference:
        print(f"\nper optimizer step, reference / ours: "
              f"{reference['s_per_step'] / job['s_per_step']:.1f}x "
              f"({reference['s_per_step']:.3f} s vs {job['s_per_step']:.4f} s; the reference's "
              f"800 steps alone: {reference['steps_s']:.0f} s)")
    if job:
        print(f"default job: {job['job_s']} s launch to exit = start-up {job['startup_s']} s "
              f"({job.get('parts_s')}) + {job['optimizer_steps']} steps "
              f"{job['steps_s']} s + {job['validations']} validations {job['validations_s']} s "
              f"+ select/fuse/save "
              f"{job['select_fuse_save_s']} s + exit {job['exit_s']} s")
        checks = [("whole job", job["job_s"], TARGETS["job_s"]),
                  ("steps", job["steps_s"], TARGETS["steps_s"]),
                  ("start-up", job["startup_s"], TARGETS["startup_s"]),
                  ("peak GiB", job.get("peak_gib", float("nan")), TARGETS["peak_gib"])]
        if "low_vram" in results:
            checks.append(("low-VRAM peak GiB", results["low_vram"].get("peak_gib", float("nan")),
                           TARGETS["low_vram_peak_gib"]))
        for name, value, target in checks:
            print(f"  {name:18s} {value:8.2f} (target <= {target}): "
                  f"{'met' if value <= target else 'MISSED'}")
    print("kohya sd-scripts: not run here (see README 'Speed' for why)")


if __name__ == "__main__":
    main()
