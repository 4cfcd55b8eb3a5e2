"""GEGLU, the gate of SD1.5's feed-forward layers, as one Triton kernel each way.

    [a | g] = proj(x)          (the last dimension split in halves)
    y = a · GELU(g)            GELU(g) = g · Φ(g), exact (erf), as diffusers' GEGLU

PyTorch runs this as a GELU and a multiply on the two strided halves: two passes, each on its
generic (unvectorised) elementwise kernel because the halves are not contiguous, and in
training two more for the backward plus the halves' gradients concatenated. Measured on an H200
(bench/generate_parts_gpu.py --profile; bench/train_gpu.py --modes profile): 1.1 ms of a 13 ms
UNet + 2 ControlNet inference step at 512 px, and 2.4 ms of a 48 ms training step. Here the
forward reads [a | g] once and writes y; the backward reads [a | g] and dy once and writes
[da | dg] into one tensor.

Imported only where Triton is installed (CUDA builds of torch on Linux); callers fall back to
PyTorch otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

BLOCK_ROWS = 32
BLOCK_COLUMNS = 128
SQRT_HALF = tl.constexpr(0.7071067811865476)
INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _load_halves(x_ptr, rows, inner, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's block: (a, g) in float32, their offsets in [a | g], the offsets of the
    matching [rows, inner] elements, and the in-bounds mask."""
    row_ids = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ok = (row_ids < rows)[:, None] & (cols < inner)[None, :]
    at = row_ids.to(tl.int64)[:, None] * (2 * inner) + cols[None, :]
    out = row_ids.to(tl.int64)[:, None] * inner + cols[None, :]
    a = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(x_ptr + at + inner, mask=ok, other=0.0).to(tl.float32)
    return a, g, at, out, ok


# `rows` (tokens x batch) is not specialised on: one compile per dtype and width, not per
# batch and image size (each compile is ~0.4 s of a first call)
@triton.jit(do_not_specialize=["rows"])
def _geglu_forward(x_ptr, y_ptr, rows, inner, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    a, g, at, out, ok = _load_halves(x_ptr, rows, inner, BLOCK_R, BLOCK_C)
    y = a * g * 0.5 * (1.0 + tl.math.erf(g * SQRT_HALF))
    tl.store(y_ptr + out, y.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["rows"])
def _geglu_backward(x_ptr, dy_ptr, dx_ptr, rows, inner, BLOCK_R: tl.constexpr,
                    BLOCK_C: tl.constexpr):
    a, g, at, out, ok = _load_halves(x_ptr, rows, inner, BLOCK_R, BLOCK_C)
    dy = tl.load(dy_ptr + out, mask=ok, other=0.0).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.math.erf(g * SQRT_HALF))
    pdf = tl.exp(-0.5 * g * g) * INV_SQRT_2PI
    tl.store(dx_ptr + at, (dy * g * cdf).to(dx_ptr.dtype.element_ty), mask=ok)
    tl.store(dx_ptr + at + inner, (dy * a * (cdf + g * pdf)).to(dx_ptr.dtype.element_ty),
             mask=ok)


def _grid(rows: int, inner: int) -> tuple[int, int]:
    return triton.cdiv(rows, BLOCK_ROWS), triton.cdiv(inner, BLOCK_COLUMNS)


def geglu(projected: torch.Tensor) -> torch.Tensor:
    """a · GELU(g) for a CUDA tensor [..., 2 x inner] = [a | g]; no autograd (inference)."""
    projected = projected.contiguous()
    inner = projected.shape[-1] // 2
    rows = projected.numel() // (2 * inner)
    out = projected.new_empty((*projected.shape[:-1], inner))
    _geglu_forward[_grid(rows, inner)](projected, out, rows, inner, BLOCK_R=BLOCK_ROWS,
                                       BLOCK_C=BLOCK_COLUMNS)
    return out


class GEGLUFunction(torch.autograd.Function):
    """`geglu` with its backward, for training: saves only the projection's output."""

    @staticmethod
    def forward(ctx: Any, projected: torch.Tensor) -> torch.Tensor:
        projected = projected.contiguous()
        ctx.save_for_backward(projected)
        return geglu(projected)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> torch.Tensor:
        (projected,) = ctx.saved_tensors
        inner = projected.shape[-1] // 2
        rows = projected.numel() // (2 * inner)
        dx = torch.empty_like(projected)
        _geglu_backward[_grid(rows, inner)](projected, dy.contiguous(), dx, rows, inner,
                                            BLOCK_R=BLOCK_ROWS, BLOCK_C=BLOCK_COLUMNS)
        return dx
