"""Our own LoRA layers: kohya's maths and names, no peft.

Why not peft (decided; keep unless both reasons go away):
- host constraint: peft is absent from A1111 venvs (the 1.10.1 freeze in ../shared/hosts has
  none), and diffusers' PEFT backend wants transformers >= 4.34 where the host pins 4.30.2, so
  install.py cannot add it without moving a host package.
- the training step is captured as one CUDA graph (easyphoto_train/engine.py): peft's layers
  decide per call in Python (active adapters, merged state, dropout/DoRA variants) and so break
  the capture; the graph needs plain modules whose tensors never change identity. Here the scale
  is a buffer filled in place, so a replay sees a new alpha after a resume without re-capture.
peft stays in the tests only, as a cross-check of the maths (diffusers' `load_lora_weights`).

A wrapped layer computes

    y = base(x) + up(down(dropout(x))) * (alpha / rank)

with `down` kaiming-uniform(a=√5) and `up` zero (kohya's init, so training starts at the base
model). The wrapper replaces the layer in its parent module (training only: generation merges a
LoRA into the weights with `merge_lora_in_place`, which keeps a captured graph valid). The
wrapper's parameters are named `lora_down.weight` / `lora_up.weight` and `alpha` is a buffer, so
`LoRANetwork.state_dict_kohya()` maps 1:1 onto the file format of `lora_format`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from easyphoto_core.lora_format import (
    ALPHA_SUFFIX,
    LORA_DOWN_SUFFIX,
    LORA_UP_SUFFIX,
    PART_TEXT_ENCODER,
    PART_UNET,
    LoRAFormatError,
    group_modules,
    kohya_module_name,
)

# DESIGN.md §1.1: the UNet's transformer blocks (attention q/k/v/out, feed-forward) and the
# attention blocks' proj_in/proj_out; the text encoder's attention and MLP. A target matches a
# module whose path ends with it.
DEFAULT_UNET_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out",
)
DEFAULT_TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoRALayer(nn.Module):
    """A base layer plus a trainable low-rank update; see `LoRALinear`/`LoRAConv1x1`."""

    def __init__(
        self, base: nn.Module, down: nn.Module, up: nn.Module, *, alpha: float, dropout: float
    ) -> None:
        super().__init__()
        self.base = base
        self.lora_down = down
        self.lora_up = up
        self.rank = int(down.weight.shape[0])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.alpha_value = float(alpha)  # a Python copy: meta-device models have no values
        # alpha is saved with the LoRA; scale = alpha / rank is a tensor too, so a captured CUDA
        # graph replays with the current alpha (fill_ instead of a new float).
        self.register_buffer("alpha", torch.tensor(float(alpha), device=down.weight.device))
        self.register_buffer("scale", torch.empty((), device=down.weight.device), persistent=False)
        self._update_scale()
        # (down, scaled up) in the compute dtype, set for one forward by
        # LoRANetwork.compute_factors; None: this layer casts its own
        self.compute_factors: tuple[torch.Tensor, torch.Tensor] | None = None
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)

    # The wrapped layer's own attributes, for code that inspects `layer.weight` (dtype checks).
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def set_alpha(self, alpha: float) -> None:
        self.alpha_value = float(alpha)
        with torch.no_grad():
            self.alpha.fill_(self.alpha_value)
        self._update_scale()

    @property
    def scale_value(self) -> float:
        return self.alpha_value / self.rank

    def _update_scale(self) -> None:
        with torch.no_grad():
            self.scale.fill_(self.scale_value)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # Extra arguments (old diffusers passed `scale=` to its LoRA-compatible layers) go to the
        # base layer only.
        out = self.base(x, *args, **kwargs)
        hidden = self.dropout(x) if self.dropout is not None else x
        # fp32 LoRA weights on a bf16/fp16 base: compute in the activations' dtype; the cast is
        # differentiable, so the fp32 master weights still get their gradients. The scale goes
        # on the [out, r] up weight, not on the activations: per layer and pass one tiny op
        # instead of an activation-sized multiply (forward and backward).
        if self.compute_factors is not None:
            down, up = self.compute_factors
        else:
            down = self.lora_down.weight.to(hidden.dtype)
            up = (self.lora_up.weight * self.scale).to(hidden.dtype)
        return self._add_projection(out, self._project(hidden, down), up)

    def _project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _add_projection(self, out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor
                        ) -> torch.Tensor:
        """out + project(hidden, weight)."""
        return out + self._project(hidden, weight)



class LoRALinear(LoRALayer):
    """LoRA around an `nn.Linear`: down [r, in], up [out, r]."""

    def __init__(
        self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory = {"device": base.weight.device, "dtype": dtype or base.weight.dtype}
        down = nn.Linear(base.in_features, rank, bias=False, **factory)
        up = nn.Linear(rank, base.out_features, bias=False, **factory)
        super().__init__(base, down, up, alpha=alpha, dropout=dropout)

    def _project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def _add_projection(self, out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor
                        ) -> torch.Tensor:
        # the add happens inside the matrix product (addmm's beta = 1): no separate pass over
        # the activations, and its backward hands the gradient through without a kernel
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), hidden.reshape(-1, hidden.shape[-1]),
                           weight.t())
        return flat.view(out.shape)


class LoRAConv1x1(LoRALayer):
    """LoRA on a 1x1 `nn.Conv2d` (SD1.5's proj_in/out): down [r, in, 1, 1], up [out, r, 1, 1]."""

    def __init__(
        self, base: nn.Conv2d, *, rank: int, alpha: float, dropout: float = 0.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not is_conv1x1(base):
            raise ValueError(f"LoRAConv1x1 needs a 1x1, stride 1, ungrouped conv, got {base}")
        factory = {"device": base.weight.device, "dtype": dtype or base.weight.dtype}
        down = nn.Conv2d(base.in_channels, rank, 1, bias=False, **factory)
        up = nn.Conv2d(rank, base.out_channels, 1, bias=False, **factory)
        super().__init__(base, down, up, alpha=alpha, dropout=dropout)

    def _project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight)


def is_conv1x1(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and tuple(module.kernel_size) == (1, 1)
        and tuple(module.stride) == (1, 1)
        and module.groups == 1
        and module.padding in ((0, 0), "valid")
    )


def wrap_layer(
    base: nn.Module, *, rank: int, alpha: float, dropout: float = 0.0,
    dtype: torch.dtype | None = None,
) -> LoRALayer:
    """The LoRA wrapper that fits `base` (Linear or 1x1 Conv2d); ValueError for anything else."""
    if isinstance(base, LoRALayer):
        raise ValueError("layer already has a LoRA: remove() the other network first")
    if isinstance(base, nn.Linear):
        return LoRALinear(base, rank=rank, alpha=alpha, dropout=dropout, dtype=dtype)
    if is_conv1x1(base):
        return LoRAConv1x1(base, rank=rank, alpha=alpha, dropout=dropout, dtype=dtype)
    raise ValueError(f"LoRA supports nn.Linear and 1x1 nn.Conv2d layers, not {base}")


# --- the network ---------------------------------------------------------------------------------


class LoRAParameters(NamedTuple):
    """Trainable LoRA parameters by model part (the text encoder trains at its own rate)."""

    unet: list[nn.Parameter]
    text_encoder: list[nn.Parameter]


@dataclass(frozen=True)
class LoadReport:
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


@dataclass(frozen=True)
class _Site:
    """Where a wrapper sits: the parent module and the attribute it replaced."""

    part: str
    parent: nn.Module
    attribute: str
    layer: LoRALayer


class LoRANetwork:
    """The LoRA layers injected into a UNet and/or a text encoder, keyed by kohya module name.

    Not an `nn.Module`: the layers belong to the models they sit in (and contain the frozen base
    layers), so `parameters()` here yields only the LoRA factors.
    """

    def __init__(self, sites: Mapping[str, _Site]) -> None:
        self._sites = dict(sites)

    @property
    def layers(self) -> dict[str, LoRALayer]:
        return {name: site.layer for name, site in self._sites.items()}

    def __len__(self) -> int:
        return len(self._sites)

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(kohya tensor key, parameter): `<name>.lora_down.weight`, `<name>.lora_up.weight`."""
        for name, site in self._sites.items():
            yield name + LORA_DOWN_SUFFIX, site.layer.lora_down.weight
            yield name + LORA_UP_SUFFIX, site.layer.lora_up.weight

    def parameters(self) -> Iterator[nn.Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def parameters_by_part(self) -> LoRAParameters:
        grouped = LoRAParameters([], [])
        for site in self._sites.values():
            target = grouped.unet if site.part == PART_UNET else grouped.text_encoder
            target.extend([site.layer.lora_down.weight, site.layer.lora_up.weight])
        return grouped

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> LoRANetwork:
        """Move/cast the LoRA factors (alpha and scale stay float32); the base layers stay put."""
        for site in self._sites.values():
            layer = site.layer
            layer.lora_down.to(device=device, dtype=dtype)
            layer.lora_up.to(device=device, dtype=dtype)
            if device is not None:
                layer.alpha = layer.alpha.to(device)
                layer.scale = layer.scale.to(device)
        return self

    @contextlib.contextmanager
    def compute_factors(self, dtype: torch.dtype) -> Iterator[None]:
        """Within the block, every layer's forward takes its factors cast to `dtype` (up times
        its scale) in one pass over all of them, and their gradients come back in one pass.

        A layer that casts its own factors costs three kernels forward and three backward; an
        SD1.5 network has 264 layers, and those ~1,600 kernels of a few microseconds each were
        3.4 ms of an optimizer step's 48 ms on an H200 (bench/train_gpu.py --modes profile).
        For training without gradient checkpointing (a recomputed forward, outside the block,
        would save other tensors than the first); the layers must share one alpha / rank.
        """
        layers = list(self.layers.values())
        if len({layer.scale_value for layer in layers}) > 1:
            raise ValueError("compute_factors needs one alpha / rank for every layer")
        downs = [layer.lora_down.weight for layer in layers]
        ups = [layer.lora_up.weight for layer in layers]
        cast = _CastFactors.apply(layers[0].scale, dtype, len(layers), *downs, *ups)
        for layer, down, up in zip(layers, cast[:len(layers)], cast[len(layers):], strict=True):
            layer.compute_factors = (down, up)
        try:
            yield
        finally:
            for layer in layers:
                layer.compute_factors = None

    def requires_grad_(self, requires_grad: bool = True) -> LoRANetwork:
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad)
        return self

    def state_dict_kohya(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = "cpu"
    ) -> dict[str, torch.Tensor]:
        """A detached copy in kohya keys (`.alpha` 0-dim); `dtype` casts the factors only.

        `device=None`: the factors where they are, detached but not copied (a caller that
        copies them itself, such as a checkpoint snapshot into pinned memory)."""
        tensors: dict[str, torch.Tensor] = {}
        for name, site in self._sites.items():
            layer = site.layer
            for suffix, weight in ((LORA_DOWN_SUFFIX, layer.lora_down.weight),
                                   (LORA_UP_SUFFIX, layer.lora_up.weight)):
                tensors[name + suffix] = weight.detach() if device is None else \
                    weight.detach().to(device=device, dtype=dtype, copy=True)
            tensors[name + ALPHA_SUFFIX] = torch.tensor(layer.alpha_value, device=device)
        return tensors

    def load_state_dict_kohya(
        self, tensors: Mapping[str, torch.Tensor], *, strict: bool = True
    ) -> LoadReport:
        """Copy kohya tensors into the layers. Shapes must match; `strict` also wants the same
        module set. A module without `.alpha` keeps alpha = rank (the format's default)."""
        modules = group_modules(tensors, source="LoRA state dict")
        missing = tuple(sorted(set(self._sites) - set(modules)))
        unexpected = tuple(sorted(set(modules) - set(self._sites)))
        if strict and (missing or unexpected):
            raise LoRAFormatError(
                f"LoRA state dict does not fit this network: {len(missing)} modules missing "
                f"(e.g. {list(missing[:2])}), {len(unexpected)} unexpected "
                f"(e.g. {list(unexpected[:2])})"
            )
        with torch.no_grad():
            for name, module in modules.items():
                if name not in self._sites:
                    continue
                layer = self._sites[name].layer
                _copy_checked(name + LORA_DOWN_SUFFIX, layer.lora_down.weight, module.down)
                _copy_checked(name + LORA_UP_SUFFIX, layer.lora_up.weight, module.up)
                layer.set_alpha(module.alpha)
        return LoadReport(missing, unexpected)


class _CastFactors(torch.autograd.Function):
    """(downs, ups) -> (downs in `dtype`, ups * scale in `dtype`): one concatenation and one
    cast each way instead of per-tensor kernels (LoRANetwork.compute_factors)."""

    @staticmethod
    def forward(ctx: Any, scale: torch.Tensor, dtype: torch.dtype, count: int,
                *factors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(scale)
        ctx.count = count
        ctx.shapes = [f.shape for f in factors]
        downs = torch.cat([f.reshape(-1) for f in factors[:count]]).to(dtype)
        ups = torch.cat([f.reshape(-1) for f in factors[count:]]).mul_(scale).to(dtype)
        return (*_split_like(downs, factors[:count]), *_split_like(ups, factors[count:]))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (scale,) = ctx.saved_tensors
        count, shapes = ctx.count, ctx.shapes
        # the matrix products hand back contiguous gradients (addmm's for a transposed up
        # weight included), so the flattening views are free
        downs = torch.cat([g.reshape(-1) for g in grads[:count]]).float()
        ups = torch.cat([g.reshape(-1) for g in grads[count:]]).float().mul_(scale)
        return (None, None, None, *_split_to(downs, shapes[:count]),
                *_split_to(ups, shapes[count:]))


def _split_like(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return _split_to(flat, [t.shape for t in tensors])


def _split_to(flat: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    sizes = [math.prod(shape) for shape in shapes]
    return [part.view(shape) for part, shape in zip(flat.split(sizes), shapes, strict=True)]


def _copy_checked(key: str, target: torch.Tensor, source: torch.Tensor) -> None:
    if tuple(target.shape) != tuple(source.shape):
        shapes = f"{list(source.shape)} does not fit {list(target.shape)}"
        raise LoRAFormatError(f"{key}: shape {shapes}")
    target.copy_(source.to(device=target.device, dtype=target.dtype))


# --- injection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    part: str
    path: str
    parent: nn.Module
    attribute: str
    layer: nn.Module


def _candidates(
    part: str, model: nn.Module | None, targets: Iterable[str] | None
) -> dict[str, _Candidate]:
    """Layers of `model` whose path ends with one of `targets` (all if None), by kohya name."""
    if model is None:
        return {}
    target_list = None if targets is None else tuple(targets)
    found: dict[str, _Candidate] = {}
    for parent_path, parent in model.named_modules():
        for attribute, layer in parent.named_children():
            if isinstance(layer, LoRALayer) or isinstance(parent, LoRALayer):
                continue
            path = f"{parent_path}.{attribute}" if parent_path else attribute
            if target_list is not None and not any(
                path == t or path.endswith("." + t) for t in target_list
            ):
                continue
            if target_list is None and not (isinstance(layer, nn.Linear) or is_conv1x1(layer)):
                continue
            found[kohya_module_name(part, path)] = _Candidate(part, path, parent, attribute, layer)
    return found


def _wrap_all(
    plan: Mapping[str, tuple[_Candidate, int, float]], *, dropout: float, dtype: torch.dtype | None
) -> LoRANetwork:
    """Build every wrapper first, then swap them in: a failure leaves the models untouched."""
    sites: dict[str, _Site] = {}
    for name, (candidate, rank, alpha) in plan.items():
        try:
            layer = wrap_layer(
                candidate.layer, rank=rank, alpha=alpha, dropout=dropout, dtype=dtype
            )
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        sites[name] = _Site(candidate.part, candidate.parent, candidate.attribute, layer)
    for site in sites.values():
        site.layer.base.requires_grad_(False)  # only the factors train; remove() keeps it frozen
        site.parent._modules[site.attribute] = site.layer
    return LoRANetwork(sites)


def inject_lora(
    unet: nn.Module | None,
    text_encoder: nn.Module | None,
    *,
    rank: int,
    alpha: float,
    unet_targets: Sequence[str] = DEFAULT_UNET_TARGETS,
    te_targets: Sequence[str] = DEFAULT_TEXT_ENCODER_TARGETS,
    dropout: float = 0.0,
    dtype: torch.dtype | None = None,
) -> LoRANetwork:
    """Wrap the target layers of the UNet and the text encoder in place; either may be None.

    A target matches every layer whose module path ends with it ("to_q" = all attn1/attn2 to_q);
    a target that matches nothing raises, as does one that hits a layer other than Linear or 1x1
    Conv2d (the models are then left untouched). The wrapped layers are frozen. `dtype` is the
    LoRA factors' dtype (default: the base layer's).
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    plan: dict[str, tuple[_Candidate, int, float]] = {}
    for part, model, targets in ((PART_UNET, unet, unet_targets),
                                 (PART_TEXT_ENCODER, text_encoder, te_targets)):
        if model is None:
            continue
        found = _candidates(part, model, targets)
        paths = [candidate.path for candidate in found.values()]
        unmatched = [t for t in targets if not any(p == t or p.endswith("." + t) for p in paths)]
        if unmatched:
            raise ValueError(f"LoRA targets match no {part} layer: {unmatched}")
        plan.update({name: (candidate, rank, alpha) for name, candidate in found.items()})
    return _wrap_all(plan, dropout=dropout, dtype=dtype)


@dataclass
class MergedLoRA:
    """A LoRA added into the base weights in place; `restore()` puts the exact originals back.

    Merging (rather than wrapping layers) keeps the modules and their weight tensors the same
    objects, so a CUDA graph captured on the base model stays valid for every user's LoRA.
    """

    originals: list[tuple[torch.Tensor, torch.Tensor]]  # (weight, saved copy)

    def restore(self) -> None:
        with torch.no_grad():
            for weight, saved in self.originals:
                weight.copy_(saved)
        self.originals = []


class _MergeItem(NamedTuple):
    weight: torch.Tensor  # the layer's weight, changed in place
    module: Any  # its lora_format.ModuleLoRA


def merge_lora_in_place(
    unet: nn.Module | None,
    text_encoder: nn.Module | None,
    modules: Mapping[str, Any],
    multiplier: float = 1.0,
) -> MergedLoRA:
    """W += multiplier * ΔW for each module of a kohya LoRA (`lora_format.ModuleLoRA`s).

    Layers of one shape are merged together (one batched matmul, one add): an SD1.5 LoRA has
    264 modules in about 30 shapes, and one module at a time cost a portrait 48 ms of kernel
    launches on an H200 (bench/generate_gpu.py, `lora_merge_and_restore`)."""
    layers = {
        **_candidates(PART_UNET, unet, None),
        **_candidates(PART_TEXT_ENCODER, text_encoder, None),
    }
    unknown = sorted(set(modules) - set(layers))
    if unknown:
        raise LoRAFormatError(
            f"{len(unknown)} LoRA modules name no layer of these models (e.g. {unknown[:3]})"
        )
    groups: dict[tuple, list[_MergeItem]] = {}
    for name, module in modules.items():
        weight = layers[name].layer.weight
        if (module.out_features, module.in_features) != tuple(weight.shape[:2]) or (
                weight.numel() != module.out_features * module.in_features):
            raise LoRAFormatError(
                f"LoRA module {name} is {module.out_features}x{module.in_features}, the layer is "
                f"{tuple(weight.shape)}: trained on another base model?")
        key = (tuple(weight.shape), weight.dtype, weight.device, module.rank)
        groups.setdefault(key, []).append(_MergeItem(weight, module))
    merged = MergedLoRA([])
    try:
        with torch.no_grad():
            for items in groups.values():
                _merge_group(items, multiplier, merged)
    except BaseException:  # e.g. out of memory half-way: the base model as it was
        merged.restore()
        raise
    return merged


def _merge_group(items: list[_MergeItem], multiplier: float, merged: MergedLoRA) -> None:
    """W_i += multiplier * scale_i * up_i @ down_i for layers of one shape, in float32."""
    first = items[0]
    out_features, rank = first.module.out_features, first.module.rank
    device = first.weight.device
    ups = torch.stack([i.module.up.reshape(out_features, rank) for i in items]).to(
        device=device, dtype=torch.float32)
    downs = torch.stack([i.module.down.reshape(rank, -1) for i in items]).to(
        device=device, dtype=torch.float32)
    scales = torch.tensor([multiplier * i.module.scale for i in items], device=device)
    saved = torch.stack([i.weight.reshape(out_features, -1) for i in items])  # exact copies
    result = torch.baddbmm(saved.float(), ups * scales[:, None, None], downs).to(saved.dtype)
    for index, item in enumerate(items):
        merged.originals.append((item.weight, saved[index].view_as(item.weight)))
        item.weight.copy_(result[index].view_as(item.weight))
