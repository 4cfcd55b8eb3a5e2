"""Test-side kohya name mapping: where a kohya module lands in diffusers, in the host's LDM
checkpoint and in A1111's `network_layer_mapping`.

The product never needs these (diffusers and A1111 map the names themselves); the tests use them
to prove that every module of our files names a real layer in each of those layouts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from easyphoto_core.lora_format import (
    PART_TEXT_ENCODER,
    PART_UNET,
    TEXT_ENCODER_LORA_PREFIX,
    UNET_LORA_PREFIX,
    LoRAFormatError,
    module_part,
)
from easyphoto_core.sd import ldm_keys

# Multi-word module names of diffusers' UNet2DConditionModel and transformers' CLIPTextModel; a
# kohya name is split on '_' and these are glued back, longest first, to recover the module path.
_JOINED_NAMES = (
    "time_emb_proj", "conv_norm_out", "final_layer_norm",
    "down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v",
    "to_out", "proj_in", "proj_out", "conv_in", "conv_out", "conv_shortcut", "time_embedding",
    "linear_1", "linear_2", "text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj",
    "layer_norm1", "layer_norm2", "token_embedding", "position_embedding",
)


def kohya_name_to_diffusers_module(name: str) -> tuple[str, str]:
    """(part, module path) of a kohya name: a diffusers UNet path or a `text_model.` CLIP path."""
    part = module_part(name)
    prefix = UNET_LORA_PREFIX if part == PART_UNET else TEXT_ENCODER_LORA_PREFIX
    words = name[len(prefix) :].split("_")
    joined = sorted((n.split("_") for n in _JOINED_NAMES), key=len, reverse=True)
    pieces: list[str] = []
    index = 0
    while index < len(words):
        match = next((j for j in joined if words[index : index + len(j)] == j), None)
        size = len(match) if match else 1
        pieces.append("_".join(words[index : index + size]))
        index += size
    return part, ".".join(pieces)


def kohya_name_to_host_module(name: str, unet_config: Mapping[str, Any]) -> str:
    """The module path in the host's single-file layout (A1111's LDM model) a kohya name targets.

    `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q` ->
    `model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q`;
    `lora_te_text_model_encoder_layers_0_self_attn_q_proj` ->
    `cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj`.
    The UNet part goes through `ldm_keys.unet_key_map` (the module's `.weight` key, mapped and
    stripped), so it agrees with the checkpoint loader; A1111 does the same with its own regexes
    (`a1111_layer_name`, which the tests compare against).
    """
    part, path = kohya_name_to_diffusers_module(name)
    if part == PART_TEXT_ENCODER:
        ldm_key = ldm_keys.text_encoder_key_map([path + ".weight"])[path + ".weight"]
        return ldm_keys.TEXT_ENCODER_PREFIX + ldm_key[: -len(".weight")]
    try:
        ldm_key = ldm_keys.unet_key_map(unet_config, [path + ".weight"])[path + ".weight"]
    except ValueError as error:
        raise LoRAFormatError(f"{name!r} names no layer of this UNet: {error}") from None
    return ldm_keys.UNET_PREFIX + ldm_key[: -len(".weight")]


# A1111 v1.10.1 `extensions-builtin/Lora/networks.py: convert_diffusers_name_to_compvis` (SD1
# branch) maps a kohya name to an entry of `sd_model.network_layer_mapping`: the named modules of
# `sd_model.model` and `sd_model.cond_stage_model.wrapped` with '.' -> '_'. Its rules, restated:
_A1111_RESNET_SUFFIXES = {
    "conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0",
    "norm2": "out_layers_0", "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection",
}


def a1111_layer_name(name: str) -> str:
    """A1111's `network_layer_mapping` key for a kohya name (unchanged when no rule applies)."""
    rules: list[tuple[str, Any]] = [
        (r"lora_unet_conv_in(.*)", lambda m: f"diffusion_model_input_blocks_0_0{m[1]}"),
        (r"lora_unet_conv_out(.*)", lambda m: f"diffusion_model_out_2{m[1]}"),
        (r"lora_unet_time_embedding_linear_(\d+)(.*)",
         lambda m: f"diffusion_model_time_embed_{int(m[1]) * 2 - 2}{m[2]}"),
        (r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
         lambda m: f"diffusion_model_input_blocks_{1 + int(m[1]) * 3 + int(m[3])}_"
         f"{_a1111_slot(m[2])}_{_a1111_suffix(m[2], m[4])}"),
        (r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)",
         lambda m: "diffusion_model_middle_block_"
         f"{1 if m[1] == 'attentions' else int(m[2]) * 2}_{_a1111_suffix(m[1], m[3])}"),
        (r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
         lambda m: f"diffusion_model_output_blocks_{int(m[1]) * 3 + int(m[3])}_"
         f"{_a1111_slot(m[2])}_{_a1111_suffix(m[2], m[4])}"),
        (r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv",
         lambda m: f"diffusion_model_input_blocks_{3 + int(m[1]) * 3}_0_op"),
        (r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv",
         lambda m: f"diffusion_model_output_blocks_{2 + int(m[1]) * 3}_"
         f"{2 if int(m[1]) > 0 else 1}_conv"),
        (r"lora_te_text_model_encoder_layers_(\d+)_(.+)",
         lambda m: f"transformer_text_model_encoder_layers_{m[1]}_{m[2]}"),
    ]
    for pattern, build in rules:
        match = re.match(pattern, name)
        if match:
            return build(match)
    return name


def _a1111_slot(kind: str) -> int:
    return 1 if kind == "attentions" else 0


def _a1111_suffix(kind: str, suffix: str) -> str:
    return _A1111_RESNET_SUFFIXES.get(suffix, suffix) if kind == "resnets" else suffix


def host_module_to_a1111_layer_name(host_module: str) -> str:
    """A host module path as A1111 keys it: relative to `sd_model.model` / the CLIP wrapper."""
    for prefix in ("model.", "cond_stage_model."):
        if host_module.startswith(prefix):
            return host_module[len(prefix) :].replace(".", "_")
    raise ValueError(f"{host_module!r} is neither a UNet nor a text encoder module")
