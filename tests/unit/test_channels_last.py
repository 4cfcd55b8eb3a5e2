"""Channels-last modules: the same results as diffusers' own, in NHWC memory, keys unchanged.

The Triton kernels need a CUDA GPU: tests/gpu/test_triton_nhwc.py checks them there, and
bench/generate_parts_gpu.py prints every layout's error against NCHW. Here, on the CPU, the
pure-PyTorch GroupNorm and the module conversion are checked.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from easyphoto_core.sd.channels_last import (
    ChannelsLastConv2d,
    ChannelsLastGroupNorm,
    group_norm_channels_last,
    prepare_channels_last,
    restore_plain_modules,
)
from easyphoto_core.sd.loading import read_controlnet_config, read_sd15_configs
from easyphoto_core.sd.tiny import TINY_CONFIG_DIR, random_model


def _relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return ((result.double() - reference.double()).norm() / reference.double().norm()).item()


def _nhwc(shape: tuple[int, ...], *, offset: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # a per-channel offset far larger than the spread: where E[x²] − E[x]² loses digits
    x = torch.randn(shape, generator=generator) + offset * torch.randn(
        1, shape[1], 1, 1, generator=generator)
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(2, 320, 16, 16), (1, 128, 24, 40), (2, 1280, 4, 4)])
@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_group_norm_matches_float64_reference(shape, offset):
    x = _nhwc(shape, offset=offset, seed=shape[1])
    weight, bias = torch.randn(shape[1]), torch.randn(shape[1])
    reference = F.group_norm(x.double(), 32, weight.double(), bias.double(), 1e-5)
    result = group_norm_channels_last(x, 32, weight, bias, 1e-5)
    assert result.is_contiguous(memory_format=torch.channels_last) and not result.is_contiguous()
    assert _relative_error(result, reference) < 1e-5
    assert _relative_error(group_norm_channels_last(x, 32, None, None, 1e-5),
                           F.group_norm(x.double(), 32, None, None, 1e-5)) < 1e-5


def test_group_norm_half_precision_is_as_close_as_pytorchs_own():
    x = _nhwc((2, 320, 16, 16), offset=5.0, seed=1).bfloat16()
    weight, bias = torch.randn(320).bfloat16(), torch.randn(320).bfloat16()
    reference = F.group_norm(x.double(), 32, weight.double(), bias.double(), 1e-5)
    ours = _relative_error(group_norm_channels_last(x, 32, weight, bias, 1e-5), reference)
    theirs = _relative_error(F.group_norm(x, 32, weight, bias, 1e-5), reference)
    assert ours <= theirs * 1.1


def test_group_norm_gradients_match():
    norm = torch.nn.GroupNorm(32, 64)
    torch.nn.init.normal_(norm.weight)
    x = _nhwc((2, 64, 8, 8), offset=2.0, seed=2).requires_grad_(True)
    upstream = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(3))
    (F.group_norm(x, 32, norm.weight, norm.bias, norm.eps) * upstream).sum().backward()
    expected = (x.grad.clone(), norm.weight.grad.clone())
    x.grad, norm.weight.grad = None, None
    norm.__class__ = ChannelsLastGroupNorm
    (norm(x) * upstream).sum().backward()
    # float32 sums taken in another order: agree to a few ulps of the largest gradient
    assert torch.allclose(x.grad, expected[0], rtol=1e-4, atol=1e-5)
    assert torch.allclose(norm.weight.grad, expected[1], rtol=1e-4, atol=1e-4)


def _tiny(component: str) -> torch.nn.Module:
    if component == "controlnet":
        config = read_controlnet_config(TINY_CONFIG_DIR / "controlnet")
    else:
        config = read_sd15_configs(TINY_CONFIG_DIR)[component]
    return random_model(component, config, seed=3).eval().requires_grad_(False)


def _run(component: str, model: torch.nn.Module, *, channels_last: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    if component == "vae":
        pixels = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return model.decode(model.encode(pixels).latent_dist.mean).sample
    latent = torch.randn(2, 4, 16, 16, generator=generator)
    if channels_last:
        latent = latent.contiguous(memory_format=torch.channels_last)
    text = torch.randn(2, 77, model.config.cross_attention_dim, generator=generator)
    if component == "unet":
        return model(latent, torch.tensor(400), encoder_hidden_states=text).sample
    hint = torch.rand(2, 3, 128, 128, generator=generator)
    return model(latent, torch.tensor(400), encoder_hidden_states=text, controlnet_cond=hint,
                 return_dict=False)[1]


@pytest.mark.parametrize("component", ["unet", "vae", "controlnet"])
def test_prepared_models_give_the_same_results_and_keys(component):
    model = _tiny(component)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = _run(component, model, channels_last=False)
        prepare_channels_last(model)
        result = _run(component, model, channels_last=True)
    assert any(isinstance(m, ChannelsLastGroupNorm) for m in model.modules())
    resnets = [m for m in model.modules() if type(m).__name__ == "ResnetBlock2D"]
    fused = [m for m in resnets if "forward" in m.__dict__]  # those without up/down-sampling
    # the VAE decoder's up blocks say time_embedding_norm="group" (no time embedding): fused too
    assert fused and fused == [m for m in resnets if not (m.up or m.down)]
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    assert _relative_error(result, reference) < 1e-5
    if component != "controlnet":  # its mid residual comes out of a 1x1 spatial tensor
        assert result.is_contiguous(memory_format=torch.channels_last)


def test_transformer_output_keeps_nhwc_without_a_copy():
    model = _tiny("unet")
    prepare_channels_last(model)
    transformer = next(m for m in model.modules() if type(m).__name__ == "Transformer2DModel")
    seen = []
    transformer.proj_out.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    _run("unet", model, channels_last=True)
    assert seen and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[0].is_contiguous()


def test_conv_without_a_bias_kernel_is_left_to_pytorch():
    from easyphoto_core.sd.channels_last import NhwcKernels

    model = _tiny("vae")
    prepare_channels_last(model, kernels=NhwcKernels(group_norm_channels_last, None))
    assert not any(isinstance(m, ChannelsLastConv2d) for m in model.modules())
    assert all(isinstance(m, ChannelsLastGroupNorm) for m in model.modules()
               if isinstance(m, torch.nn.GroupNorm) and m.weight is not None)


def test_restore_plain_modules_undoes_the_preparation():
    model = _tiny("unet")
    prepare_channels_last(model)
    restore_plain_modules(model)
    assert not any(isinstance(m, (ChannelsLastGroupNorm, ChannelsLastConv2d))
                   or "forward" in m.__dict__ or "_get_output_for_continuous_inputs" in m.__dict__
                   for m in model.modules())
    assert model.conv_in.weight.is_contiguous()
