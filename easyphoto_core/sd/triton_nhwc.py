"""Triton kernels for channels-last (NHWC) CUDA activations: GroupNorm and a convolution's bias.

GroupNorm in three kernels:
1. `_channel_sums`: each program sums a run of pixels for a block of channels, in float32, after
   subtracting the image's first pixel per channel (a shift that keeps E[x²] − E[x]² from
   cancelling when the mean is large against the spread). Reads the activation once.
2. `_group_scale_shift`: one program per (image, group) combines its channels' sums with Chan's
   formula into the group's mean and variance, and writes each channel's scale and shift.
3. `_scale_shift`: y = x · scale + shift (optionally SiLU(y)), read once, written once, in the
   input's dtype.
A ResNet block's "x + time embedding, GroupNorm, SiLU" runs as these three kernels, the sum never
written (channels_last.py binds that forward).

PyTorch's own kernel reads NCHW only (an NHWC input costs two layout copies) and the pure-PyTorch
path in channels_last.py reads the activation three times; this reads it twice.

`add_channel_bias_` adds a convolution's bias in place. PyTorch adds it after cuDNN's convolution
with a broadcast `add_` that falls to its generic, unvectorised kernel: a sixth of an SD1.5 UNet
step and of a VAE decode in GPU time (bench/generate_parts_gpu.py --profile).

Imported only where Triton is installed (CUDA builds of torch on Linux); channels_last.py falls
back to PyTorch otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

BLOCK_PIXELS = 64
BLOCK_CHANNELS = 64
# enough programs for the statistics pass to fill an H100's 132 multiprocessors a few times over
TARGET_PROGRAMS = 512
# `_group_scale_shift`'s blocks: SD1.5's groups have 4 to 80 channels (128 to 2560 in 32 groups)
GROUP_BLOCK_RUNS = 32
GROUP_BLOCK_CHANNELS = 128


@triton.jit
def _channel_sums(x_ptr, sums_ptr, pixels, channels, pixels_per_program,
                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    image, run, channel_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    runs = tl.num_programs(1)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    base = x_ptr + image.to(tl.int64) * pixels * channels
    shift = tl.load(base + cols, mask=col_ok, other=0.0).to(tl.float32)
    total = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
    total_sq = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
    start = run * pixels_per_program
    for offset in range(0, pixels_per_program, BLOCK_P):
        rows = start + offset + tl.arange(0, BLOCK_P)
        ok = (rows < pixels)[:, None] & col_ok[None, :]
        values = tl.load(base + rows.to(tl.int64)[:, None] * channels + cols[None, :], mask=ok,
                         other=0.0).to(tl.float32)
        values = tl.where(ok, values - shift[None, :], 0.0)
        total += values
        total_sq += values * values
    out = sums_ptr + ((image * runs + run) * 2) * channels + cols
    tl.store(out, tl.sum(total, axis=0), mask=col_ok)
    tl.store(out + channels, tl.sum(total_sq, axis=0), mask=col_ok)


# Shape numbers are not specialised on (Triton would compile a variant per divisibility of
# each) and the blocks are fixed: this kernel is tiny (one program per image and group), and
# every variant is a compile of ~0.4 s on first use. With a block size per shape, a portrait's
# first call compiled this kernel about 20 times (11 s of its 15 s on an H200 with an empty
# Triton cache; 3.4 s with a warm one, bench/generate_gpu.py).
@triton.jit(do_not_specialize=["pixels", "channels", "runs", "group_size"])
def _group_scale_shift(x_ptr, add_ptr, sums_ptr, weight_ptr, bias_ptr, scale_ptr, shift_ptr,
                       mean_ptr, rstd_ptr,
                       pixels, channels, runs, group_size, eps, HAS_ADD: tl.constexpr,
                       HAS_AFFINE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    image, group = tl.program_id(0), tl.program_id(1)
    cols = group * group_size + tl.arange(0, BLOCK_G)
    col_ok = tl.arange(0, BLOCK_G) < group_size
    s1 = tl.zeros([BLOCK_G], tl.float32)
    s2 = tl.zeros([BLOCK_G], tl.float32)
    for first_run in range(0, runs, BLOCK_R):
        run_ids = first_run + tl.arange(0, BLOCK_R)
        ok = (run_ids < runs)[:, None] & col_ok[None, :]
        at = sums_ptr + ((image * runs + run_ids[:, None]) * 2) * channels + cols[None, :]
        s1 += tl.sum(tl.load(at, mask=ok, other=0.0), axis=0)
        s2 += tl.sum(tl.load(at + channels, mask=ok, other=0.0), axis=0)
    shift0 = tl.load(x_ptr + image.to(tl.int64) * pixels * channels + cols, mask=col_ok,
                     other=0.0).to(tl.float32)
    if HAS_ADD:  # x + add has the same spread per channel; only the means move
        shift0 += tl.load(add_ptr + image * channels + cols, mask=col_ok, other=0.0).to(tl.float32)
    channel_mean = shift0 + s1 / pixels
    channel_m2 = tl.maximum(s2 - s1 * s1 / pixels, 0.0)
    group_mean = tl.sum(tl.where(col_ok, channel_mean, 0.0), axis=0) / group_size
    spread = tl.where(col_ok, channel_mean - group_mean, 0.0)
    group_m2 = tl.sum(tl.where(col_ok, channel_m2, 0.0), axis=0) + pixels * tl.sum(spread * spread)
    rstd = 1.0 / tl.sqrt(group_m2 / (pixels * group_size) + eps)
    tl.store(mean_ptr + image * tl.num_programs(1) + group, group_mean)  # for the backward
    tl.store(rstd_ptr + image * tl.num_programs(1) + group, rstd)
    scale = tl.zeros([BLOCK_G], tl.float32) + rstd
    shift = -group_mean * scale
    if HAS_AFFINE:
        weight = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        scale, shift = scale * weight, shift * weight + bias
    tl.store(scale_ptr + image * channels + cols, scale, mask=col_ok)
    tl.store(shift_ptr + image * channels + cols, shift, mask=col_ok)


@triton.jit
def _scale_shift(x_ptr, add_ptr, y_ptr, scale_ptr, shift_ptr, pixels, channels,
                 HAS_ADD: tl.constexpr, SILU: tl.constexpr, BLOCK_P: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    pixel_block, channel_block, image = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    ok = (rows < pixels)[:, None] & col_ok[None, :]
    offsets = image.to(tl.int64) * pixels * channels + rows.to(tl.int64)[:, None] * channels \
        + cols[None, :]
    values = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr + image * channels + cols, mask=col_ok, other=0.0)
    shift = tl.load(shift_ptr + image * channels + cols, mask=col_ok, other=0.0)
    if HAS_ADD:
        added = tl.load(add_ptr + image * channels + cols, mask=col_ok, other=0.0)
        values += added.to(tl.float32)[None, :]
    result = values * scale[None, :] + shift[None, :]
    if SILU:
        result = result * tl.sigmoid(result)
    tl.store(y_ptr + offsets, result.to(y_ptr.dtype.element_ty), mask=ok)


def _pixel_runs(batch: int, pixels: int, channel_blocks: int) -> tuple[int, int]:
    """(pixels per program, programs per image and channel block) for the passes that sum over
    pixels: about TARGET_PROGRAMS programs, each a whole number of BLOCK_PIXELS rows."""
    wanted_runs = max(1, TARGET_PROGRAMS // (batch * channel_blocks))
    pixels_per_program = triton.cdiv(triton.cdiv(pixels, wanted_runs), BLOCK_PIXELS) * BLOCK_PIXELS
    return pixels_per_program, triton.cdiv(pixels, pixels_per_program)


def group_norm_nhwc(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                    bias: torch.Tensor | None, eps: float, *, add: torch.Tensor | None = None,
                    silu: bool = False) -> torch.Tensor:
    """F.group_norm of a 4-D channels-last CUDA tensor, returned channels-last.

    With `add` (batch x channels), normalises x + add[:, :, None, None] without materialising
    it (a ResNet block's time embedding); with `silu`, applies SiLU to the result.
    """
    return _group_norm_forward(x, num_groups, weight, bias, eps, add=add, silu=silu)[0]


def _group_norm_forward(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                        bias: torch.Tensor | None, eps: float, *, add: torch.Tensor | None,
                        silu: bool) -> tuple[torch.Tensor, ...]:
    """(output, per-channel scale and shift, per-group mean and rstd), the last four float32."""
    batch, channels, height, width = x.shape
    pixels, group_size = height * width, channels // num_groups
    channel_blocks = triton.cdiv(channels, BLOCK_CHANNELS)
    pixels_per_program, runs = _pixel_runs(batch, pixels, channel_blocks)
    sums = torch.empty(batch, runs, 2, channels, device=x.device, dtype=torch.float32)
    _channel_sums[(batch, runs, channel_blocks)](
        x, sums, pixels, channels, pixels_per_program,
        BLOCK_P=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS)
    scale = torch.empty(batch, channels, device=x.device, dtype=torch.float32)
    shift = torch.empty_like(scale)
    mean = torch.empty(batch, num_groups, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    affine = weight is not None and bias is not None
    if add is not None:
        add = add.reshape(batch, channels).contiguous()
    _group_scale_shift[(batch, num_groups)](
        x, scale if add is None else add, sums, weight if affine else scale,
        bias if affine else shift, scale, shift, mean, rstd, pixels, channels, runs,
        group_size, eps,
        HAS_ADD=add is not None, HAS_AFFINE=affine, BLOCK_R=GROUP_BLOCK_RUNS,
        BLOCK_G=max(GROUP_BLOCK_CHANNELS, triton.next_power_of_2(group_size)))
    out = torch.empty_like(x, memory_format=torch.channels_last)
    _scale_shift[(triton.cdiv(pixels, BLOCK_PIXELS), channel_blocks, batch)](
        x, scale if add is None else add, out, scale, shift, pixels, channels,
        HAS_ADD=add is not None, SILU=silu, BLOCK_P=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS)
    return out, scale, shift, mean, rstd


# --- the backward, for training: d(input) only (SD's norms are frozen) --------------------------
#
# With x̂ = (x − mean)·rstd, z = x̂·w + b, y = SiLU(z) (or z) and g = dy·dy/dz, the input's
# gradient is rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)), the means over the (image, group).
# `_grad_sums` reads x and dy once for the per-channel sums of g·w and g·w·x̂ (one program per
# (image, run of pixels, channel block), as `_channel_sums`); `_grad_input` reads them again and
# writes dx.

@triton.jit
def _recompute(x_ptr, dy_ptr, scale_ptr, shift_ptr, weight_ptr, mean_ptr, rstd_ptr, offsets, ok,
               image, cols, col_ok, group_size, groups, HAS_AFFINE: tl.constexpr,
               SILU: tl.constexpr):
    """(g·w, x̂, rstd) for a block, from x, dy and the forward's statistics."""
    x = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    group = image * groups + cols // group_size
    mean = tl.load(mean_ptr + group, mask=col_ok, other=0.0)
    rstd = tl.load(rstd_ptr + group, mask=col_ok, other=0.0)
    x_hat = (x - mean[None, :]) * rstd[None, :]
    if SILU:
        scale = tl.load(scale_ptr + image * (groups * group_size) + cols, mask=col_ok, other=0.0)
        shift = tl.load(shift_ptr + image * (groups * group_size) + cols, mask=col_ok, other=0.0)
        z = x * scale[None, :] + shift[None, :]
        sig = tl.sigmoid(z)
        dy = dy * sig * (1.0 + z * (1.0 - sig))
    if HAS_AFFINE:
        dy = dy * tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return tl.where(ok, dy, 0.0), x_hat, rstd


@triton.jit
def _grad_sums(x_ptr, dy_ptr, scale_ptr, shift_ptr, weight_ptr, mean_ptr, rstd_ptr, sums_ptr,
               pixels, channels, group_size, pixels_per_program, HAS_AFFINE: tl.constexpr,
               SILU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    image, run, channel_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    runs = tl.num_programs(1)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    total = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
    total_hat = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
    start = run * pixels_per_program
    for offset in range(0, pixels_per_program, BLOCK_P):
        rows = start + offset + tl.arange(0, BLOCK_P)
        ok = (rows < pixels)[:, None] & col_ok[None, :]
        offsets = image.to(tl.int64) * pixels * channels + rows.to(tl.int64)[:, None] * channels \
            + cols[None, :]
        g_w, x_hat, _ = _recompute(x_ptr, dy_ptr, scale_ptr, shift_ptr, weight_ptr, mean_ptr,
                                   rstd_ptr, offsets, ok, image, cols, col_ok, group_size,
                                   channels // group_size, HAS_AFFINE, SILU)
        total += g_w
        total_hat += g_w * x_hat
    out = sums_ptr + ((image * runs + run) * 2) * channels + cols
    tl.store(out, tl.sum(total, axis=0), mask=col_ok)
    tl.store(out + channels, tl.sum(total_hat, axis=0), mask=col_ok)


@triton.jit
def _grad_input(x_ptr, dy_ptr, dx_ptr, scale_ptr, shift_ptr, weight_ptr, mean_ptr, rstd_ptr,
                coefficients_ptr, pixels, channels, group_size, HAS_AFFINE: tl.constexpr,
                SILU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    pixel_block, channel_block, image = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    ok = (rows < pixels)[:, None] & col_ok[None, :]
    offsets = image.to(tl.int64) * pixels * channels + rows.to(tl.int64)[:, None] * channels \
        + cols[None, :]
    groups = channels // group_size
    g_w, x_hat, rstd = _recompute(x_ptr, dy_ptr, scale_ptr, shift_ptr, weight_ptr, mean_ptr,
                                  rstd_ptr, offsets, ok, image, cols, col_ok, group_size, groups,
                                  HAS_AFFINE, SILU)
    group = image * groups + cols // group_size
    mean_g_w = tl.load(coefficients_ptr + group * 2, mask=col_ok, other=0.0)
    mean_g_w_hat = tl.load(coefficients_ptr + group * 2 + 1, mask=col_ok, other=0.0)
    dx = rstd[None, :] * (g_w - mean_g_w[None, :] - x_hat * mean_g_w_hat[None, :])
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=ok)


def _group_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                         scale: torch.Tensor, shift: torch.Tensor, mean: torch.Tensor,
                         rstd: torch.Tensor, silu: bool) -> torch.Tensor:
    batch, channels, height, width = x.shape
    pixels, groups = height * width, mean.shape[1]
    group_size = channels // groups
    dy = dy.contiguous(memory_format=torch.channels_last)
    channel_blocks = triton.cdiv(channels, BLOCK_CHANNELS)
    pixels_per_program, runs = _pixel_runs(batch, pixels, channel_blocks)
    sums = torch.empty(batch, runs, 2, channels, device=x.device, dtype=torch.float32)
    affine = weight is not None
    common = dict(HAS_AFFINE=affine, SILU=silu, BLOCK_P=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS)
    _grad_sums[(batch, runs, channel_blocks)](
        x, dy, scale, shift, weight if affine else scale, mean, rstd, sums, pixels, channels,
        group_size, pixels_per_program, **common)
    # per (image, group): the two means, interleaved [batch, groups, 2]
    coefficients = (sums.sum(1).view(batch, 2, groups, group_size).sum(-1)
                    .div_(pixels * group_size).transpose(1, 2).contiguous())
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    _grad_input[(triton.cdiv(pixels, BLOCK_PIXELS), channel_blocks, batch)](
        x, dy, dx, scale, shift, weight if affine else scale, mean, rstd, coefficients, pixels,
        channels, group_size, **common)
    return dx


class GroupNormNHWC(torch.autograd.Function):
    """group_norm_nhwc (optionally + SiLU) with a backward for its input, for training on
    channels-last activations: the weight and bias must not need gradients (frozen SD)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                bias: torch.Tensor | None, eps: float, silu: bool) -> torch.Tensor:
        out, scale, shift, mean, rstd = _group_norm_forward(x, num_groups, weight, bias, eps,
                                                            add=None, silu=silu)
        ctx.save_for_backward(x, weight, scale, shift, mean, rstd)
        ctx.silu = silu
        return out

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, scale, shift, mean, rstd = ctx.saved_tensors
        dx = _group_norm_backward(dy, x, weight, scale, shift, mean, rstd, ctx.silu)
        return dx, None, None, None, None, None


@triton.jit
def _add_bias(y_ptr, bias_ptr, residual_ptr, rows, channels, HAS_RESIDUAL: tl.constexpr,
              BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    row_ids = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < channels
    ok = (row_ids < rows)[:, None] & col_ok[None, :]
    offsets = row_ids.to(tl.int64)[:, None] * channels + cols[None, :]
    values = tl.load(y_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    values += bias[None, :]
    if HAS_RESIDUAL:
        values += tl.load(residual_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    tl.store(y_ptr + offsets, values.to(y_ptr.dtype.element_ty), mask=ok)


def add_channel_bias_(y: torch.Tensor, bias: torch.Tensor,
                      residual: torch.Tensor | None = None) -> torch.Tensor:
    """y += bias over the channel dimension (and + residual, of y's shape), for 4-D
    channels-last CUDA tensors; returns y."""
    batch, channels, height, width = y.shape
    rows = batch * height * width
    _add_bias[(triton.cdiv(rows, BLOCK_PIXELS), triton.cdiv(channels, BLOCK_CHANNELS))](
        y, bias, y if residual is None else residual, rows, channels,
        HAS_RESIDUAL=residual is not None, BLOCK_R=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS)
    return y
