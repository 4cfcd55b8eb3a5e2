"""Key names of the host's single-file SD 1.5 layout (LDM) <-> diffusers / transformers names.

A1111 checkpoints and ControlNet files name tensors after the original CompVis/ControlNet code
(`model.diffusion_model.input_blocks.1.1.proj_in.weight`); diffusers names the same tensors after
its own modules (`down_blocks.0.attentions.0.proj_in.weight`). diffusers ships only the LDM ->
diffusers direction, inside its single-file loader; we need both directions (the tiny-model writer
saves diffusers modules in the host's layout, the LoRA code names host modules), so the mapping is
computed here, generically from a diffusers config, in the manner of diffusers'
`scripts/convert_diffusers_to_original_stable_diffusion.py`.

Every map is `{diffusers_key: ldm_key}` with LDM keys WITHOUT the component prefix
(`UNET_PREFIX` & co. say where each component lives in a host file). Building a map for a model's
full key set raises `ValueError` for any key with no LDM counterpart, so an unsupported config or
library version fails loudly instead of loading half a model.

Why not diffusers' single-file loading (decided for the diffusers versions install.py's
COMPATIBLE_RELEASES allows: >=0.27,<0.36 on A1111's packages, the newest standalone):
- measured on diffusers 0.35.2 + torch 2.1.2: `UNet2DConditionModel/AutoencoderKL/
  ControlNetModel.from_single_file(file, config=models/tiny, subfolder=…, local_files_only=True)`
  loads the tiny models tensor-equal to ours, so from 0.28 on the LDM -> diffusers half could go
  to diffusers;
- but diffusers 0.27 has no SD1.5 UNet single-file model loader (its FromOriginalUNetMixin infers
  only Stable Cascade configs; ControlNet wants the original YAML, fetched from GitHub by
  default), the CLIP text encoder is single-file-loadable only through a pipeline, and pipelines
  do not import under the host's transformers 4.30.2 (see pipeline/sampler.py);
- the diffusers -> LDM direction (the tiny-model writer, `python -m easyphoto_core tiny-model`)
  exists in no diffusers version.
One mapping for both directions and every version beats two loaders chosen by version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

# Where each component lives in a host checkpoint / ControlNet file.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer."
CONTROLNET_PREFIX = "control_model."

COMPONENT_PREFIXES = {
    "unet": UNET_PREFIX,
    "vae": VAE_PREFIX,
    "text_encoder": TEXT_ENCODER_PREFIX,
    "controlnet": CONTROLNET_PREFIX,
}

# Inside a block, the two layouts name the layers differently: (diffusers, LDM) pairs.
UNET_RESNET_NAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
VAE_RESNET_NAMES = (("conv_shortcut", "nin_shortcut"),)
VAE_ATTENTION_NAMES = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)

# The VAE mid-block attention projections are 1x1 convs [C, C, 1, 1] in LDM, Linear [C, C] in
# diffusers.
_LDM_CONV_ATTENTION = re.compile(
    r"(?:^|\.)(?:encoder|decoder)\.mid\.attn_1\.(?:q|k|v|proj_out)\.weight$"
)

# transformers keeps CLIP's position ids as a buffer (persistent in 4.x, not in 5.x). Host files
# often carry a stale or float copy; the loader always rebuilds it, the writer never saves it.
TEXT_ENCODER_IGNORED_SUFFIX = "embeddings.position_ids"

UNET_DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}  # type -> has attention
UNET_UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
MID_BLOCK_TYPE = "UNetMidBlock2DCrossAttn"


@dataclass(frozen=True)
class PrefixRule:
    """Keys under `diffusers` map to keys under `ldm`; `inner` renames the layer names after it."""

    diffusers: str
    ldm: str
    inner: tuple[tuple[str, str], ...] = ()


# --- public maps ---------------------------------------------------------------------------------


def unet_key_map(unet_config: Mapping[str, Any], diffusers_keys: Iterable[str]) -> dict[str, str]:
    """`{diffusers UNet2DConditionModel key: LDM key}` for an SD1.x-style UNet config."""
    rules = _time_and_conv_in_rules() + _down_rules(unet_config) + _mid_rules(unet_config)
    rules += _up_rules(unet_config)
    rules += [PrefixRule("conv_norm_out.", "out.0."), PrefixRule("conv_out.", "out.2.")]
    return _apply_rules(diffusers_keys, rules, "UNet")


def controlnet_key_map(
    controlnet_config: Mapping[str, Any], diffusers_keys: Iterable[str]
) -> dict[str, str]:
    """`{diffusers ControlNetModel key: LDM (cldm) key}` for an SD1.x-style ControlNet config."""
    rules = _time_and_conv_in_rules() + _down_rules(controlnet_config)
    rules += _mid_rules(controlnet_config)
    rules += _controlnet_extra_rules(controlnet_config)
    return _apply_rules(diffusers_keys, rules, "ControlNet")


def vae_key_map(vae_config: Mapping[str, Any], diffusers_keys: Iterable[str]) -> dict[str, str]:
    """`{diffusers AutoencoderKL key: LDM key}`; see `ldm_tensor`/`diffusers_tensor` for shapes."""
    levels = len(vae_config["block_out_channels"])
    layers = _layers_per_block(vae_config)
    rules = [
        PrefixRule("quant_conv.", "quant_conv."),
        PrefixRule("post_quant_conv.", "post_quant_conv."),
    ]
    for side in ("encoder", "decoder"):
        rules += [
            PrefixRule(f"{side}.conv_in.", f"{side}.conv_in."),
            PrefixRule(f"{side}.conv_out.", f"{side}.conv_out."),
            PrefixRule(f"{side}.conv_norm_out.", f"{side}.norm_out."),
            PrefixRule(
                f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.", VAE_ATTENTION_NAMES
            ),
        ]
        rules += [
            PrefixRule(
                f"{side}.mid_block.resnets.{i}.", f"{side}.mid.block_{i + 1}.", VAE_RESNET_NAMES
            )
            for i in range(2)
        ]
    for level in range(levels):
        has_sampler = level < levels - 1  # the deepest level neither down- nor upsamples
        # LDM numbers decoder levels from the deepest one, diffusers in the order they run.
        ldm_up = levels - 1 - level
        rules += [
            PrefixRule(
                f"encoder.down_blocks.{level}.resnets.{j}.",
                f"encoder.down.{level}.block.{j}.",
                VAE_RESNET_NAMES,
            )
            for j in range(layers)
        ]
        rules += [
            PrefixRule(
                f"decoder.up_blocks.{level}.resnets.{j}.",
                f"decoder.up.{ldm_up}.block.{j}.",
                VAE_RESNET_NAMES,
            )
            for j in range(layers + 1)
        ]
        if has_sampler:
            rules += [
                PrefixRule(
                    f"encoder.down_blocks.{level}.downsamplers.0.",
                    f"encoder.down.{level}.downsample.",
                ),
                PrefixRule(
                    f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{ldm_up}.upsample."
                ),
            ]
    return _apply_rules(diffusers_keys, rules, "VAE")


def text_encoder_key_map(diffusers_keys: Iterable[str]) -> dict[str, str]:
    """`{transformers CLIPTextModel key: LDM key}` (LDM keys start with `text_model.`).

    transformers 4.x nests the model under `text_model.`; 5.x flattened CLIPTextModel (its keys
    start with `embeddings.`/`encoder.`/`final_layer_norm.`). The host layout is the 4.x one.
    """
    return {
        key: key if key.startswith("text_model.") else f"text_model.{key}"
        for key in diffusers_keys
        if not key.endswith(TEXT_ENCODER_IGNORED_SUFFIX)
    }


def component_key_map(
    component: str, config: Mapping[str, Any], diffusers_keys: Iterable[str]
) -> dict[str, str]:
    """Dispatch to the map of `component` ("unet", "vae", "text_encoder" or "controlnet")."""
    if component == "unet":
        return unet_key_map(config, diffusers_keys)
    if component == "vae":
        return vae_key_map(config, diffusers_keys)
    if component == "text_encoder":
        return text_encoder_key_map(diffusers_keys)
    if component == "controlnet":
        return controlnet_key_map(config, diffusers_keys)
    raise ValueError(f"unknown SD component {component!r}")


def invert_key_map(key_map: Mapping[str, str]) -> dict[str, str]:
    """`{ldm_key: diffusers_key}`; a map that sends two keys to one name is a bug, so it raises."""
    inverted = {ldm: diffusers for diffusers, ldm in key_map.items()}
    if len(inverted) != len(key_map):
        raise ValueError("key map is not one-to-one: two diffusers keys share an LDM name")
    return inverted


# --- tensor shapes -------------------------------------------------------------------------------


def ldm_tensor(ldm_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """The diffusers `tensor` in the shape the LDM layout stores under `ldm_key`."""
    if tensor.ndim == 2 and _LDM_CONV_ATTENTION.search(ldm_key):
        return tensor[:, :, None, None]
    return tensor


def diffusers_tensor(tensor: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """An LDM `tensor` reshaped to the diffusers `shape` when only 1x1 conv dims differ.

    Anything else is returned unchanged, so the caller's shape check reports it.
    """
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    if tensor.ndim == 4 and len(shape) == 2 and tuple(tensor.shape) == (*shape, 1, 1):
        return tensor[:, :, 0, 0]
    return tensor


def to_ldm_state_dict(
    state_dict: Mapping[str, torch.Tensor], key_map: Mapping[str, str], *, prefix: str
) -> dict[str, torch.Tensor]:
    """A diffusers state dict renamed and reshaped into the host layout, keys under `prefix`.

    Keys absent from `key_map` (the ignored position ids) are left out.
    """
    result: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in key_map:
            ldm_key = key_map[key]
            result[prefix + ldm_key] = ldm_tensor(ldm_key, tensor).contiguous()
    return result


# --- rule construction ---------------------------------------------------------------------------


def _layers_per_block(config: Mapping[str, Any]) -> int:
    layers = config.get("layers_per_block", 2)
    if not isinstance(layers, int):  # per-level lists exist in diffusers but not in SD 1.x
        raise ValueError(f"unsupported layers_per_block {layers!r}: expected one integer")
    return layers


def _attention_levels(block_types: Iterable[str], known: Mapping[str, bool]) -> list[bool]:
    levels = []
    for block_type in block_types:
        if block_type not in known:
            raise ValueError(
                f"unsupported block type {block_type!r} (expected one of {sorted(known)})"
            )
        levels.append(known[block_type])
    return levels


def _time_and_conv_in_rules() -> list[PrefixRule]:
    return [
        PrefixRule("time_embedding.linear_1.", "time_embed.0."),
        PrefixRule("time_embedding.linear_2.", "time_embed.2."),
        PrefixRule("conv_in.", "input_blocks.0.0."),
    ]


def _down_rules(config: Mapping[str, Any]) -> list[PrefixRule]:
    """UNet/ControlNet encoder: LDM `input_blocks` hold [resnet, attention?] or [downsampler]."""
    layers = _layers_per_block(config)
    attention = _attention_levels(config["down_block_types"], UNET_DOWN_TYPES)
    rules = []
    for level, has_attention in enumerate(attention):
        for j in range(layers):
            ldm_block = 1 + level * (layers + 1) + j  # input_blocks.0 is conv_in
            rules.append(
                PrefixRule(
                    f"down_blocks.{level}.resnets.{j}.",
                    f"input_blocks.{ldm_block}.0.",
                    UNET_RESNET_NAMES,
                )
            )
            if has_attention:
                rules.append(
                    PrefixRule(
                        f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{ldm_block}.1."
                    )
                )
        if level < len(attention) - 1:  # the deepest level does not downsample
            ldm_block = (level + 1) * (layers + 1)
            rules.append(
                PrefixRule(
                    f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{ldm_block}.0.op."
                )
            )
    return rules


def _mid_rules(config: Mapping[str, Any]) -> list[PrefixRule]:
    """LDM `middle_block` = [resnet, attention, resnet]."""
    mid_type = config.get("mid_block_type") or MID_BLOCK_TYPE
    if mid_type != MID_BLOCK_TYPE:
        raise ValueError(f"unsupported mid_block_type {mid_type!r} (expected {MID_BLOCK_TYPE})")
    return [
        PrefixRule("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET_NAMES),
        PrefixRule("mid_block.attentions.0.", "middle_block.1."),
        PrefixRule("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET_NAMES),
    ]


def _up_rules(config: Mapping[str, Any]) -> list[PrefixRule]:
    """UNet decoder: LDM `output_blocks` hold [resnet, attention?, upsampler?]."""
    layers = _layers_per_block(config) + 1  # up blocks have one resnet more than down blocks
    attention = _attention_levels(config["up_block_types"], UNET_UP_TYPES)
    rules = []
    for level, has_attention in enumerate(attention):
        for j in range(layers):
            ldm_block = level * layers + j
            rules.append(
                PrefixRule(
                    f"up_blocks.{level}.resnets.{j}.",
                    f"output_blocks.{ldm_block}.0.",
                    UNET_RESNET_NAMES,
                )
            )
            if has_attention:
                rules.append(
                    PrefixRule(
                        f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{ldm_block}.1."
                    )
                )
        if level < len(attention) - 1:  # the last level does not upsample
            # The upsampler follows the last resnet (and its attention, when the level has one).
            ldm_block, slot = level * layers + layers - 1, 2 if has_attention else 1
            rules.append(
                PrefixRule(f"up_blocks.{level}.upsamplers.0.", f"output_blocks.{ldm_block}.{slot}.")
            )
    return rules


def _controlnet_extra_rules(config: Mapping[str, Any]) -> list[PrefixRule]:
    """Zero convs (one per input block and one after the middle block) and the hint encoder."""
    levels = len(config["down_block_types"])
    layers = _layers_per_block(config)
    input_blocks = 1 + levels * layers + (levels - 1)  # conv_in, resnets, downsamplers
    rules = [
        PrefixRule(f"controlnet_down_blocks.{i}.", f"zero_convs.{i}.0.")
        for i in range(input_blocks)
    ]
    rules.append(PrefixRule("controlnet_mid_block.", "middle_block_out.0."))
    # LDM's input_hint_block is one nn.Sequential of conv, SiLU, conv, SiLU, ...: convs sit at even
    # indices. diffusers has conv_in, blocks (two convs per channel step) and conv_out.
    hint_convs = 2 * (len(config.get("conditioning_embedding_out_channels", (16, 32, 96, 256))) - 1)
    rules.append(PrefixRule("controlnet_cond_embedding.conv_in.", "input_hint_block.0."))
    rules += [
        PrefixRule(f"controlnet_cond_embedding.blocks.{k}.", f"input_hint_block.{2 * (k + 1)}.")
        for k in range(hint_convs)
    ]
    rules.append(
        PrefixRule(
            "controlnet_cond_embedding.conv_out.", f"input_hint_block.{2 * (hint_convs + 1)}."
        )
    )
    return rules


def _apply_rules(keys: Iterable[str], rules: list[PrefixRule], component: str) -> dict[str, str]:
    # Longest prefix first, so a more specific rule wins over a shorter one that also matches.
    ordered = sorted(rules, key=lambda rule: len(rule.diffusers), reverse=True)
    mapped: dict[str, str] = {}
    for key in keys:
        rule = next((r for r in ordered if key.startswith(r.diffusers)), None)
        if rule is None:
            raise ValueError(
                f"{component} key {key!r} has no counterpart in the SD 1.x single-file layout "
                "(unsupported model config or library version)"
            )
        mapped[key] = rule.ldm + _rename_inner(key[len(rule.diffusers) :], rule.inner)
    invert_key_map(mapped)  # a one-to-one check: two keys landing on one name would lose weights
    return mapped


def _rename_inner(suffix: str, names: tuple[tuple[str, str], ...]) -> str:
    for diffusers_name, ldm_name in names:
        if suffix.startswith(diffusers_name + "."):
            return ldm_name + suffix[len(diffusers_name) :]
    return suffix
