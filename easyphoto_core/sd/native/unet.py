"""SD1.5's UNet, parameter for parameter diffusers' `UNet2DConditionModel` (see layers.py).

Built from the same config (models/sd15/unet/config.json, models/tiny), for the block types
SD1.5 has: CrossAttnDownBlock2D / DownBlock2D down, UNetMidBlock2DCrossAttn, UpBlock2D /
CrossAttnUpBlock2D up. ControlNet residuals are added where diffusers adds them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto_core.sd.native.config import ModelConfig
from easyphoto_core.sd.native.layers import (
    BlockRunner,
    Downsample2D,
    GroupNorm,
    ResnetBlock2D,
    Transformer2DModel,
    Upsample2D,
    run_plain,
)

DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}  # type -> has attention
UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


class UNetOutput(NamedTuple):
    sample: torch.Tensor


def timestep_embedding(timesteps: torch.Tensor, dim: int, *, flip_sin_to_cos: bool,
                       shift: float) -> torch.Tensor:
    """Sinusoidal embedding of [batch] timesteps (diffusers' get_timestep_embedding)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32,
                                               device=timesteps.device) / (half - shift)
    angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class UNetBlock(nn.Module):
    """A down or up level: resnets, each followed by its attention where the level has one, then
    the down/up sampler. Up levels concatenate a skip connection before each resnet."""

    def __init__(self, resnets: Sequence[nn.Module], attentions: Sequence[nn.Module] | None,
                 *, downsampler: nn.Module | None = None, upsampler: nn.Module | None = None
                 ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        if downsampler is not None:
            self.downsamplers = nn.ModuleList([downsampler])
        if upsampler is not None:
            self.upsamplers = nn.ModuleList([upsampler])

    def layers(self) -> list[tuple[nn.Module, nn.Module | None]]:
        attentions = getattr(self, "attentions", None) or [None] * len(self.resnets)
        return list(zip(self.resnets, attentions, strict=True))


class UNet2DConditionModel(nn.Module):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = ModelConfig(config)
        c = self.config
        channels = list(c["block_out_channels"])
        layers, groups, eps = int(c["layers_per_block"]), int(c["norm_num_groups"]), \
            float(c.get("norm_eps", 1e-5))
        heads = _per_level(c.get("attention_head_dim", 8), len(channels))
        context, temb = int(c["cross_attention_dim"]), channels[0] * 4
        resnet = functools.partial(ResnetBlock2D, temb_channels=temb, groups=groups, eps=eps)

        def attention(ch: int, level_heads: int) -> Transformer2DModel:
            return Transformer2DModel(ch, heads=level_heads, context_dim=context, groups=groups)

        self.conv_in = nn.Conv2d(int(c["in_channels"]), channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList()
        out_ch = channels[0]
        for level, kind in enumerate(c["down_block_types"]):
            in_ch, out_ch = out_ch, channels[level]
            final = level == len(channels) - 1
            self.down_blocks.append(UNetBlock(
                [resnet(in_ch if j == 0 else out_ch, out_ch) for j in range(layers)],
                [attention(out_ch, heads[level]) for _ in range(layers)] if _has_attention(
                    kind, DOWN_TYPES) else None,
                downsampler=None if final else Downsample2D(
                    out_ch, padding=int(c.get("downsample_padding", 1)))))
        self.mid_block = UNetBlock([resnet(channels[-1], channels[-1]) for _ in range(2)],
                                   [attention(channels[-1], heads[-1])])
        self.up_blocks = nn.ModuleList()
        reversed_channels, reversed_heads = channels[::-1], heads[::-1]
        out_ch = reversed_channels[0]
        for level, kind in enumerate(c["up_block_types"]):
            prev_ch, out_ch = out_ch, reversed_channels[level]
            in_ch = reversed_channels[min(level + 1, len(channels) - 1)]
            final = level == len(channels) - 1
            skips = [out_ch] * layers + [in_ch]  # the last resnet takes the level's input skip
            self.up_blocks.append(UNetBlock(
                [resnet((prev_ch if j == 0 else out_ch) + skips[j], out_ch)
                 for j in range(layers + 1)],
                [attention(out_ch, reversed_heads[level]) for _ in range(layers + 1)]
                if _has_attention(kind, UP_TYPES) else None,
                upsampler=None if final else Upsample2D(out_ch)))
        self.conv_norm_out = GroupNorm(groups, channels[0], eps=eps)
        self.conv_out = nn.Conv2d(channels[0], int(c["out_channels"]), 3, padding=1)
        self._run: BlockRunner = run_plain

    def enable_gradient_checkpointing(self, gradient_checkpointing_func: BlockRunner | None = None
                                      ) -> None:
        """Recompute each resnet's and attention's activations in the backward pass (Low VRAM),
        as diffusers does; `gradient_checkpointing_func(module, *inputs)` does the recomputing."""
        if gradient_checkpointing_func is None:
            from torch.utils.checkpoint import checkpoint

            gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)
        self._run = gradient_checkpointing_func

    def _block(self, module: nn.Module, *inputs: Any) -> torch.Tensor:
        if self._run is run_plain or not torch.is_grad_enabled():
            return module(*inputs)
        return self._run(module, *inputs)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, *,
                down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None,
                return_dict: bool = True) -> UNetOutput | tuple[torch.Tensor]:
        c = self.config
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        timesteps = timesteps.expand(sample.shape[0])
        t_emb = timestep_embedding(timesteps, self.time_embedding.linear_1.in_features,
                                   flip_sin_to_cos=bool(c.get("flip_sin_to_cos", True)),
                                   shift=float(c.get("freq_shift", 0)))
        temb = self.time_embedding(t_emb.to(sample.dtype))
        hidden = self.conv_in(sample)
        skips = [hidden]
        for block in self.down_blocks:
            hidden, level_skips = self._down(block, hidden, temb, encoder_hidden_states)
            skips += level_skips
        if down_block_additional_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals, strict=True)]
        hidden = self._block(self.mid_block.resnets[0], hidden, temb)
        hidden = self._block(self.mid_block.attentions[0], hidden, encoder_hidden_states)
        hidden = self._block(self.mid_block.resnets[1], hidden, temb)
        if mid_block_additional_residual is not None:
            hidden = hidden + mid_block_additional_residual
        # sizes not divisible by 2^levels: each upsampler goes to its skip's size
        odd = any(s % 2 ** (len(self.up_blocks) - 1) for s in sample.shape[-2:])
        for block in self.up_blocks:
            count = len(block.resnets)
            level_skips, skips = skips[-count:], skips[:-count]
            size = tuple(skips[-1].shape[-2:]) if odd and skips else None
            hidden = self._up(block, hidden, level_skips, temb, encoder_hidden_states, size)
        out = self.conv_out(self.conv_norm_out(hidden, silu=True))
        return UNetOutput(out) if return_dict else (out,)

    def _down(self, block: UNetBlock, hidden: torch.Tensor, temb: torch.Tensor,
              context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for resnet, attention in block.layers():
            hidden = self._block(resnet, hidden, temb)
            if attention is not None:
                hidden = self._block(attention, hidden, context)
            skips.append(hidden)
        if hasattr(block, "downsamplers"):
            hidden = block.downsamplers[0](hidden)
            skips.append(hidden)
        return hidden, skips

    def _up(self, block: UNetBlock, hidden: torch.Tensor, skips: list[torch.Tensor],
            temb: torch.Tensor, context: torch.Tensor, size: tuple[int, ...] | None
            ) -> torch.Tensor:
        for resnet, attention in block.layers():
            hidden = torch.cat([hidden, skips.pop()], dim=1)
            hidden = self._block(resnet, hidden, temb)
            if attention is not None:
                hidden = self._block(attention, hidden, context)
        if hasattr(block, "upsamplers"):
            hidden = block.upsamplers[0](hidden, size)
        return hidden


def _has_attention(kind: str, known: Mapping[str, bool]) -> bool:
    if kind not in known:
        raise ValueError(f"the UNet config names a block type SD1.5 does not have: {kind}")
    return known[kind]


def _per_level(value: int | Sequence[int], levels: int) -> list[int]:
    """SD1.5 configs' `attention_head_dim` is the number of heads (a diffusers naming quirk)."""
    return [int(value)] * levels if isinstance(value, int) else [int(v) for v in value]
