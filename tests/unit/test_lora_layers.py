"""Our LoRA layers: kohya's maths, in-place injection and removal, loading, diffusers agreement.

Runs on the tiny random-weight models (models/tiny configs) on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

from easyphoto_core.lora_format import LoRAFormatError, group_modules, load_lora, save_lora
from easyphoto_core.lora_layers import (
    DEFAULT_UNET_TARGETS,
    LoRAConv1x1,
    LoRALinear,
    inject_lora,
    merge_lora_in_place,
    wrap_layer,
)
from tests.lora_helpers import kohya_name_to_diffusers_module, kohya_name_to_host_module

TOKENS = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407]])


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core runner OpenMP's spinning
    threads made this file 10x slower (7 s alone, 100 s beside other test runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_configs() -> dict[str, Any]:
    from easyphoto_core.sd.loading import read_sd15_configs
    from easyphoto_core.sd.tiny import TINY_CONFIG_DIR

    return read_sd15_configs(TINY_CONFIG_DIR)


@pytest.fixture(scope="module")
def tiny_base(tiny_configs) -> tuple[nn.Module, nn.Module]:
    from easyphoto_core.sd.tiny import random_model

    unet = random_model("unet", tiny_configs["unet"], seed=1)
    text_encoder = random_model("text_encoder", tiny_configs["text_encoder"], seed=2)
    return unet.requires_grad_(False), text_encoder.requires_grad_(False)


@pytest.fixture
def tiny(tiny_base) -> tuple[nn.Module, nn.Module]:
    """Fresh copies: tests wrap layers in place."""
    return copy.deepcopy(tiny_base[0]), copy.deepcopy(tiny_base[1])


def run_models(unet: nn.Module, text_encoder: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 16, 16, generator=generator)
    with torch.no_grad():
        hidden = text_encoder(TOKENS)[0]
        noise = unet(latents, torch.tensor([10]), hidden).sample
    return hidden, noise


def randomise(network, *, seed: int, std: float = 0.05) -> None:
    """Training leaves `up` non-zero; without that the LoRA would change nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def merge_manually(unet: nn.Module, text_encoder: nn.Module, tensors, multiplier: float) -> None:
    """W += multiplier * ΔW on plain (unwrapped) models, found through the kohya names."""
    with torch.no_grad():
        for name, module in group_modules(tensors, source="test").items():
            part, path = kohya_name_to_diffusers_module(name)
            model = unet if part == "unet" else text_encoder
            if part == "text_encoder" and not hasattr(model, "text_model"):
                path = path.removeprefix("text_model.")  # transformers 5 flattened CLIPTextModel
            layer = model.get_submodule(path)
            layer.weight += multiplier * module.delta_weight().to(layer.weight.dtype)


# --- single layers -------------------------------------------------------------------------------


def test_lora_linear_computes_the_kohya_formula():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, rank=3, alpha=1.5)
    x = torch.randn(2, 7, 6)
    assert torch.equal(layer(x), base(x))  # up starts at zero
    assert layer.lora_up.weight.abs().max() == 0
    assert layer.lora_down.weight.abs().max() <= 1 / math.sqrt(6)  # kaiming_uniform(a=√5)
    nn.init.normal_(layer.lora_up.weight)
    down, up = layer.lora_down.weight, layer.lora_up.weight
    expected = base(x) + (x @ down.T @ up.T) * (1.5 / 3)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight is base.weight and layer.bias is base.bias


def test_lora_conv1x1_computes_the_kohya_formula():
    torch.manual_seed(0)
    base = nn.Conv2d(6, 5, 1)
    layer = LoRAConv1x1(base, rank=2, alpha=4)
    assert layer.lora_down.weight.shape == (2, 6, 1, 1)
    assert layer.lora_up.weight.shape == (5, 2, 1, 1)
    nn.init.normal_(layer.lora_up.weight)
    x = torch.randn(2, 6, 3, 4)
    delta = (layer.lora_up.weight.flatten(1) @ layer.lora_down.weight.flatten(1)) * (4 / 2)
    expected = base(x) + torch.nn.functional.conv2d(x, delta[:, :, None, None])
    torch.testing.assert_close(layer(x), expected)


def test_wrap_layer_refuses_what_it_cannot_wrap():
    with pytest.raises(ValueError, match="1x1"):
        wrap_layer(nn.Conv2d(4, 4, 3), rank=2, alpha=2)
    with pytest.raises(ValueError, match="Linear"):
        wrap_layer(nn.LayerNorm(4), rank=2, alpha=2)
    with pytest.raises(ValueError, match="already has a LoRA"):
        wrap_layer(LoRALinear(nn.Linear(4, 4), rank=2, alpha=2), rank=2, alpha=2)


def test_fp32_lora_on_a_bf16_base_keeps_the_base_dtype():
    base = nn.Linear(8, 8).to(torch.bfloat16).requires_grad_(False)
    layer = LoRALinear(base, rank=4, alpha=4, dtype=torch.float32)
    nn.init.normal_(layer.lora_up.weight)
    out = layer(torch.randn(3, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.lora_up.weight.grad.dtype == torch.float32
    assert layer.lora_down.weight.grad is not None and base.weight.grad is None


# --- networks on the tiny models -----------------------------------------------------------------


def test_inject_lora_wraps_the_design_targets(tiny):
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2)
    # Same layout as SD1.5: 16 transformer blocks x 10 + 16 x proj_in/out; 2 CLIP layers x 6.
    assert len(network) == 192 + 12
    names = set(network.layers)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in names
    assert "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2" in names
    assert "lora_te_text_model_encoder_layers_1_mlp_fc2" in names  # also under transformers 5
    assert isinstance(unet.down_blocks[0].attentions[0].proj_in, LoRAConv1x1)
    assert isinstance(unet.mid_block.attentions[0].transformer_blocks[0].attn1.to_out[0], LoRALinear)
    unet_params, te_params = network.parameters_by_part()
    assert len(unet_params) == 2 * 192 and len(te_params) == 2 * 12
    assert {id(p) for p in unet_params + te_params} == {id(p) for p in network.parameters()}
    keys = [key for key, _ in network.named_parameters()]
    assert keys == [k for k in network.state_dict_kohya() if not k.endswith(".alpha")]


def test_inject_lora_rejects_targets_that_match_nothing(tiny):
    unet, text_encoder = tiny
    with pytest.raises(ValueError, match="to_qq"):
        inject_lora(unet, text_encoder, rank=4, alpha=2, unet_targets=("to_qq",))
    with pytest.raises(ValueError, match="1x1 nn.Conv2d"):
        inject_lora(unet, None, rank=4, alpha=2, unet_targets=("conv1",))  # 3x3 convs
    assert not any(isinstance(m, LoRALinear | LoRAConv1x1) for m in unet.modules())


def test_lora_changes_outputs_by_exactly_the_merged_delta(tiny, tiny_base):
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2)
    randomise(network, seed=1)
    hidden, noise = run_models(unet, text_encoder)

    merged_unet, merged_te = copy.deepcopy(tiny_base[0]), copy.deepcopy(tiny_base[1])
    merge_manually(merged_unet, merged_te, network.state_dict_kohya(), multiplier=1.0)
    merged_hidden, merged_noise = run_models(merged_unet, merged_te)
    base_hidden, base_noise = run_models(*tiny_base)

    assert (hidden - base_hidden).abs().max() > 1e-2  # the LoRA does something
    assert (noise - base_noise).abs().max() > 1e-2
    torch.testing.assert_close(hidden, merged_hidden, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(noise, merged_noise, atol=1e-5, rtol=1e-4)


def test_state_dict_round_trip_and_strict_loading(tiny, tiny_base):
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=3)
    randomise(network, seed=4)
    tensors = network.state_dict_kohya()
    assert tensors["lora_unet_mid_block_attentions_0_proj_in.alpha"].shape == ()
    assert float(tensors["lora_unet_mid_block_attentions_0_proj_in.alpha"]) == 3.0
    expected = run_models(unet, text_encoder)

    other_unet, other_te = copy.deepcopy(tiny_base[0]), copy.deepcopy(tiny_base[1])
    other = inject_lora(other_unet, other_te, rank=4, alpha=1)
    report = other.load_state_dict_kohya(tensors)
    assert report.missing == () and report.unexpected == ()
    actual = run_models(other_unet, other_te)
    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1])

    unet_only = {k: v for k, v in tensors.items() if k.startswith("lora_unet_")}
    with pytest.raises(LoRAFormatError, match="12 modules missing"):
        other.load_state_dict_kohya(unet_only)
    assert len(other.load_state_dict_kohya(unet_only, strict=False).missing) == 12
    name = "lora_unet_mid_block_attentions_0_proj_in"
    wrong = dict(tensors, **{f"{name}.lora_down.weight": torch.zeros(4, 3, 1, 1)})
    with pytest.raises(LoRAFormatError, match="does not fit"):
        other.load_state_dict_kohya(wrong)


def test_gradients_reach_only_the_lora_factors(tiny):
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2).to(dtype=torch.float32)
    randomise(network, seed=5)
    latents = torch.randn(1, 4, 16, 16)
    loss = unet(latents, torch.tensor([3]), text_encoder(TOKENS)[0]).sample.square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    assert all(p.grad is None for p in unet.parameters() if not p.requires_grad)
    assert {p for p in unet.parameters() if p.requires_grad} == set(network.parameters_by_part().unet)


def test_factors_cast_once_give_the_same_loss_and_gradients_as_per_layer_casts(tiny):
    """compute_factors replaces each layer's casts by one pass over all factors: the same bf16
    weights and the same float32 gradients, bit for bit (the same roundings, in bulk)."""
    unet, text_encoder = (model.to(torch.bfloat16) for model in tiny)
    network = inject_lora(unet, text_encoder, rank=4, alpha=2).to(dtype=torch.float32)
    randomise(network, seed=7)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1)).bfloat16()

    def loss_and_gradients(cast_once: bool):
        for parameter in network.parameters():
            parameter.grad = None
        with (network.compute_factors(torch.bfloat16) if cast_once
              else contextlib.nullcontext()):
            hidden = text_encoder(TOKENS)[0].expand(2, -1, -1)
            loss = unet(latents, torch.tensor([3, 500]), hidden).sample.float().square().mean()
        loss.backward()
        return loss.detach(), [p.grad for p in network.parameters()]

    per_layer_loss, per_layer_grads = loss_and_gradients(False)
    once_loss, once_grads = loss_and_gradients(True)
    assert torch.equal(per_layer_loss, once_loss)
    assert all(g.dtype == torch.float32 for g in once_grads)
    assert all(torch.equal(a, b) for a, b in zip(per_layer_grads, once_grads, strict=True))
    assert all(layer.compute_factors is None for layer in network.layers.values())  # block left
    next(iter(network.layers.values())).set_alpha(3)
    with pytest.raises(ValueError, match="one alpha"), network.compute_factors(torch.bfloat16):
        pass


def test_fp16_file_merged_in_place_matches_the_trained_layers_and_restores(
    tiny, tiny_base, tmp_path
):
    """The generation path (diffusers backend): the final LoRA as saved (fp16, kohya's usual
    save precision) merged into the base weights gives the trained network's outputs; restore()
    puts the exact base weights back."""
    unet, text_encoder = tiny
    source = inject_lora(unet, text_encoder, rank=2, alpha=1)
    randomise(source, seed=6)
    expected = run_models(unet, text_encoder)
    path = save_lora(tmp_path / "easyphoto_fp16.safetensors",
                     source.state_dict_kohya(dtype=torch.float16), {})
    modules = load_lora(path).modules
    assert {m.down.dtype for m in modules.values()} == {torch.float16}

    target_unet, target_te = copy.deepcopy(tiny_base[0]), copy.deepcopy(tiny_base[1])
    base = run_models(target_unet, target_te)
    merged = merge_lora_in_place(target_unet, target_te, modules, 1.0)
    actual = run_models(target_unet, target_te)
    assert (actual[1] - base[1]).abs().max() > 1e-2
    torch.testing.assert_close(actual[1], expected[1], atol=2e-3, rtol=2e-3)  # fp16 factors
    merged.restore()
    restored = run_models(target_unet, target_te)
    assert torch.equal(restored[0], base[0]) and torch.equal(restored[1], base[1])

    foreign = dict(load_lora(path).tensors)
    foreign.update({"lora_unet_nowhere_to_q.lora_down.weight": torch.zeros(2, 4),
                    "lora_unet_nowhere_to_q.lora_up.weight": torch.zeros(4, 2)})
    with pytest.raises(LoRAFormatError, match="name no layer"):
        merge_lora_in_place(target_unet, None, group_modules(foreign, source="f"))
    assert torch.equal(run_models(target_unet, target_te)[1], base[1])

    # one module of another shape among good ones: refused before any weight changes
    misfit = dict(load_lora(path).tensors)
    last = sorted(k for k in misfit if k.endswith(".lora_down.weight"))[-1]
    misfit[last] = torch.zeros(misfit[last].shape[0], misfit[last].shape[1] + 1)
    with pytest.raises(LoRAFormatError, match="another base model"):
        merge_lora_in_place(target_unet, target_te, group_modules(misfit, source="m"))
    assert torch.equal(run_models(target_unet, target_te)[1], base[1])


# --- the host's layout and diffusers -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> dict[str, tuple[int, ...]]:
    from easyphoto_core.sd.tiny import write_tiny_models

    files = write_tiny_models(tmp_path_factory.mktemp("tiny_models"))
    with safe_open(str(files.checkpoint), framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118


def test_every_key_maps_to_a_module_of_the_tiny_host_checkpoint(tiny, tiny_configs, tiny_checkpoint):
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2)
    for name, module in group_modules(network.state_dict_kohya(), source="tiny").items():
        host = kohya_name_to_host_module(name, tiny_configs["unet"])
        assert host + ".weight" in tiny_checkpoint, name
        assert tiny_checkpoint[host + ".weight"] == tuple(module.delta_weight().shape), name


def _diffusers_lora_support() -> str | None:
    """Why diffusers cannot load LoRAs here, or None when it can."""
    import transformers
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:  # A1111's transformers 4.30.2 is below it
        return ("diffusers' load_lora_weights needs its PEFT backend (peft >= 0.6 and "
                f"transformers >= 4.34); this environment has transformers {transformers.__version__}")
    try:
        from diffusers import StableDiffusionPipeline  # noqa: F401
    except Exception as error:  # e.g. diffusers 0.34 + transformers 4.30: SiglipImageProcessor
        last_line = str(error).strip().splitlines()[-1]
        return f"diffusers pipelines do not import here ({type(error).__name__}: {last_line})"
    return None


def test_diffusers_load_lora_weights_reads_our_file(tiny, tiny_base, tiny_configs, tmp_path):
    reason = _diffusers_lora_support()
    if reason:
        pytest.skip(reason)
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2)
    randomise(network, seed=7)
    expected = run_models(unet, text_encoder)
    path = save_lora(tmp_path / "easyphoto_test.safetensors",
                     network.state_dict_kohya(dtype=torch.float16), {})  # as the trainer saves
    unet, text_encoder = copy.deepcopy(tiny_base[0]), copy.deepcopy(tiny_base[1])
    base = run_models(unet, text_encoder)

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(tiny_configs["vae"]), text_encoder=text_encoder,
        tokenizer=None, unet=unet, scheduler=DDIMScheduler(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.load_lora_weights(str(path))
    loaded = run_models(pipe.unet, pipe.text_encoder)
    assert (loaded[1] - base[1]).abs().max() > 1e-2
    torch.testing.assert_close(loaded[0], expected[0], atol=2e-3, rtol=2e-3)  # fp16 factors
    torch.testing.assert_close(loaded[1], expected[1], atol=2e-3, rtol=2e-3)


def test_diffusers_kohya_converter_takes_every_key(tiny):
    """diffusers' own kohya -> diffusers key conversion (what load_lora_weights runs first) leaves
    no key behind and lands on real UNet layers; this part also runs where pipelines cannot."""
    try:
        from diffusers.loaders.lora_conversion_utils import (
            _convert_non_diffusers_lora_to_diffusers as convert,
        )
    except ImportError as error:
        pytest.skip(f"diffusers has no kohya converter here: {error}")
    unet, text_encoder = tiny
    network = inject_lora(unet, text_encoder, rank=4, alpha=2)
    tensors = network.state_dict_kohya()
    converted, alphas = convert(dict(tensors))[:2]
    assert len(converted) == 2 * len(network) and len(alphas) == len(network)
    unet_layers = {name for name, _ in unet.named_modules()}
    unet_keys = [k for k in converted if k.startswith("unet.")]
    assert len(unet_keys) == 2 * 192
    for key in unet_keys:  # diffusers' legacy layout: `.proj_in.lora.down.weight`,
        # `.attn1.processor.to_q_lora.down.weight` (to_out_lora = to_out.0)
        layer = re.sub(r"[._]lora\.(down|up)\.weight$", "", key.removeprefix("unet."))
        layer = re.sub(r"\.processor\.to_out$", ".to_out.0", layer).replace(".processor.", ".")
        assert layer in unet_layers, key


def test_default_unet_targets_are_the_design_list():
    assert set(DEFAULT_UNET_TARGETS) == {
        f"{attn}.{proj}" for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out.0")
    } | {"ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"}
