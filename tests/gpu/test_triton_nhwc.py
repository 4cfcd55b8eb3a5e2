"""The Triton NHWC kernels against float64 PyTorch (needs a CUDA GPU and Triton; skipped else).

Run on a GPU machine: `python -m pytest tests/gpu`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
triton_nhwc = pytest.importorskip("easyphoto_core.sd.triton_nhwc", reason="needs Triton")

SHAPES = [(2, 320, 64, 64), (2, 1280, 8, 8), (2, 2560, 16, 16), (1, 128, 256, 200),
          (1, 512, 96, 96), (3, 96, 7, 9)]


def _nhwc(shape, *, dtype, offset: float) -> torch.Tensor:
    x = torch.randn(shape, device="cuda") + offset * torch.randn(1, shape[1], 1, 1, device="cuda")
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def _error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return ((result.double() - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_group_norm_matches_float64(shape, dtype):
    x = _nhwc(shape, dtype=dtype, offset=20.0)
    weight = torch.randn(shape[1], device="cuda", dtype=dtype)
    bias = torch.randn(shape[1], device="cuda", dtype=dtype)
    reference = F.group_norm(x.double(), 32, weight.double(), bias.double(), 1e-6)
    result = triton_nhwc.group_norm_nhwc(x, 32, weight, bias, 1e-6)
    torch_error = _error(F.group_norm(x, 32, weight, bias, 1e-6), reference)
    assert result.dtype == dtype and result.is_contiguous(memory_format=torch.channels_last)
    assert _error(result, reference) <= max(torch_error * 1.1, 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_add_channel_bias_writes_every_element(shape):
    y = _nhwc(shape, dtype=torch.float16, offset=1.0)
    bias = torch.randn(shape[1], device="cuda", dtype=torch.float16)
    expected = y.double() + bias.double()[:, None, None]
    result = triton_nhwc.add_channel_bias_(y, bias)
    assert result.data_ptr() == y.data_ptr()
    assert _error(result, expected) < 1e-3


@pytest.mark.parametrize("shape", SHAPES)
def test_add_channel_bias_with_a_residual_in_one_pass(shape):
    y = _nhwc(shape, dtype=torch.float16, offset=1.0)
    residual = _nhwc(shape, dtype=torch.float16, offset=2.0)
    bias = torch.randn(shape[1], device="cuda", dtype=torch.float16)
    expected = y.double() + residual.double() + bias.double()[:, None, None]
    result = triton_nhwc.add_channel_bias_(y, bias, residual)
    assert result.data_ptr() == y.data_ptr()
    assert _error(result, expected) < 1e-3


@pytest.mark.parametrize("shape", [(2, 320, 64, 64), (2, 1280, 8, 8), (1, 128, 96, 80)])
def test_group_norm_with_added_embedding_and_silu(shape):
    x = _nhwc(shape, dtype=torch.float16, offset=3.0)
    add = torch.randn(shape[0], shape[1], device="cuda", dtype=torch.float16) * 4
    weight = torch.randn(shape[1], device="cuda", dtype=torch.float16)
    bias = torch.randn(shape[1], device="cuda", dtype=torch.float16)
    summed = x.double() + add.double()[:, :, None, None]
    reference = F.silu(F.group_norm(summed, 32, weight.double(), bias.double(), 1e-6))
    result = triton_nhwc.group_norm_nhwc(x, 32, weight, bias, 1e-6, add=add, silu=True)
    unfused = F.silu(F.group_norm(x + add[:, :, None, None], 32, weight, bias, 1e-6))
    assert _error(result, reference) <= max(_error(unfused, reference) * 1.1, 1e-6)


def test_prepared_vae_decoder_on_cuda_matches_nchw():
    """The VAE's ResNet blocks have no time embedding: conv1's bias alone goes into norm2."""
    from easyphoto_core.sd.channels_last import prepare_channels_last
    from easyphoto_core.sd.loading import read_sd15_configs
    from easyphoto_core.sd.tiny import TINY_CONFIG_DIR, random_model

    vae = random_model("vae", read_sd15_configs(TINY_CONFIG_DIR)["vae"], seed=2)
    vae = vae.to("cuda", torch.float16).eval().requires_grad_(False)
    latent = torch.randn(1, 4, 24, 16, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        reference = vae.double().decode(latent.double()).sample
        plain = vae.half().decode(latent).sample
        prepare_channels_last(vae)
        result = vae.decode(latent.contiguous(memory_format=torch.channels_last)).sample
    assert _error(result, reference) <= max(_error(plain, reference) * 1.5, 1e-3)


def test_prepared_unet_on_cuda_matches_nchw():
    from easyphoto_core.sd.channels_last import prepare_channels_last
    from easyphoto_core.sd.loading import read_sd15_configs
    from easyphoto_core.sd.tiny import TINY_CONFIG_DIR, random_model

    unet = random_model("unet", read_sd15_configs(TINY_CONFIG_DIR)["unet"], seed=1)
    unet = unet.to("cuda", torch.float16).eval().requires_grad_(False)
    latent = torch.randn(2, 4, 32, 32, device="cuda", dtype=torch.float16)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        reference = unet.double()(latent.double(), 500, encoder_hidden_states=text.double()).sample
        plain = unet.half()(latent, 500, encoder_hidden_states=text).sample
        prepare_channels_last(unet)
        result = unet(latent.contiguous(memory_format=torch.channels_last), 500,
                      encoder_hidden_states=text).sample
    assert _error(result, reference) <= max(_error(plain, reference) * 1.5, 1e-3)


@pytest.mark.parametrize("shape", [(4, 320, 64, 64), (4, 1280, 8, 8), (3, 96, 7, 9)])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_group_norm_backward_matches_float64(shape, silu, dtype):
    """The training path: the input's gradient through GroupNorm (+ SiLU), weights frozen."""
    x = _nhwc(shape, dtype=dtype, offset=5.0).requires_grad_(True)
    weight = torch.randn(shape[1], device="cuda", dtype=dtype)
    bias = torch.randn(shape[1], device="cuda", dtype=dtype)
    upstream = _nhwc(shape, dtype=dtype, offset=0.0)

    def reference_of(inputs: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(inputs, 32, w, b, 1e-5)
        return F.silu(y) if silu else y

    x64 = x.detach().double().requires_grad_(True)
    expected = reference_of(x64, weight.double(), bias.double())
    expected.backward(upstream.double())
    result = triton_nhwc.GroupNormNHWC.apply(x, 32, weight, bias, 1e-5, silu)
    result.backward(upstream)
    x_torch = x.detach().clone().requires_grad_(True)
    reference_of(x_torch, weight, bias).backward(upstream)
    assert result.is_contiguous(memory_format=torch.channels_last)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert _error(result.detach(), expected.detach()) <= max(
        _error(reference_of(x.detach(), weight, bias), expected.detach()) * 1.1, 1e-6)
    assert _error(x.grad, x64.grad) <= max(_error(x_torch.grad, x64.grad) * 1.5, 1e-5)


def test_native_unet_trains_channels_last_through_the_triton_norms(monkeypatch):
    from easyphoto_core.sd.loading import read_sd15_configs
    from easyphoto_core.sd.native import build_native_component
    from easyphoto_core.sd.native.layers import triton_group_norm
    from easyphoto_core.sd.tiny import TINY_CONFIG_DIR

    assert triton_group_norm() is triton_nhwc.GroupNormNHWC
    # float32 throughout: cuDNN's TF32 convolutions (on by default) differ by 1e-3 between the
    # NCHW and NHWC algorithms it picks, which would hide what this compares
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    unet = build_native_component("unet", read_sd15_configs(TINY_CONFIG_DIR)["unet"]).cuda()
    unet.requires_grad_(False)
    sample = torch.randn(2, 4, 32, 32, device="cuda")
    context = torch.randn(2, 77, 32, device="cuda", requires_grad=True)

    def gradient() -> tuple[torch.Tensor, torch.Tensor]:
        context.grad = None
        out = unet(sample, 500, context).sample
        out.square().mean().backward()
        return out.detach(), context.grad.clone()

    plain_out, plain_grad = gradient()
    unet.to(memory_format=torch.channels_last)
    nhwc_out, nhwc_grad = gradient()
    torch.testing.assert_close(nhwc_out, plain_out, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(nhwc_grad, plain_grad, atol=1e-4, rtol=1e-3)
