"""Checkpoints of a run: the LoRA tensors and the optimizer state, each file written atomically.

`step-000100.safetensors` holds the kohya LoRA (loadable as is); `step-000100.optim.safetensors`
holds AdamW's moments, so `--resume` continues where the last good checkpoint stopped. No pickle:
both are safetensors, the step and learning rates in the metadata.

What is kept (at rank 128 a checkpoint LoRA is ~300 MB and its AdamW moments ~600 MB; eight of
each were ~7 GB per user): only the newest checkpoint keeps its optimizer state (resume needs no
other), and after selection only the selected checkpoints' LoRAs stay, without optimizer state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from easyphoto_core.lora_format import save_lora
from easyphoto_core.workspace import atomic_save_with

if TYPE_CHECKING:  # what is read of an optimizer: param_groups and state, as torch.optim has them
    from easyphoto_train.adamw import FusedAdamW

    AdamWLike = torch.optim.AdamW | FusedAdamW

CHECKPOINT_PATTERN = re.compile(r"step-(\d{6})\.safetensors")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    lora_path: Path

    @property
    def optimizer_path(self) -> Path:
        return self.lora_path.with_name(self.lora_path.name.replace(".safetensors",
                                                                     ".optim.safetensors"))


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:06d}.safetensors"


def list_checkpoints(directory: Path) -> list[Checkpoint]:
    """Complete checkpoints (a LoRA file: it is written last, atomically), oldest first."""
    found = []
    for path in sorted(directory.glob("step-*.safetensors")):
        match = CHECKPOINT_PATTERN.fullmatch(path.name)
        if match:
            found.append(Checkpoint(int(match.group(1)), path))
    return found


def drop_older_optimizer_states(directory: Path, newest: Checkpoint) -> None:
    """Only the newest checkpoint's optimizer state is kept: resume starts from it."""
    for checkpoint in list_checkpoints(directory):
        if checkpoint.step != newest.step:
            checkpoint.optimizer_path.unlink(missing_ok=True)


def keep_selected(checkpoints: list[Checkpoint], steps: list[int]) -> None:
    """After selection: the selected checkpoints' LoRAs stay (what the final LoRA came from),
    everything else, optimizer states included, goes."""
    for checkpoint in checkpoints:
        checkpoint.optimizer_path.unlink(missing_ok=True)
        if checkpoint.step not in steps:
            checkpoint.lora_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CheckpointSnapshot:
    """A checkpoint's tensors copied to the CPU: training may go on while it is written."""

    checkpoint: Checkpoint
    lora_tensors: dict[str, torch.Tensor]
    lora_metadata: dict[str, str]
    moments: dict[str, torch.Tensor]
    optimizer_metadata: dict[str, str]

    def write(self) -> None:
        """Optimizer state first, LoRA last; each file atomic."""
        atomic_save_with(self.checkpoint.optimizer_path, lambda tmp: save_file(
            self.moments, str(tmp), metadata=self.optimizer_metadata))
        save_lora(self.checkpoint.lora_path, self.lora_tensors, self.lora_metadata)


class HostStaging:
    """Pinned host memory for a run's checkpoint tensors, allocated at the first checkpoint and
    refilled at each later one (same names, same shapes: bounded by one checkpoint's size).

    Why: copying ~1,600 tensors (rank 128: LoRA factors and AdamW moments, ~0.9 GB) one by one
    into fresh pageable memory took 0.25 s per checkpoint on the H200 with the GPU idle, 2.0 s
    of a default run (bench/train_gpu.py, `checkpoint_snapshots`); into pinned buffers the
    copies are asynchronous and the run waits once per `copy`. The writer must be done with the
    previous checkpoint before the next `copy` (CheckpointWriter.wait)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def copy(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        copies, on_gpu = {}, False
        for name, tensor in tensors.items():
            tensor = tensor.detach()
            if not tensor.is_cuda:
                copies[name] = tensor.clone()
                continue
            buffer = self._buffers.get(name)
            if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                self._buffers[name] = buffer
            copies[name] = buffer.copy_(tensor, non_blocking=True)
            on_gpu = True
        if on_gpu:
            torch.cuda.current_stream().synchronize()
        return copies


def snapshot_checkpoint(directory: Path, step: int, lora_tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str], optimizer: AdamWLike,
                        parameter_names: dict[int, str], staging: HostStaging
                        ) -> CheckpointSnapshot:
    """What the checkpoint of `step` holds, off the device now (into `staging`): the next
    optimizer step changes the weights and moments in place."""
    moments, optimizer_meta = _optimizer_tensors(optimizer, parameter_names)
    optimizer_meta["step"] = str(step)
    # one buffer set for both: kohya keys end in .weight / .alpha, moment keys in .exp_avg(_sq)
    return CheckpointSnapshot(Checkpoint(step, checkpoint_path(directory, step)),
                              staging.copy(lora_tensors), dict(metadata),
                              staging.copy(moments), optimizer_meta)


class CheckpointWriter:
    """Writes checkpoints on one worker thread while training goes on.

    Why: serialising and writing ~0.9 GB (rank 128: LoRA + AdamW moments) took 1.4 s per
    checkpoint on the H200, 11 s of a default run's 124 s, with the GPU idle. One write at a
    time, in order; `wait()` returns when every submitted checkpoint is on disk and raises the
    error that stopped one (a full disk), so a run never selects, resumes from or reports a
    checkpoint that is not complete.
    """

    def __init__(self, on_written: Callable[[Checkpoint], None]) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        self._pending: Future | None = None
        self._on_written = on_written

    def submit(self, snapshot: CheckpointSnapshot) -> Checkpoint:
        self.wait()  # the previous one's error surfaces before more work is queued
        self._pending = self._executor.submit(self._write, snapshot)
        return snapshot.checkpoint

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the write in progress, raising nothing: on the way out of a failed run the
        run's own error is the one to report."""
        self._executor.shutdown(wait=True)

    def _write(self, snapshot: CheckpointSnapshot) -> None:
        snapshot.write()
        drop_older_optimizer_states(snapshot.checkpoint.lora_path.parent, snapshot.checkpoint)
        self._on_written(snapshot.checkpoint)


def _optimizer_tensors(optimizer: AdamWLike, parameter_names: dict[int, str]
                       ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The moments where they are (the caller copies them) and the step counts."""
    tensors: dict[str, torch.Tensor] = {}
    step_counters: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if not state:
                continue
            name = parameter_names[id(parameter)]
            tensors[f"{name}.exp_avg"] = state["exp_avg"].detach().contiguous()
            tensors[f"{name}.exp_avg_sq"] = state["exp_avg_sq"].detach().contiguous()
            step_counters[name] = state["step"]
    # one read for all counters (capturable AdamW keeps them on the GPU: one sync, not 1,600)
    counts = torch.stack([torch.as_tensor(c, dtype=torch.float32)
                          for c in step_counters.values()]).tolist() if step_counters else []
    steps = dict(zip(step_counters, counts, strict=True))
    return tensors, {"adam_steps": json.dumps(steps)}


def load_optimizer_state(checkpoint: Checkpoint, optimizer: AdamWLike,
                         parameter_names: dict[int, str]) -> None:
    """Put AdamW's moments back, matched by parameter name (not by position)."""
    from safetensors import safe_open

    tensors = load_file(str(checkpoint.optimizer_path))
    with safe_open(str(checkpoint.optimizer_path), framework="pt") as handle:
        steps = json.loads(handle.metadata()["adam_steps"])
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = parameter_names[id(parameter)]
            if name not in steps:
                continue
            device = parameter.device
            # capturable AdamW (CUDA graphs) keeps its step counter on the parameter's device
            step_device = device if group.get("capturable") else "cpu"
            optimizer.state[parameter] = {
                "step": torch.tensor(steps[name], dtype=torch.float32, device=step_device),
                "exp_avg": tensors[f"{name}.exp_avg"].to(device),
                "exp_avg_sq": tensors[f"{name}.exp_avg_sq"].to(device),
            }


def read_checkpoint_lora(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint.lora_path))
