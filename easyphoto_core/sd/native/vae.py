"""SD1.5's VAE, parameter for parameter diffusers' `AutoencoderKL` (see layers.py)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from easyphoto_core.sd.native.config import ModelConfig
from easyphoto_core.sd.native.layers import (
    Downsample2D,
    GroupNorm,
    ResnetBlock2D,
    SpatialSelfAttention,
    Upsample2D,
)

EPS = 1e-6  # diffusers' Encoder/Decoder fix their norms' eps


class LatentDistribution(NamedTuple):
    mean: torch.Tensor
    logvar: torch.Tensor


class EncoderOutput(NamedTuple):
    latent_dist: LatentDistribution


class DecoderOutput(NamedTuple):
    sample: torch.Tensor


class VAEBlock(nn.Module):
    """An encoder or decoder level: resnets, then its down/up sampler."""

    def __init__(self, resnets: list[nn.Module], *, downsampler: nn.Module | None = None,
                 upsampler: nn.Module | None = None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if downsampler is not None:
            self.downsamplers = nn.ModuleList([downsampler])
        if upsampler is not None:
            self.upsamplers = nn.ModuleList([upsampler])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for sampler in list(getattr(self, "downsamplers", [])) + list(
                getattr(self, "upsamplers", [])):
            x = sampler(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb_channels=None,
                                                    groups=groups, eps=EPS) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups=groups, eps=EPS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Coder(nn.Module):
    """Encoder (`down=True`) or decoder: conv in, levels, mid block, norm, SiLU, conv out."""

    def __init__(self, config: Mapping[str, Any], *, down: bool) -> None:
        super().__init__()
        channels = list(config["block_out_channels"])
        groups, layers = int(config["norm_num_groups"]), int(config["layers_per_block"])
        latent = int(config["latent_channels"])
        resnet = functools.partial(ResnetBlock2D, temb_channels=None, groups=groups, eps=EPS)
        levels = channels if down else channels[::-1]
        self.conv_in = nn.Conv2d(int(config["in_channels"]) if down else latent, levels[0], 3,
                                 padding=1)
        blocks, out_ch = [], levels[0]
        for level, width in enumerate(levels):
            in_ch, out_ch = out_ch, width
            final = level == len(levels) - 1
            count = layers if down else layers + 1
            resnets = [resnet(in_ch if j == 0 else out_ch, out_ch) for j in range(count)]
            if down:
                blocks.append(VAEBlock(resnets, downsampler=None if final else Downsample2D(
                    out_ch, padding=0)))
            else:
                blocks.append(VAEBlock(resnets, upsampler=None if final else Upsample2D(out_ch)))
        if down:
            self.down_blocks = nn.ModuleList(blocks)
        else:
            self.up_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(channels[-1], groups)
        self.conv_norm_out = GroupNorm(groups, levels[-1], eps=EPS)
        out_channels = 2 * latent if down else int(config["out_channels"])
        self.conv_out = nn.Conv2d(levels[-1], out_channels, 3, padding=1)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        if self.down:
            for block in self.down_blocks:
                x = block(x)
            x = self.mid_block(x)
        else:
            x = self.mid_block(x)
            for block in self.up_blocks:
                x = block(x)
        return self.conv_out(self.conv_norm_out(x, silu=True))


class AutoencoderKL(nn.Module):
    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = ModelConfig({"scaling_factor": 0.18215, **config})
        latent = int(config["latent_channels"])
        self.encoder = Coder(config, down=True)
        self.decoder = Coder(config, down=False)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        mean, logvar = self.quant_conv(self.encoder(pixels)).chunk(2, dim=1)
        return EncoderOutput(LatentDistribution(mean, logvar))

    def decode(self, latents: torch.Tensor) -> DecoderOutput:
        return DecoderOutput(self.decoder(self.post_quant_conv(latents)))
