"""The training job file (`python -m easyphoto_train --config JOB.json`), written by the core.

`parse_config` is the one schema of that file: unknown fields, wrong types, a device that is not
auto/cpu/mps/cuda[:N], Lora folders that are not absolute folder paths, or (with
"workspace") an output, dataset or cancel path outside the workspace are each a
TrainerConfigError naming the field; the trainer answers them with exit code 2 and a `bad_config` event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core.params import TrainParams, params_to_dict, parse_params
from easyphoto_core.workspace import (
    DatasetFiles,
    UserFiles,
    atomic_write_json,
    validate_user_id,
)


class TrainerConfigError(ValueError):
    """The job file is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class TrainerConfig:
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
    workspace: Path | None = None  # when set, every path the run writes must be inside it
    not_before: float | None = None  # a cancel file older than this (a stale one) is ignored
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_files(self) -> UserFiles:
        """What the run writes: the user's layout rooted at `output_dir` (a staging folder)."""
        return UserFiles(self.user_id, self.output_dir)

    @property
    def dataset(self) -> DatasetFiles:
        return DatasetFiles(self.dataset_dir)

    @property
    def checkpoints_dir(self) -> Path:
        return self.user_files.checkpoints_dir

    @property
    def validation_dir(self) -> Path:
        return self.user_files.validation_dir

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
            "workspace": str(self.workspace) if self.workspace else None,
            "not_before": self.not_before,
            "extra": self.extra,
        }

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")
CONFIG_FIELDS = ("user_id", "base_model", "dataset_dir", "output_dir", "params", "device",
              "lora_copy_dirs", "cancel_file", "resume", "weights_dir", "workspace",
              "not_before", "extra")


def load_config(path: Path) -> TrainerConfig:
    """Read and check a job file against one schema (types, ranges, where paths may point);
    every problem is a TrainerConfigError naming the file and the field."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainerConfigError(f"Cannot read the training config {path}: {error}") from None
    try:
        return parse_config(raw)
    except TrainerConfigError as error:
        raise TrainerConfigError(f"Training config {path}: {error}") from None


def parse_config(raw: Any) -> TrainerConfig:
    if not isinstance(raw, dict):
        raise TrainerConfigError("must be a JSON object.")
    unknown = sorted(set(raw) - set(CONFIG_FIELDS))
    if unknown:
        raise TrainerConfigError(f"unknown field {unknown[0]!r} (the fields are "
                                 f"{', '.join(CONFIG_FIELDS)}).")
    missing = [key for key in ("user_id", "base_model", "dataset_dir", "output_dir")
               if raw.get(key) is None]
    if missing:
        raise TrainerConfigError(f"field {missing[0]!r} is missing.")
    try:
        user_id = validate_user_id(raw["user_id"])
    except ValueError as error:
        raise TrainerConfigError(f"field 'user_id': {error}") from None
    workspace = _dir_field(raw, "workspace", must_exist=True)
    output_dir = _path_field(raw, "output_dir", absolute=True)
    dataset_dir = _dir_field(raw, "dataset_dir", must_exist=True)
    cancel_file = _path_field(raw, "cancel_file", absolute=True)
    _inside("output_dir", output_dir, workspace, "workspace")
    _inside("dataset_dir", dataset_dir, workspace, "workspace")
    _inside("cancel_file", cancel_file, workspace, "workspace")
    base_model = _path_field(raw, "base_model")
    if not base_model.is_file():
        raise TrainerConfigError(f"field 'base_model': {base_model} is not a file.")
    return TrainerConfig(
        user_id=user_id, base_model=base_model, dataset_dir=dataset_dir, output_dir=output_dir,
        params=_params_field(raw.get("params")), device=_device_field(raw.get("device", "auto")),
        lora_copy_dirs=_lora_dirs_field(raw.get("lora_copy_dirs", [])), cancel_file=cancel_file,
        resume=_typed(raw, "resume", bool, False, "true or false"),
        weights_dir=_dir_field(raw, "weights_dir", must_exist=True), workspace=workspace,
        not_before=_number_field(raw, "not_before"),
        extra=_typed(raw, "extra", dict, {}, "an object"),
    )


def _typed(raw: dict[str, Any], name: str, kind: type, default: Any, words: str) -> Any:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise TrainerConfigError(f"field {name!r} must be {words}, got {_shown(value)}.")
    return value


def _shown(value: Any) -> str:
    kind = {str: "text", bool: "true/false", int: "a number", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
    return f"{kind} {json.dumps(value)[:60]}"


def _path_field(raw: dict[str, Any], name: str, *, absolute: bool = False) -> Path | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise TrainerConfigError(f"field {name!r} must be a path (text), got {_shown(value)}.")
    path = Path(value).expanduser()
    if absolute and not path.is_absolute():
        raise TrainerConfigError(f"field {name!r} must be an absolute path, got {value!r}.")
    return path.resolve()


def _dir_field(raw: dict[str, Any], name: str, *, must_exist: bool) -> Path | None:
    path = _path_field(raw, name)
    if path is not None and must_exist and not path.is_dir():
        raise TrainerConfigError(f"field {name!r}: {path} is not a folder.")
    return path


def _inside(name: str, path: Path | None, root: Path | None, root_name: str) -> None:
    if path is None or root is None:
        return
    if path != root and root not in path.parents:
        raise TrainerConfigError(f"field {name!r}: {path} is outside the {root_name} ({root}).")


def _params_field(value: Any) -> TrainParams:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise TrainerConfigError(f"field 'params' must be an object, got {_shown(value)}.")
    try:
        return parse_params(TrainParams, value)
    except ValueError as error:
        raise TrainerConfigError(f"field 'params': {error}") from None


def _device_field(value: Any) -> str:
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise TrainerConfigError(f"field 'device' must be auto, cpu, mps, cuda or cuda:N, got "
                       f"{_shown(value)}.")
    return value


def _lora_dirs_field(value: Any) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TrainerConfigError(f"field 'lora_copy_dirs' must be a list of folders, got "
                                 f"{_shown(value)}.")
    folders = []
    for item in value:
        path = Path(item).expanduser()
        if not path.is_absolute() or (path.exists() and not path.is_dir()):
            raise TrainerConfigError(f"field 'lora_copy_dirs': {item!r} must be a folder given "
                                     "by an absolute path.")
        folders.append(path.resolve())
    return tuple(folders)


def _number_field(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrainerConfigError(f"field {name!r} must be a number, got {_shown(value)}.")
    return float(value)


def config_for_user(user: UserFiles, *, base_model: Path, params: TrainParams, device: str = "auto",
                 lora_copy_dirs: tuple[Path, ...] = (), resume: bool = False,
                 weights_dir: Path | None = None, workspace: Path | None = None,
                 not_before: float | None = None) -> TrainerConfig:
    """The job that trains `user` from their preprocessed dataset (preprocess runs first)."""
    return TrainerConfig(
        user_id=user.user_id, base_model=Path(base_model), dataset_dir=user.dataset_dir,
        output_dir=user.root, params=params, device=device, lora_copy_dirs=lora_copy_dirs,
        cancel_file=user.jobs_dir / "train.cancel", resume=resume, weights_dir=weights_dir,
        workspace=workspace, not_before=not_before,
    )
