"""The Triton GEGLU against float64 PyTorch (needs a CUDA GPU and Triton; skipped else).

Run on a GPU machine: `python -m pytest tests/gpu`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
triton_geglu = pytest.importorskip("easyphoto_core.sd.triton_geglu", reason="needs Triton")

# (batch, tokens, 2 x inner): SD1.5's widths at 512 and 768 px, the text-free odd sizes
SHAPES = [(2, 4096, 2 * 1280), (2, 144, 2 * 5120), (1, 77, 2 * 2560), (3, 7, 2 * 72)]


def _error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return ((result.double() - reference).norm() / reference.norm()).item()


def _reference(projected: torch.Tensor) -> torch.Tensor:
    hidden, gate = projected.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_geglu_matches_float64(shape, dtype):
    projected = (torch.randn(shape, device="cuda") * 3).to(dtype)
    reference = _reference(projected.double())
    result = triton_geglu.geglu(projected)
    assert result.dtype == dtype and result.shape == (*shape[:-1], shape[-1] // 2)
    assert _error(result, reference) <= max(_error(_reference(projected), reference) * 1.1, 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_geglu_backward_matches_float64(shape, dtype):
    projected = (torch.randn(shape, device="cuda") * 3).to(dtype)
    upstream = torch.randn((*shape[:-1], shape[-1] // 2), device="cuda").to(dtype)
    exact = projected.double().requires_grad_(True)
    _reference(exact).backward(upstream.double())
    plain = projected.clone().requires_grad_(True)
    _reference(plain).backward(upstream)
    fused = projected.clone().requires_grad_(True)
    triton_geglu.GEGLUFunction.apply(fused).backward(upstream)
    assert fused.grad.dtype == dtype
    assert _error(fused.grad, exact.grad) <= max(_error(plain.grad, exact.grad) * 1.1, 1e-6)
