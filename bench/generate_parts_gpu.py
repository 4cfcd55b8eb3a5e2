"""Where a portrait's GPU time goes: each model at each size, layout and attention kernel.

    python bench/generate_parts_gpu.py [--profile]

SD1.5-architecture random weights built in memory (no files). Every part is captured in a CUDA
graph and its replays timed with CUDA events (median of 20), so the figures are GPU time, not
launch overhead. Also prints each part's FLOPs (torch's flop counter) and the time those would
take at the measured matrix rate, the floor no kernel choice gets under. With --profile, the
heaviest kernels of one eager UNet + 2 ControlNet step and one VAE decode, by kernel class.
"unet+2cn||" is the same step as the sampler runs it on CUDA, each ControlNet on its own stream
beside the UNet's down blocks (sampler._beside_the_down_path).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_models(dtype):
    from easyphoto_core.sd.loading import read_controlnet_config, read_sd15_configs
    from easyphoto_core.sd.tiny import CONTROLNET_CONFIG_DIR, SD15_CONFIG_DIR, random_model

    configs = read_sd15_configs(SD15_CONFIG_DIR)
    models = {name: random_model(name, configs[name], seed=i)
              for i, name in enumerate(("unet", "vae"))}
    control_config = read_controlnet_config(CONTROLNET_CONFIG_DIR)
    models["cn1"] = random_model("controlnet", control_config, seed=3)
    models["cn2"] = random_model("controlnet", control_config, seed=4)
    return {k: m.to("cuda", dtype).eval().requires_grad_(False) for k, m in models.items()}


def graph_time(fn: Callable[[], object], repeat: int = 20) -> float:
    """Median ms of `repeat` replays of `fn` captured in a CUDA graph (the pipeline's capture)."""
    import torch

    from easyphoto_core.pipeline.sampler import CapturedCall

    captured = CapturedCall(fn, {})  # keeps its output alive, as the pipeline's do
    times = []
    for _ in range(repeat + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        captured.graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del captured
    return sorted(times[3:])[repeat // 2]


def step_fns(models, size: int, dtype) -> dict[str, Callable[[], object]]:
    import torch

    torch.manual_seed(size)  # the same inputs for every layout
    latent = torch.randn(2, 4, size // 8, size // 8, device="cuda", dtype=dtype)
    hint = torch.rand(2, 3, size, size, device="cuda", dtype=dtype)
    text = torch.randn(2, 77, 768, device="cuda", dtype=dtype)
    t = torch.tensor(500, device="cuda")
    pixels = torch.randn(1, 3, size, size, device="cuda", dtype=dtype)
    z = torch.randn(1, 4, size // 8, size // 8, device="cuda", dtype=dtype)
    unet, vae = models["unet"], models["vae"]

    def controlnet(name):
        return models[name](latent, t, encoder_hidden_states=text, controlnet_cond=hint,
                            conditioning_scale=0.5, return_dict=False)

    def full_step():
        d1, m1 = controlnet("cn1")
        d2, m2 = controlnet("cn2")
        return unet(latent, t, encoder_hidden_states=text,
                    down_block_additional_residuals=[a + b for a, b in zip(d1, d2, strict=True)],
                    mid_block_additional_residual=m1 + m2).sample

    def side_streams_step():  # what the sampler runs on CUDA: the ControlNets on their streams
        from easyphoto_core.pipeline.sampler import _beside_the_down_path

        controls = [(models[name], hint, 0.5) for name in ("cn1", "cn2")]
        return _beside_the_down_path(unet, controls, latent, t, text)

    return {"unet": lambda: unet(latent, t, encoder_hidden_states=text).sample,
            "controlnet": lambda: controlnet("cn1"),
            "unet+2cn": full_step,
            "unet+2cn||": side_streams_step,
            "vae_encode": lambda: vae.encode(pixels).latent_dist.mean,
            "vae_decode": lambda: vae.decode(z).sample}


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matrix_rate(dtype) -> float:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    ms = graph_time(lambda: a @ a, repeat=10)
    return 2 * 8192**3 / (ms / 1e3)


def set_layout(models, layout: str) -> None:
    """nchw; nhwc (PyTorch's modules); nhwc+ours (prepare_channels_last: Triton GroupNorm and
    conv bias); nhwc+torchgn (prepare_channels_last with PyTorch kernels only)."""
    import torch

    from easyphoto_core.sd.channels_last import (
        NhwcKernels,
        group_norm_channels_last,
        prepare_channels_last,
        restore_plain_modules,
    )

    for model in models.values():
        restore_plain_modules(model)
        if layout != "nchw":
            model.to(memory_format=torch.channels_last)
        if layout == "nhwc+ours":
            prepare_channels_last(model)
        elif layout == "nhwc+torchgn":
            prepare_channels_last(model, kernels=NhwcKernels(group_norm_channels_last, None))


def check_group_norm(dtype) -> None:
    """Our Triton GroupNorm against float64 PyTorch on the shapes SD1.5 runs, and its speed."""
    import torch
    import torch.nn.functional as F

    from easyphoto_core.sd.triton_nhwc import group_norm_nhwc

    for shape in ((2, 320, 64, 64), (2, 640, 32, 32), (2, 1280, 8, 8), (2, 2560, 16, 16),
                  (1, 128, 768, 768), (1, 512, 96, 96), (1, 256, 384, 384)):
        channels = shape[1]
        x = (torch.randn(shape, device="cuda") * 2 + 3 * torch.randn(1, channels, 1, 1,
             device="cuda")).to(dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(channels, device="cuda").to(dtype)
        bias = torch.randn(channels, device="cuda").to(dtype)
        ref = F.group_norm(x.double(), 32, weight.double(), bias.double(), 1e-6)
        ours = group_norm_nhwc(x, 32, weight, bias, 1e-6)
        native = F.group_norm(x, 32, weight, bias, 1e-6)
        error = ((ours.double() - ref).norm() / ref.norm()).item()
        native_error = ((native.double() - ref).norm() / ref.norm()).item()
        ms = {label: _time_norm(fn, x.contiguous() if label == "torch nchw" else x, weight, bias)
              for label, fn in (("ours", group_norm_nhwc), ("torch nchw", F.group_norm),
                                ("torch nhwc", F.group_norm))}
        print(f"groupnorm {str(shape):<22} rel err ours {error:.1e} torch {native_error:.1e}; ms "
              + ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
              + f"; output channels-last {ours.is_contiguous(memory_format=torch.channels_last)}",
              flush=True)


def _time_norm(fn, x, weight, bias) -> float:
    return graph_time(lambda: fn(x, 32, weight, bias, 1e-6))


LAYOUTS = ("nchw", "nhwc", "nhwc+ours", "nhwc+torchgn")


def _first_tensor(result):
    import torch

    while not torch.is_tensor(result):
        result = result[-1]  # a ControlNet returns (down residuals, mid residual)
    return result.float()


def table(models, dtype, rate: float) -> None:
    """Time per part and layout, and each layout's relative error against nchw on the same
    inputs (fp16 rounding is ~1e-3)."""
    print(f"{'part':<12}{'size':>6}{'layout':>13}{'ms':>9}{'GFLOP':>9}{'floor ms':>10}"
          f"{'err vs nchw':>13}", flush=True)
    for size in (512, 768):
        flops = {name: count_flops(fn) for name, fn in step_fns(models, size, dtype).items()}
        reference = {}
        for layout in LAYOUTS:
            set_layout(models, layout)
            for name, fn in step_fns(models, size, dtype).items():
                out = _first_tensor(fn())
                reference.setdefault(name, out)
                error = ((out - reference[name]).norm() / reference[name].norm()).item()
                ms = graph_time(fn)
                print(f"{name:<12}{size:>6}{layout:>13}{ms:>9.2f}{flops[name] / 1e9:>9.0f}"
                      f"{flops[name] / rate * 1e3:>10.2f}{error:>13.1e}", flush=True)


def attention_backends(models, dtype) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    set_layout(models, "nhwc+ours")
    for size in (512, 768):
        fns = step_fns(models, size, dtype)
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel([backend, SDPBackend.MATH]):
                    step = graph_time(fns["unet+2cn"])
                    decode = graph_time(fns["vae_decode"])
                print(f"sdpa {backend.name:<22} {size}: unet+2cn {step:.2f} ms, "
                      f"vae_decode {decode:.2f} ms", flush=True)
            except RuntimeError as error:
                print(f"sdpa {backend.name} {size}: {str(error)[:120]}", flush=True)


def kernel_classes(fn, label: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ops = [e for e in prof.key_averages()
           if e.self_device_time_total > 0 and e.key.startswith("aten")]
    print(f"\n{label}: aten ops by GPU time")
    for e in sorted(ops, key=lambda e: -e.self_device_time_total)[:8]:
        print(f"  {e.self_device_time_total / 1e3:7.2f} ms  {e.key} x{e.count}")
    classes: dict[str, float] = defaultdict(float)
    kernels: dict[str, float] = defaultdict(float)
    patterns = [("attention", r"flash|fmha|attention|sdpa|cudnn.*mha"),
                ("copy/layout", r"direct_copy|copy_kernel|nchwToNhwc|nhwcToNchw"),
                ("matmul/conv", r"gemm|conv|xmma|cutlass|implicit|sm90|wgrad|dgrad|nvjet"),
                ("norm", r"norm|Moments")]
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = event.name
        kind = next((k for k, p in patterns if re.search(p, name, re.I)), "elementwise/other")
        classes[kind] += event.device_time / 1e3
        kernels[name[:90]] += event.device_time / 1e3
    total = sum(classes.values())
    print(f"\n{label}: {total:.2f} ms of kernels; "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(classes.items(), key=lambda x: -x[1])))
    for name, ms in sorted(kernels.items(), key=lambda x: -x[1])[:12]:
        print(f"  {ms:7.2f} ms  {name}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--profile-only", action="store_true", help="only the kernel profiles")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.bf16 else torch.float16
    print(torch.__version__, torch.cuda.get_device_name(), "cudnn", torch.backends.cudnn.version())
    with torch.inference_mode():
        models = build_models(dtype)
        rate = matrix_rate(dtype)
        print(f"matrix rate {rate / 1e12:.0f} TFLOP/s ({dtype})", flush=True)
        if not args.profile_only:
            check_group_norm(dtype)
            table(models, dtype, rate)
            attention_backends(models, dtype)
        if args.profile or args.profile_only:
            for layout in ("nhwc+ours", "nhwc"):
                set_layout(models, layout)
                fns = step_fns(models, 512, dtype)
                kernel_classes(fns["unet+2cn"], f"unet+2cn 512 {layout} eager")
                kernel_classes(step_fns(models, 768, dtype)["vae_decode"],
                               f"vae_decode 768 {layout}")


if __name__ == "__main__":
    main()
