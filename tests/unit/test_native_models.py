"""Our torch-only SD1.5 models (easyphoto_core.sd.native) against diffusers' and transformers'.

Same random weights in both, same inputs: the outputs must agree, so a checkpoint loaded into
either trains and samples the same. Weights are scaled up from diffusers' init (zero-initialised
output convs would hide a wrong block)."""

from __future__ import annotations

import pytest
import torch

from easyphoto_core.sd.loading import build_component, load_sd15_checkpoint, read_sd15_configs
from easyphoto_core.sd.native import build_native_component
from easyphoto_core.sd.tiny import TINY_CONFIG_DIR, write_tiny_models

pytest.importorskip("diffusers")
CONFIGS = read_sd15_configs(TINY_CONFIG_DIR)
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def twin_models(component: str, config: dict | None = None):
    """diffusers'/transformers' model with random weights, and ours loaded with the same."""
    config = config or CONFIGS[component]
    torch.manual_seed(0)
    reference = build_component(component, config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0, 0.2)
    native = build_native_component(component, config).eval()
    state = {key if component != "text_encoder" or key.startswith("text_model.")
             else f"text_model.{key}": value  # transformers 5 dropped the prefix
             for key, value in reference.state_dict().items()
             if not key.endswith("position_ids")}
    native.load_state_dict(state, strict=True)
    return reference, native


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])  # the second is not a multiple of 8
def test_unet_matches_diffusers(size):
    reference, native = twin_models("unet")
    sample = torch.randn(2, 4, *size)
    context = torch.randn(2, 77, CONFIGS["unet"]["cross_attention_dim"])
    with torch.no_grad():
        expected = reference(sample, torch.tensor(500), encoder_hidden_states=context).sample
        got = native(sample, torch.tensor(500), context).sample
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOLERANCE)


def test_unet_adds_controlnet_residuals_where_diffusers_does():
    reference, native = twin_models("unet")
    sample, context = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32)
    with torch.no_grad():
        skips = [torch.randn(s) for s in _skip_shapes(reference, sample, context)]
        mid = torch.randn(1, CONFIGS["unet"]["block_out_channels"][-1], 2, 2)
        expected = reference(sample, 10, encoder_hidden_states=context,
                             down_block_additional_residuals=skips,
                             mid_block_additional_residual=mid).sample
        got = native(sample, 10, context, down_block_additional_residuals=skips,
                     mid_block_additional_residual=mid).sample
        plain = native(sample, 10, context).sample
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert not torch.allclose(got, plain)


def _skip_shapes(unet, sample, context) -> list[torch.Size]:
    """The shapes of the UNet's skip connections, read from diffusers' own down pass."""
    shapes = []
    hooks = [block.register_forward_hook(
        lambda _m, _i, out: shapes.extend(t.shape for t in out[1])) for block in unet.down_blocks]
    with torch.no_grad():
        unet(sample, 10, encoder_hidden_states=context)
    for hook in hooks:
        hook.remove()
    conv_in = unet.conv_in(sample).shape
    return [conv_in, *shapes]


def test_gradient_checkpointing_gives_the_same_gradients():
    _, native = twin_models("unet")
    sample, context = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32, requires_grad=True)

    def gradient() -> torch.Tensor:
        context.grad = None
        native(sample, 100, context).sample.square().mean().backward()
        return context.grad.clone()

    plain = gradient()
    native.enable_gradient_checkpointing()
    calls = []
    checkpointed = native._run

    def counting(module, *inputs):
        calls.append(type(module).__name__)
        return checkpointed(module, *inputs)

    native._run = counting
    torch.testing.assert_close(gradient(), plain, **TOLERANCE)
    assert {"ResnetBlock2D", "Transformer2DModel"} <= set(calls)


def test_vae_matches_diffusers():
    reference, native = twin_models("vae")
    pixels, latents = torch.randn(1, 3, 64, 64), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(native.encode(pixels).latent_dist.mean,
                                   reference.encode(pixels).latent_dist.mean, **TOLERANCE)
        torch.testing.assert_close(native.decode(latents).sample,
                                   reference.decode(latents).sample, **TOLERANCE)
    assert native.config.scaling_factor == reference.config.scaling_factor


def test_text_encoder_matches_transformers():
    reference, native = twin_models("text_encoder")
    ids = torch.randint(0, CONFIGS["text_encoder"]["vocab_size"], (2, 77))
    with torch.no_grad():
        torch.testing.assert_close(native(ids)[0], reference(ids)[0], **TOLERANCE)


def test_a_block_type_sd15_lacks_is_named():
    config = {**CONFIGS["unet"], "down_block_types": ["SimpleCrossAttnDownBlock2D"] * 4}
    with pytest.raises(ValueError, match="SimpleCrossAttnDownBlock2D"):
        build_native_component("unet", config)


def test_a_checkpoint_loads_natively_with_the_same_outputs(tmp_path):
    files = write_tiny_models(tmp_path, seed=3)
    ours = load_sd15_checkpoint(files.checkpoint, native=True)
    theirs = load_sd15_checkpoint(files.checkpoint)
    assert type(ours.unet).__module__.startswith("easyphoto_core.sd.native")
    ids = ours.tokenizer("easyphoto_face, easyphoto, 1person", padding="max_length",
                         max_length=77, truncation=True, return_tensors="pt").input_ids
    torch.testing.assert_close(ids, theirs.tokenizer(
        "easyphoto_face, easyphoto, 1person", padding="max_length", max_length=77,
        truncation=True, return_tensors="pt").input_ids)
    sample = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        context = ours.text_encoder(ids)[0]
        torch.testing.assert_close(context, theirs.text_encoder(ids)[0], **TOLERANCE)
        torch.testing.assert_close(ours.unet(sample, 999, context).sample,
                                   theirs.unet(sample, 999, encoder_hidden_states=context).sample,
                                   **TOLERANCE)
        torch.testing.assert_close(ours.vae.decode(sample).sample,
                                   theirs.vae.decode(sample).sample, **TOLERANCE)


def test_channels_last_unet_keeps_its_layout_and_its_gradients():
    """Training runs the UNet channels-last (no NCHW<->NHWC copies around cuDNN's convolutions):
    same outputs and gradients as NCHW, and the activations stay NHWC."""
    _, native = twin_models("unet")
    sample = torch.randn(2, 4, 16, 16)
    context = torch.randn(2, 77, 32, requires_grad=True)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        context.grad = None
        out = native(sample, 300, context).sample
        out.square().mean().backward()
        return out.detach(), context.grad.clone()

    plain_out, plain_grad = run()
    native.to(memory_format=torch.channels_last)
    layouts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: layouts.append(
        out.is_contiguous(memory_format=torch.channels_last)))
        for m in native.modules() if type(m).__name__ in ("GroupNorm", "Transformer2DModel")]
    nhwc_out, nhwc_grad = run()
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(nhwc_out, plain_out, **TOLERANCE)
    torch.testing.assert_close(nhwc_grad, plain_grad, **TOLERANCE)
    assert layouts and all(layouts)
