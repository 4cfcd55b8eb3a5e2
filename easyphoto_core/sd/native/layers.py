"""The building blocks of SD1.5's UNet and VAE, as diffusers names and computes them.

Parameter names, shapes and maths follow diffusers 0.42 (`ResnetBlock2D`, `Attention` with
`AttnProcessor2_0`, `BasicTransformerBlock`, `Transformer2DModel` without linear projection,
`Downsample2D`, `Upsample2D`), so a state dict moves between the two unchanged and the key maps of
ldm_keys.py apply; tests/unit/test_native_models.py checks outputs against diffusers'.
Only what SD1.5 uses is here: no other norm types, no LoRA-compatible layers, no processors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto_core.sd.channels_last import group_norm_channels_last, is_nhwc

# calls a block, possibly through torch.utils.checkpoint (Low VRAM): (module, *inputs) -> output
BlockRunner = Callable[..., torch.Tensor]


def run_plain(module: nn.Module, *inputs: Any) -> torch.Tensor:
    return module(*inputs)


@functools.cache
def triton_group_norm() -> Any:
    """The Triton NHWC GroupNorm with its backward (triton_nhwc.py), or None without Triton."""
    try:
        from easyphoto_core.sd.triton_nhwc import GroupNormNHWC
    except ImportError:
        return None
    return GroupNormNHWC


@functools.cache
def triton_geglu() -> Any:
    """The Triton GEGLU with its backward (triton_geglu.py), or None without Triton."""
    try:
        from easyphoto_core.sd.triton_geglu import GEGLUFunction
    except ImportError:
        return None
    return GEGLUFunction


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (optionally followed by SiLU) that keeps a channels-last input
    channels-last, autograd included.

    PyTorch's kernel and its backward read NCHW only: on NHWC activations each call copies to
    NCHW and the next convolution copies back (cuDNN's nchwToNhwc kernels, 6.5 ms of a 54.5 ms
    training step on the H200, bench/train_gpu.py --modes profile). On CUDA the Triton kernels
    (triton_nhwc.GroupNormNHWC) do the norm and the SiLU together, reading the activation twice
    each way; elsewhere a composite of PyTorch ops. Measured there: the step graph 63.8 ms NCHW, 61.1 ms NHWC with
    the composite, 50.5 ms with the Triton kernels."""

    def forward(self, x: torch.Tensor, *, silu: bool = False) -> torch.Tensor:
        fused = triton_group_norm() if x.is_cuda and is_nhwc(x) else None
        if fused is not None and not (self.weight.requires_grad or self.bias.requires_grad):
            return fused.apply(x, self.num_groups, self.weight, self.bias, self.eps, silu)
        if is_nhwc(x):
            y = group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)
        else:
            y = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.silu(y) if silu else y


class ResnetBlock2D(nn.Module):
    """GroupNorm, SiLU, 3x3 conv (+ time embedding), twice; a 1x1 shortcut where channels change."""

    def __init__(self, in_channels: int, out_channels: int, *, temb_channels: int | None,
                 groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels else None
        self.norm2 = GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                              if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.conv1(self.norm1(x, silu=True))
        if self.time_emb_proj is not None and temb is not None:
            hidden = hidden + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        hidden = self.conv2(self.norm2(hidden, silu=True))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + hidden


class Attention(nn.Module):
    """Multi-head attention over tokens [batch, tokens, channels] (diffusers' `Attention`)."""

    def __init__(self, query_dim: int, *, heads: int, dim_head: int,
                 context_dim: int | None = None, bias: bool = False) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        batch = x.shape[0]

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

        q, k, v = split_heads(self.to_q(x)), split_heads(self.to_k(context)), \
            split_heads(self.to_v(context))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[3])
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.proj(x)
        fused = triton_geglu() if projected.is_cuda else None
        if fused is not None:  # one kernel each way (triton_geglu.py says what it saves)
            return fused.apply(projected)
        hidden, gate = projected.chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        # diffusers' indices: net.0 = GEGLU (its `proj` is a LoRA target), net.1 dropout, net.2
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0),
                                  nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention to the prompt, GEGLU feed-forward; pre-norm, residuals."""

    def __init__(self, dim: int, *, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, dim_head=dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads=heads, dim_head=dim_head, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """GroupNorm, 1x1 conv in, one transformer block over the pixels as tokens, 1x1 conv out."""

    def __init__(self, channels: int, *, heads: int, context_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(
            channels, heads=heads, dim_head=channels // heads, context_dim=context_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        hidden = self.proj_in(self.norm(x))
        hidden = hidden.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        for block in self.transformer_blocks:
            hidden = block(hidden, context)
        hidden = hidden.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        if not is_nhwc(x):  # the tokens are NHWC memory already: NCHW needs a copy
            hidden = hidden.contiguous()
        return self.proj_out(hidden) + x


class Downsample2D(nn.Module):
    """A stride-2 3x3 conv; `padding=0` pads right and bottom by one first (the VAE's way)."""

    def __init__(self, channels: int, *, padding: int) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 (or to `size`), then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class SpatialSelfAttention(Attention):
    """The VAE's single-head attention over pixels (with biases), with its own GroupNorm and the
    residual."""

    def __init__(self, channels: int, *, groups: int, eps: float) -> None:
        super().__init__(channels, heads=1, dim_head=channels, bias=True)
        self.group_norm = GroupNorm(groups, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.group_norm(x).view(batch, channels, height * width).transpose(1, 2)
        out = super().forward(tokens)
        return out.transpose(1, 2).reshape(batch, channels, height, width) + x
