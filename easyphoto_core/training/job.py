"""The training job file (`python -m easyphoto_train --config JOB.json`), written by the core."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core.params import TrainParams, params_to_dict, parse_params
from easyphoto_core.workspace import UserFiles, atomic_write_json, validate_user_id


class JobError(ValueError):
    """The job file is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class TrainJob:
    user_id: str
    base_model: Path  # single-file SD1.5 checkpoint (the one the host has loaded)
    dataset_dir: Path  # written by easyphoto_core.preprocess
    output_dir: Path  # the user's folder: checkpoints/, validation/, the LoRA, the report
    params: TrainParams
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    lora_copy_dirs: tuple[Path, ...] = ()  # e.g. the host's Lora folder
    cancel_file: Path | None = None
    resume: bool = False
    weights_dir: Path | None = None  # face models for validation (None = the default folders)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def validation_dir(self) -> Path:
        return self.output_dir / "validation"

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "base_model": str(self.base_model),
            "dataset_dir": str(self.dataset_dir),
            "output_dir": str(self.output_dir),
            "params": params_to_dict(self.params),
            "device": self.device,
            "lora_copy_dirs": [str(p) for p in self.lora_copy_dirs],
            "cancel_file": str(self.cancel_file) if self.cancel_file else None,
            "resume": self.resume,
            "weights_dir": str(self.weights_dir) if self.weights_dir else None,
            "extra": self.extra,
        }

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


def load_job(path: Path) -> TrainJob:
    """Read and validate a job file; every problem is a JobError naming the file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JobError(f"Cannot read training job {path}: {error}") from None
    if not isinstance(raw, dict):
        raise JobError(f"Training job {path} must be a JSON object.")
    missing = [key for key in ("user_id", "base_model", "dataset_dir", "output_dir") if key not in raw]
    if missing:
        raise JobError(f"Training job {path} lacks {', '.join(missing)}.")
    try:
        return TrainJob(
            user_id=validate_user_id(raw["user_id"]),
            base_model=Path(raw["base_model"]),
            dataset_dir=Path(raw["dataset_dir"]),
            output_dir=Path(raw["output_dir"]),
            params=parse_params(TrainParams, raw.get("params") or {}),
            device=str(raw.get("device") or "auto"),
            lora_copy_dirs=tuple(Path(p) for p in raw.get("lora_copy_dirs") or ()),
            cancel_file=Path(raw["cancel_file"]) if raw.get("cancel_file") else None,
            resume=bool(raw.get("resume", False)),
            weights_dir=Path(raw["weights_dir"]) if raw.get("weights_dir") else None,
            extra=dict(raw.get("extra") or {}),
        )
    except ValueError as error:  # UserIdError, ParamsError
        raise JobError(f"Training job {path}: {error}") from None


def job_for_user(user: UserFiles, *, base_model: Path, params: TrainParams, device: str = "auto",
                 lora_copy_dirs: tuple[Path, ...] = (), resume: bool = False,
                 weights_dir: Path | None = None) -> TrainJob:
    """The job that trains `user` from their preprocessed dataset (preprocess runs first)."""
    return TrainJob(
        user_id=user.user_id, base_model=Path(base_model), dataset_dir=user.dataset_dir,
        output_dir=user.root, params=params, device=device, lora_copy_dirs=lora_copy_dirs,
        cancel_file=user.jobs_dir / "train.cancel", resume=resume, weights_dir=weights_dir,
    )
