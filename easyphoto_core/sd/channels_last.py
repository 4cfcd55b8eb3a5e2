"""Run SD1.5 diffusers models in channels-last (NHWC) memory without layout copies.

cuDNN's fastest fp16 convolutions on recent GPUs are NHWC, but PyTorch's GroupNorm kernel is
written for NCHW: given an NHWC tensor it copies it to NCHW, normalises, and the next convolution
copies it back. In an SD1.5 UNet step that is a third of the GPU time, and most of a VAE decode
(measured with bench/generate_parts_gpu.py --profile). Likewise diffusers' Transformer2DModel
ends with `.contiguous()` on an NHWC view, an NCHW copy that the next convolution undoes.

`prepare_channels_last(model)` converts a model in place: its GroupNorm modules change class to
ChannelsLastGroupNorm (Triton kernels where Triton is installed, else two float32 reductions and
one fused multiply-add over a free view of the NHWC memory), its convolutions to
ChannelsLastConv2d where Triton can add their bias (PyTorch's broadcast add is unvectorised),
each Transformer2DModel returns its output in the layout it got, each ResNet block runs its
GroupNorm + SiLU pairs (and its time-embedding add and conv1's bias) as one GroupNorm call and
its residual add with conv2's bias, and each GEGLU its gate in one Triton kernel. Parameters, state-dict
keys and results (to rounding) stay the same, so loading, LoRA merging and checkpoints do not
notice. `restore_plain_modules(model)` undoes it all.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

GroupNormKernel = Callable[..., torch.Tensor]  # (x, num_groups, weight, bias, eps) -> y
BiasKernel = Callable[..., torch.Tensor]  # (y, bias[, residual]) -> y, in place
GegluKernel = Callable[[torch.Tensor], torch.Tensor]  # [..., 2 x inner] -> [..., inner]


@dataclass(frozen=True)
class NhwcKernels:
    """The kernels the channels-last modules call on CUDA inputs."""

    group_norm: GroupNormKernel
    add_bias: BiasKernel | None  # None: leave convolutions to PyTorch
    geglu: GegluKernel | None = None  # None: diffusers' GEGLU as it is


def is_nhwc(x: torch.Tensor) -> bool:
    """A 4-D tensor in channels-last memory (and not also plain contiguous, as 1x1 images are)."""
    return (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


def _wants_grad(*tensors: torch.Tensor | None) -> bool:
    """Autograd will need a backward through these: the in-place and Triton paths have none."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def group_norm_channels_last(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None,
                             bias: torch.Tensor | None, eps: float, *,
                             add: torch.Tensor | None = None, silu: bool = False) -> torch.Tensor:
    """F.group_norm for a 4-D channels-last tensor; the result is channels-last too.

    `add` (batch x channels) is added to x first, `silu` applied after: the Triton kernel's
    signature, so a fused ResNet block can run on either."""
    if add is not None:
        x = x + add.reshape(*add.shape[:2], 1, 1)
    if silu:
        return F.silu(group_norm_channels_last(x, num_groups, weight, bias, eps))
    batch, channels, height, width = x.shape
    # NHWC memory seen as (batch, pixels, groups, channels per group): a view, no copy
    grouped = x.permute(0, 2, 3, 1).reshape(batch, height * width, num_groups, -1)
    count = grouped.shape[1] * grouped.shape[3]
    mean = grouped.sum(dim=(1, 3), dtype=torch.float32) / count
    mean_square = torch.linalg.vector_norm(grouped, 2, dim=(1, 3), dtype=torch.float32) ** 2 / count
    rstd = torch.rsqrt((mean_square - mean.square()).clamp_min(0) + eps)
    scale = rstd.repeat_interleave(channels // num_groups, dim=1)  # (batch, channels)
    shift = -mean.repeat_interleave(channels // num_groups, dim=1) * scale
    if weight is not None:
        scale = scale * weight.float()
        shift = shift * weight.float()
    if bias is not None:
        shift = shift + bias.float()
    scale, shift = scale[:, :, None, None], shift[:, :, None, None]
    if _wants_grad(x, weight, bias):  # training: autograd cannot go through out=
        # one kernel in the activations' dtype, not float32 intermediates and a cast after
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
    out = torch.empty_like(x, memory_format=torch.channels_last)
    # float32 scale and shift (the shift can be large against the spread); rounded once on write
    try:
        return torch.addcmul(shift, x, scale, out=out)
    except RuntimeError:  # torch 2.1.2 (A1111's) CPU: mixed-dtype addcmul hits an internal assert
        return out.copy_(x.float() * scale + shift)


class ChannelsLastGroupNorm(torch.nn.GroupNorm):
    """A GroupNorm that keeps 4-D channels-last CUDA inputs channels-last."""

    nhwc_kernel: GroupNormKernel = staticmethod(group_norm_channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not is_nhwc(x):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        # the Triton kernels run on CUDA and have no backward
        use_nhwc_kernel = x.is_cuda and not _wants_grad(x, self.weight, self.bias)
        kernel = self.nhwc_kernel if use_nhwc_kernel else group_norm_channels_last
        return kernel(x, self.num_groups, self.weight, self.bias, self.eps)


class ChannelsLastConv2d(torch.nn.Conv2d):
    """A Conv2d whose bias a faster kernel adds, for channels-last CUDA outputs without grad."""

    add_bias: BiasKernel | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_bias is None or self.bias is None or not x.is_cuda or _wants_grad(
                x, self.weight, self.bias):
            return super().forward(x)
        y = self._conv_forward(x, self.weight, None)
        if not is_nhwc(y):
            return y.add_(self.bias[:, None, None])
        return self.add_bias(y, self.bias)


def fastest_kernels() -> NhwcKernels:
    """The Triton kernels where Triton can be imported (torch's CUDA builds on Linux)."""
    try:
        from easyphoto_core.sd.triton_geglu import geglu
        from easyphoto_core.sd.triton_nhwc import add_channel_bias_, group_norm_nhwc
    except ImportError:
        return NhwcKernels(group_norm=group_norm_channels_last, add_bias=None)
    return NhwcKernels(group_norm=group_norm_nhwc, add_bias=add_channel_bias_, geglu=geglu)


def _fused_resnet_forward(self: Any, input_tensor: torch.Tensor, temb: torch.Tensor | None = None,
                          *args: Any, **kwargs: Any) -> torch.Tensor:
    """ResnetBlock2D.forward for the SD1.5 configuration `_is_fusable_resnet` checks, with each
    GroupNorm fused with the SiLU after it, and no pass of its own for a bias: the time
    embedding and conv1's bias are added inside the second GroupNorm, conv2's and the
    shortcut's inside the residual add. Three fewer passes over the activation per block."""
    # the fused forward is for NHWC inference only
    if not is_nhwc(input_tensor) or _wants_grad(input_tensor, self.conv1.weight):
        return type(self).forward(self, input_tensor, temb, *args, **kwargs)
    norm1, norm2 = self.norm1, self.norm2
    kernel = norm1.nhwc_kernel if input_tensor.is_cuda else group_norm_channels_last
    hidden = kernel(input_tensor, norm1.num_groups, norm1.weight, norm1.bias, norm1.eps,
                    silu=True)
    hidden = _conv_without_bias(self.conv1, hidden)
    added = self.conv1.bias.expand(hidden.shape[0], -1)
    if self.time_emb_proj is not None and temb is not None:
        added = self.time_emb_proj(self.nonlinearity(temb)) + self.conv1.bias
    hidden = kernel(hidden, norm2.num_groups, norm2.weight, norm2.bias, norm2.eps, add=added,
                    silu=True)
    hidden = _conv_without_bias(self.conv2, self.dropout(hidden))
    bias, shortcut = self.conv2.bias, input_tensor
    if self.conv_shortcut is not None:
        shortcut = _conv_without_bias(self.conv_shortcut, input_tensor)
        bias = bias + self.conv_shortcut.bias
    output = _add_residual_and_bias_(hidden, shortcut, bias, getattr(self.conv2, "add_bias", None))
    return output if self.output_scale_factor == 1.0 else output / self.output_scale_factor


def _conv_without_bias(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def _add_residual_and_bias_(y: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor,
                            add_bias: BiasKernel | None) -> torch.Tensor:
    """y += residual + bias[channel], in one pass where the Triton kernel can take it."""
    if add_bias is not None and y.is_cuda and is_nhwc(y) and is_nhwc(residual):
        return add_bias(y, bias, residual)
    return y.add_(residual).add_(bias[:, None, None])


def _time_embedding_before_norm2(module: torch.nn.Module) -> bool:
    """diffusers adds the time embedding before norm2 ("default"); a block without one (the VAE
    decoder's up blocks say "group") just runs norm2, which is the same."""
    norm = getattr(module, "time_embedding_norm", None)
    return norm == "default" or (norm == "group" and getattr(module, "time_emb_proj", 0) is None)


def _bias_foldable(conv: Any) -> bool:
    """A plain zero-padded Conv2d with a bias (no LoRA layer of old diffusers on it): its bias
    can be added elsewhere."""
    return (isinstance(conv, torch.nn.Conv2d) and conv.padding_mode == "zeros"
            and conv.bias is not None and getattr(conv, "lora_layer", None) is None)


def _is_fusable_resnet(module: torch.nn.Module) -> bool:
    """A diffusers ResnetBlock2D as SD1.5 builds them: no resampling, the time embedding added
    before norm2, SiLU everywhere, both norms already ChannelsLastGroupNorm."""
    return (type(module).__name__ == "ResnetBlock2D"
            and not getattr(module, "up", True) and not getattr(module, "down", True)
            and _time_embedding_before_norm2(module)
            and not getattr(module, "skip_time_act", True)
            and isinstance(getattr(module, "nonlinearity", None), torch.nn.SiLU)
            and isinstance(getattr(module, "norm1", None), ChannelsLastGroupNorm)
            and isinstance(getattr(module, "norm2", None), ChannelsLastGroupNorm)
            and all(hasattr(module, name) for name in (
                "conv1", "conv2", "dropout", "time_emb_proj", "conv_shortcut",
                "output_scale_factor"))
            and _bias_foldable(module.conv1) and _bias_foldable(module.conv2)
            and (module.conv_shortcut is None or _bias_foldable(module.conv_shortcut)))


def _fused_geglu_forward(self: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
                         ) -> torch.Tensor:
    """diffusers' GEGLU.forward (exact GELU) with the gate in one kernel on CUDA inference
    (triton_geglu.py says what that saves); elsewhere diffusers' own."""
    if not hidden_states.is_cuda or _wants_grad(hidden_states, self.proj.weight):
        return type(self).forward(self, hidden_states, *args, **kwargs)
    return self.geglu_kernel(self.proj(hidden_states))


def _is_exact_geglu(module: torch.nn.Module) -> bool:
    """diffusers' GEGLU (a Linear to twice the width, halves a and g, a * F.gelu(g))."""
    return (type(module).__name__ == "GEGLU" and isinstance(getattr(module, "proj", None),
                                                          torch.nn.Linear)
            and getattr(module, "approximate", "none") == "none")


def _transformer_output_in_input_layout(self: Any, hidden_states: torch.Tensor,
                                        residual: torch.Tensor, batch_size: int, height: int,
                                        width: int, inner_dim: int) -> torch.Tensor:
    """Transformer2DModel._get_output_for_continuous_inputs for conv projections, minus the
    `.contiguous()`: the (batch, pixels, channels) tokens are already NHWC memory."""
    tokens = hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
    return self.proj_out(tokens) + residual


def prepare_channels_last(model: torch.nn.Module, *,
                          kernels: NhwcKernels | None = None) -> torch.nn.Module:
    """Convert `model` in place to channels-last memory and the layout-keeping modules."""
    model.to(memory_format=torch.channels_last)
    kernels = kernels or fastest_kernels()
    for module in model.modules():
        if type(module) is torch.nn.GroupNorm and module.affine:
            module.__class__ = ChannelsLastGroupNorm
            module.nhwc_kernel = kernels.group_norm
        elif type(module) is torch.nn.Conv2d and module.padding_mode == "zeros" \
                and kernels.add_bias is not None:
            module.__class__ = ChannelsLastConv2d
            module.add_bias = kernels.add_bias
        elif (type(module).__name__ == "Transformer2DModel"
              and hasattr(module, "_get_output_for_continuous_inputs")
              and not getattr(module, "use_linear_projection", True)):
            module._get_output_for_continuous_inputs = types.MethodType(
                _transformer_output_in_input_layout, module)
        elif _is_exact_geglu(module) and kernels.geglu is not None:
            module.geglu_kernel = kernels.geglu
            module.forward = types.MethodType(_fused_geglu_forward, module)
    for module in model.modules():  # after the norms above changed class
        if _is_fusable_resnet(module):
            module.forward = types.MethodType(_fused_resnet_forward, module)
    return model


def restore_plain_modules(model: torch.nn.Module) -> torch.nn.Module:
    """Undo `prepare_channels_last` (and a compiled forward): diffusers' own modules, NCHW."""
    for module in model.modules():
        if isinstance(module, ChannelsLastGroupNorm):
            module.__class__ = torch.nn.GroupNorm
        elif isinstance(module, ChannelsLastConv2d):
            module.__class__ = torch.nn.Conv2d
        module.__dict__.pop("_get_output_for_continuous_inputs", None)
        module.__dict__.pop("geglu_kernel", None)
        module.__dict__.pop("forward", None)  # a fused ResNet block, or torch.compile's
    return model.to(memory_format=torch.contiguous_format)
