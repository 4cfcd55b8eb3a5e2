"""kohya-format LoRA files: key names, alpha, metadata, reading and writing, and ΔW fusion.

One LoRA module per wrapped layer, named after the layer's module path with '.' -> '_' under
`lora_unet_` (diffusers UNet) or `lora_te_` (CLIP text model, always `text_model.`-rooted):

    lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight  [r, in]
    lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight    [out, r]
    lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha             0-dim

1x1 convs (proj_in/proj_out in SD1.5) keep the conv layout: [r, in, 1, 1] and [out, r, 1, 1].
The layer computes W x + (alpha / r) * up(down(x)), so ΔW = (alpha / r) * up @ down.

This is the format A1111's built-in Lora extension, diffusers' `load_lora_weights` and kohya's
sd-scripts all read (../shared/HOST.md). PEFT/diffusers-style keys (`lora_A`/`lora_B`) load nothing
in A1111 and raise no error there, so this module refuses to read or write them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from easyphoto_core import __version__
from easyphoto_core.workspace import atomic_save_with, validate_user_id

UNET_LORA_PREFIX = "lora_unet_"
TEXT_ENCODER_LORA_PREFIX = "lora_te_"
LORA_DOWN_SUFFIX = ".lora_down.weight"
LORA_UP_SUFFIX = ".lora_up.weight"
ALPHA_SUFFIX = ".alpha"

# The final LoRA's factors are written in fp16, kohya's usual save precision: half the size
# (≈ 150 MB instead of ≈ 300 MB at rank 128) and what A1111, diffusers and kohya read; the
# checkpoints a resume needs stay float32 (AdamW continues from the exact weights).
FINAL_SAVE_DTYPE = torch.float16

PART_UNET = "unet"
PART_TEXT_ENCODER = "text_encoder"

# Marks of the PEFT / diffusers LoRA layouts: `unet.…to_q.lora_A.weight`,
# `…proj_in.lora.down.weight`, `…processor.to_q_lora.down.weight`, `…lora_linear_layer.down.weight`.
_PEFT_MARKERS = re.compile(
    r"(^|\.)(lora_[AB]|lora_linear_layer|lora_magnitude_vector)\.|[._]lora\.(up|down)\."
)
_PEFT_PREFIXES = ("unet.", "text_encoder.", "base_model.model.", "transformer.")
PEFT_KEYS_MESSAGE = "PEFT/diffusers keys load nothing in A1111; save kohya keys"


class LoRAFormatError(ValueError):
    """A tensor set or file that is not a kohya LoRA we can use; the message names the source."""


@dataclass(frozen=True)
class ModuleLoRA:
    """One module's factors: ΔW = (alpha / rank) * up @ down (1x1 conv factors flattened)."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def is_conv(self) -> bool:
        return self.down.ndim == 4

    @property
    def in_features(self) -> int:
        return int(self.down.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.up.shape[0])

    def delta_weight(
        self, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """ΔW in the base layer's weight shape: [out, in] or [out, in, 1, 1]."""
        up = self.up.to(device=device, dtype=dtype).reshape(self.out_features, self.rank)
        down = self.down.to(device=device, dtype=dtype).reshape(self.rank, self.in_features)
        delta = (up @ down) * self.scale
        return delta[:, :, None, None] if self.is_conv else delta


@dataclass(frozen=True)
class LoRAFile:
    """A kohya LoRA read from disk: raw tensors, string metadata and the modules they form."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    modules: dict[str, ModuleLoRA]


# --- names ---------------------------------------------------------------------------------------


def kohya_module_name(part: str, module_path: str) -> str:
    """kohya name of a layer: `lora_unet_<diffusers path>` or `lora_te_<text_model. path>`.

    transformers 5 flattened CLIPTextModel (paths start with `encoder.`); the file keeps the 4.x
    names (`text_model.encoder.…`) that A1111 and diffusers expect, whatever library made it.
    """
    if part == PART_UNET:
        return UNET_LORA_PREFIX + module_path.replace(".", "_")
    if part == PART_TEXT_ENCODER:
        if not module_path.startswith("text_model."):
            module_path = "text_model." + module_path
        return TEXT_ENCODER_LORA_PREFIX + module_path.replace(".", "_")
    raise ValueError(f"unknown model part {part!r} (expected {PART_UNET!r}/{PART_TEXT_ENCODER!r})")


def module_part(name: str) -> str:
    """"unet" or "text_encoder" from a kohya module name's prefix."""
    if name.startswith(UNET_LORA_PREFIX):
        return PART_UNET
    if name.startswith(TEXT_ENCODER_LORA_PREFIX):
        return PART_TEXT_ENCODER
    raise LoRAFormatError(f"{name!r} is not an SD1.x kohya LoRA module name (lora_unet_/lora_te_)")


# --- tensors -> modules --------------------------------------------------------------------------


def group_modules(tensors: Mapping[str, torch.Tensor], *, source: str) -> dict[str, ModuleLoRA]:
    """The modules a kohya tensor set forms; `LoRAFormatError` naming `source` if it is not one.

    A module without `.alpha` gets alpha = rank (scale 1), as A1111 and kohya read such files.
    """
    if not tensors:
        raise LoRAFormatError(f"{source}: not a LoRA (no tensors)")
    keys = list(tensors)
    peft_key = next((k for k in keys if _is_peft_key(k)), None)
    if peft_key is not None:
        raise LoRAFormatError(f"{source}: {PEFT_KEYS_MESSAGE} (found {peft_key!r})")
    if not any(k.endswith((LORA_DOWN_SUFFIX, LORA_UP_SUFFIX)) for k in keys):
        raise LoRAFormatError(
            f"{source}: not a LoRA (no '*.lora_down.weight' keys; first keys: {keys[:3]})"
        )
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, field = key.partition(".")
        if field not in ("lora_down.weight", "lora_up.weight", "alpha"):
            raise LoRAFormatError(
                f"{source}: unsupported key {key!r} (only plain kohya LoRA: "
                "lora_down.weight, lora_up.weight, alpha)"
            )
        try:
            module_part(name)
        except LoRAFormatError as error:
            raise LoRAFormatError(f"{source}: {error}") from None
        factors.setdefault(name, {})[field] = tensor
    return {name: _module_from_factors(name, parts, source) for name, parts in factors.items()}


def _is_peft_key(key: str) -> bool:
    return bool(_PEFT_MARKERS.search(key)) or (key.startswith(_PEFT_PREFIXES) and "lora" in key)


def _module_from_factors(name: str, parts: dict[str, torch.Tensor], source: str) -> ModuleLoRA:
    down, up = parts.get("lora_down.weight"), parts.get("lora_up.weight")
    if down is None or up is None:
        missing = "lora_down.weight" if down is None else "lora_up.weight"
        raise LoRAFormatError(f"{source}: module {name!r} has no {missing}")
    if down.ndim not in (2, 4) or up.ndim != down.ndim:
        raise LoRAFormatError(
            f"{source}: module {name!r} has down {list(down.shape)} / up {list(up.shape)}: "
            "expected [r, in] / [out, r] or [r, in, 1, 1] / [out, r, 1, 1]"
        )
    if down.ndim == 4 and (tuple(down.shape[2:]) != (1, 1) or tuple(up.shape[2:]) != (1, 1)):
        raise LoRAFormatError(
            f"{source}: module {name!r} is a {tuple(down.shape[2:])} conv LoRA (LoCon); only 1x1 "
            "convs are supported"
        )
    if up.shape[1] != down.shape[0]:
        raise LoRAFormatError(
            f"{source}: module {name!r} ranks differ: down {list(down.shape)}, up {list(up.shape)}"
        )
    alpha_tensor = parts.get("alpha")
    if alpha_tensor is None:
        alpha = float(down.shape[0])
    elif alpha_tensor.numel() != 1:
        shape = list(alpha_tensor.shape)
        raise LoRAFormatError(f"{source}: module {name!r} alpha has shape {shape}")
    else:
        alpha = float(alpha_tensor.reshape(()).item())
    return ModuleLoRA(down=down, up=up, alpha=alpha)


def modules_to_tensors(modules: Mapping[str, ModuleLoRA]) -> dict[str, torch.Tensor]:
    """The kohya tensor set of `modules` (alpha as a 0-dim float32 tensor)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors[name + LORA_DOWN_SUFFIX] = module.down
        tensors[name + LORA_UP_SUFFIX] = module.up
        tensors[name + ALPHA_SUFFIX] = torch.tensor(float(module.alpha), dtype=torch.float32)
    return tensors


# --- files ---------------------------------------------------------------------------------------


def save_lora(
    path: str | PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
    *, dtype: torch.dtype | None = None,
) -> Path:
    """Write a kohya LoRA atomically (a crash keeps the previous file); returns the path.

    `dtype` casts the factors (FINAL_SAVE_DTYPE for a user's final LoRA); `.alpha` stays float32.

    Refuses tensors that are not a kohya LoRA (PEFT keys would load nothing in A1111) and
    metadata values that are not strings (safetensors stores only strings; saying so here beats a
    TypeError deep inside the library).
    """
    target = Path(path)
    group_modules(tensors, source=str(target))
    bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(v, str)}
    if bad or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"LoRA metadata must map strings to strings; not strings: {bad}")
    cpu_tensors = {
        k: v.detach().to("cpu", dtype=None if k.endswith(ALPHA_SUFFIX) else dtype).contiguous()
        for k, v in tensors.items()
    }
    strings = dict(metadata)
    atomic_save_with(target, lambda tmp: save_file(cpu_tensors, str(tmp), metadata=strings))
    return target


def load_lora(path: str | PathLike[str]) -> LoRAFile:
    """Read and check a kohya LoRA file; `LoRAFormatError` names the file and what is wrong."""
    source = _existing(path)
    try:
        with safe_open(str(source), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # the Rust reader raises its own class; any failure means unusable
        raise _unreadable(source, error) from error
    modules = group_modules(tensors, source=str(source))
    return LoRAFile(path=source, tensors=tensors, metadata=metadata, modules=modules)


def read_lora_metadata(path: str | PathLike[str]) -> dict[str, str]:
    """A LoRA file's metadata from its header alone (no tensor is read: cheap on any size)."""
    source = _existing(path)
    try:
        with safe_open(str(source), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # the Rust reader raises its own class
        raise _unreadable(source, error) from error


def _existing(path: str | PathLike[str]) -> Path:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"LoRA file not found: {source}")
    return source


def _unreadable(source: Path, error: Exception) -> LoRAFormatError:
    return LoRAFormatError(
        f"{source}: not a readable safetensors file (truncated or corrupt?): {error}")


def build_metadata(
    *,
    user_id: str,
    rank: int,
    alpha: float,
    base_model_hash: str,
    steps: int,
    score: float | None,
    output_name: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The file's metadata, all strings: kohya's `ss_*`, `modelspec.*` and our `easyphoto_*`.

    `ss_output_name` is the alias A1111's Lora tab shows. `extra` adds keys (values str()-ed) but
    may not overwrite the ones set here.
    """
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(int(rank)),
        "ss_network_alpha": str(float(alpha)),  # kohya writes str(float): "64.0"
        "ss_base_model_version": "sd_v1",
        "ss_output_name": output_name,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "stable-diffusion-v1/lora",
        "modelspec.title": output_name,
        "easyphoto_user_id": validate_user_id(user_id),
        "easyphoto_base_model_hash": base_model_hash,
        "easyphoto_steps": str(int(steps)),
        "easyphoto_score": "" if score is None else repr(float(score)),
        "easyphoto_version": __version__,
    }
    for key, value in (extra or {}).items():
        if key in metadata:
            raise ValueError(f"extra metadata may not overwrite {key!r}")
        metadata[str(key)] = str(value)
    return metadata


# --- ΔW fusion -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusionReport:
    """How close the re-factorised fusion is to the weighted average of the ΔWs.

    Errors are relative Frobenius norms ‖ΔW_fused − ΔW_avg‖ / ‖ΔW_avg‖ (0 where ΔW_avg = 0);
    `relative_error` is over all modules together (their squared norms summed).
    """

    rank: int
    alpha: float
    weights: tuple[float, ...]
    module_errors: dict[str, float]
    relative_error: float


def fuse_loras(
    loras: Sequence[Mapping[str, torch.Tensor] | LoRAFile],
    weights: Sequence[float] | None = None,
    *,
    rank: int,
    alpha: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, torch.Tensor], FusionReport]:
    """Weighted average of the LoRAs' ΔW per module, re-factorised to `rank` by truncated SVD.

    - `weights` (default equal) are normalised to sum 1; a module absent from a LoRA counts as
      ΔW = 0 there.
    - The SVD runs in float32 on `device`; √S goes to both factors. Each output module has exactly
      `rank` (zero-padded where a layer is narrower). Its alpha is `alpha`; by default the one alpha
      all inputs share (so the file's `ss_network_alpha` stays true), else `rank` (scale 1). The
      factors are multiplied by √(rank/alpha), so (alpha/rank)·up@down is the truncated ΔW.
    - The error reported per module is the discarded singular-value energy, which is exactly
      ‖ΔW_fused − ΔW_avg‖_F / ‖ΔW_avg‖_F; it is ~0 when `rank` ≥ the summed ranks of the inputs.
    Returns the fused kohya tensors (float32, CPU) and the report.
    """
    if not loras:
        raise ValueError("fuse_loras needs at least one LoRA")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    norm_weights = _normalised_weights(weights, len(loras))
    grouped = [_as_modules(lora, index) for index, lora in enumerate(loras)]
    if alpha is None:
        input_alphas = {m.alpha for modules in grouped for m in modules.values()}
        alpha = input_alphas.pop() if len(input_alphas) == 1 else rank
    out_alpha = float(alpha)
    if out_alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    names = sorted(set().union(*grouped))
    fused: dict[str, ModuleLoRA] = {}
    errors: dict[str, float] = {}
    energy_total = energy_lost = 0.0
    batches: dict[tuple, list[tuple[str, list[tuple[float, ModuleLoRA]]]]] = {}
    for name in names:
        terms = [(w, modules[name]) for w, modules in zip(norm_weights, grouped, strict=True)
                 if name in modules]
        batches.setdefault(_batch_key(name, terms), []).append((name, terms))
    for batch in batches.values():
        for name, (module, total, lost) in _fuse_batch(
            batch, rank=rank, alpha=out_alpha, device=torch.device(device)
        ).items():
            fused[name] = module
            errors[name] = math.sqrt(lost / total) if total > 0 else 0.0
            energy_total += total
            energy_lost += lost
    fused = {name: fused[name] for name in names}
    overall = math.sqrt(energy_lost / energy_total) if energy_total > 0 else 0.0
    report = FusionReport(rank, out_alpha, tuple(norm_weights), errors, overall)
    return modules_to_tensors(fused), report


def _normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} LoRAs")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fusion weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _as_modules(lora: Mapping[str, torch.Tensor] | LoRAFile, index: int) -> dict[str, ModuleLoRA]:
    if isinstance(lora, LoRAFile):
        return lora.modules
    return group_modules(lora, source=f"LoRA #{index} of the fusion")


def _batch_key(name: str, terms: list[tuple[float, ModuleLoRA]]) -> tuple:
    """Modules fused in one batched QR/SVD: same shapes and the same input ranks (SD1.5 at rank
    128 has 264 modules but a dozen keys; one decomposition per module was launch-bound)."""
    first = terms[0][1]
    for _, module in terms:
        if (module.out_features, module.in_features, module.is_conv) != (
            first.out_features, first.in_features, first.is_conv
        ):
            raise LoRAFormatError(f"module {name!r} has different shapes in the fused LoRAs")
    return (first.out_features, first.in_features, first.is_conv,
            tuple(module.rank for _, module in terms))


def _fuse_batch(
    batch: list[tuple[str, list[tuple[float, ModuleLoRA]]]],
    *,
    rank: int,
    alpha: float,
    device: torch.device,
) -> dict[str, tuple[ModuleLoRA, float, float]]:
    """Fused factors of modules of one batch key, each with ‖ΔW_avg‖² and the energy dropped."""
    first = batch[0][1][0][1]
    out_features, in_features = first.out_features, first.in_features
    left = torch.stack([torch.cat([
        module.up.to(device=device, dtype=torch.float32).reshape(out_features, module.rank)
        * (weight * module.scale) for weight, module in terms], dim=1) for _, terms in batch])
    right = torch.stack([torch.cat([
        module.down.to(device=device, dtype=torch.float32).reshape(module.rank, in_features)
        for _, module in terms], dim=0) for _, terms in batch])
    u, vh, singular = _svd_of_products(left, right)
    keep = min(rank, singular.shape[-1])
    # (alpha/rank)·up@down = U_k S_k V_k: each factor gets √(S_k · rank/alpha).
    root = (singular[:, :keep] * (rank / alpha)).sqrt()
    up = torch.zeros(len(batch), out_features, rank, dtype=torch.float32, device=device)
    down = torch.zeros(len(batch), rank, in_features, dtype=torch.float32, device=device)
    up[:, :, :keep] = u[:, :, :keep] * root[:, None, :]
    down[:, :keep] = root[:, :, None] * vh[:, :keep]
    if first.is_conv:
        up, down = up[..., None, None], down[..., None, None]
    energy = singular.double().square()
    totals, lost = energy.sum(-1).tolist(), energy[:, keep:].sum(-1).tolist()
    up, down = up.cpu(), down.cpu()
    return {name: (ModuleLoRA(down=down[i].contiguous(), up=up[i].contiguous(), alpha=alpha),
                   totals[i], lost[i])
            for i, (name, _) in enumerate(batch)}


def _svd_of_products(
    left: torch.Tensor, right: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """U, Vh, S of each left[b] @ right[b] (out × R times R × in), without forming the dense
    product when it is low-rank: when R is below both sides, QR of left and rightᵀ reduces the
    SVD to an R × R core (exact, and much cheaper than a dense 10240 × 1280 SVD on a CPU).
    The rows of left are Σ's terms w_i s_i up_i side by side, those of right the down_i."""
    total_rank = left.shape[-1]
    if total_rank >= min(left.shape[-2], right.shape[-1]):
        u, s, vh = torch.linalg.svd(left @ right, full_matrices=False)
        return u, vh, s
    q_left, r_left = torch.linalg.qr(left)
    q_right, r_right = torch.linalg.qr(right.transpose(-1, -2))
    u_core, s, vh_core = torch.linalg.svd(r_left @ r_right.transpose(-1, -2))
    return q_left @ u_core, vh_core @ q_right.transpose(-1, -2), s
