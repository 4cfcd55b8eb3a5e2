"""The training job file (`python -m easyphoto_train --config JOB.json`), written by the core.

`TrainerConfig` is the one schema of that file, (de)serialised by the params machinery (a
pydantic model like the params, under pydantic 1.10 and 2): unknown fields, wrong types, a device
that is not auto/cpu/mps/cuda[:N], Lora folders that are not absolute folder paths, or (with
"workspace") an output, dataset or cancel path outside the workspace are each a
TrainerConfigError naming the field; the trainer answers them with exit code 2 and a `bad_config` event.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from easyphoto_core.params import (
    TrainParams,
    params_schema,
    params_to_json,
    parse_params,
    replaced,
)
from easyphoto_core.workspace import (
    DatasetFiles,
    UserFiles,
    atomic_write_json,
    validate_user_id,
)


class TrainerConfigError(ValueError):
    """The config file is unusable; the message names the file and the field."""


class TrainerConfig(BaseModel):
    """What one trainer run does. The types are the file's schema (strict: a string is no list,
    "yes" no boolean), checked by pydantic under 1.10 and 2 alike; `parse_config` adds the rules
    about values and where paths may point. Each field's description is what a bad value is told
    it must be."""

    user_id: StrictStr = Field(..., description="a user id (text)")
    base_model: Path = Field(..., description="a path (text)")  # the SD1.5 file the host loaded
    dataset_dir: Path = Field(..., description="a path (text)")  # written by preprocess
    output_dir: Path = Field(..., description="a path (text)")  # the user's layout (staging)
    params: TrainParams = Field(default_factory=TrainParams, description="an object")
    device: StrictStr = Field("auto", description="auto, cpu, mps, cuda or cuda:N")
    lora_copy_dirs: tuple[Path, ...] = Field((), description="a list of folders")  # host Lora
    cancel_file: Path | None = Field(None, description="a path (text)")
    resume: StrictBool = Field(False, description="true or false")
    weights_dir: Path | None = Field(None, description="a path (text)")  # validation faces
    workspace: Path | None = Field(None, description="a path (text)")  # paths stay inside
    not_before: StrictInt | StrictFloat | None = Field(  # older cancel files are stale
        None, description="a number")
    extra: dict[str, Any] = Field(default_factory=dict, description="an object")

    class Config:  # read by pydantic 1 and (deprecated but supported) pydantic 2
        extra = "forbid"
        frozen = True

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
        return params_to_json(self)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")
MUST_BE = {name: spec["description"]  # English: the message is translated as a whole
           for name, spec in params_schema(TrainerConfig)["properties"].items()}
CONFIG_FIELDS = tuple(MUST_BE)
REQUIRED_FIELDS = ("user_id", "base_model", "dataset_dir", "output_dir")
PATH_FIELDS = ("base_model", "dataset_dir", "output_dir", "cancel_file", "weights_dir",
               "workspace")


def load_config(path: Path) -> TrainerConfig:
    """Read and check a config file (types, ranges, where paths may point); every problem is a
    TrainerConfigError naming the file and the field."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainerConfigError(f"Cannot read the training config {path}: {error}") from None
    try:
        return parse_config(raw)
    except TrainerConfigError as error:
        raise TrainerConfigError(f"Training config {path}: {error}") from None


def parse_config(raw: Any) -> TrainerConfig:
    config = _typed(raw)
    _check_values(config)
    return replaced(config, **{name: getattr(config, name).expanduser().resolve()
                               for name in PATH_FIELDS if getattr(config, name) is not None},
                    lora_copy_dirs=tuple(p.expanduser().resolve() for p in config.lora_copy_dirs))


def _typed(raw: Any) -> TrainerConfig:
    """The file's JSON through the model: unknown, missing and mistyped fields named."""
    if not isinstance(raw, dict):
        raise TrainerConfigError("must be a JSON object.")
    unknown = sorted(set(raw) - set(CONFIG_FIELDS))
    if unknown:
        raise TrainerConfigError(f"unknown field {unknown[0]!r} (the fields are "
                                 f"{', '.join(CONFIG_FIELDS)}).")
    missing = [name for name in REQUIRED_FIELDS if raw.get(name) is None]
    if missing:
        raise TrainerConfigError(f"field {missing[0]!r} is missing.")
    given = {name: value for name, value in raw.items() if value is not None}
    for name in PATH_FIELDS:  # pydantic would read "" as "." and keep a NUL for the OS to refuse
        value = given.get(name)
        if isinstance(value, str) and (not value.strip() or "\0" in value):
            raise TrainerConfigError(f"field {name!r} must be a path (text), got {value!r}.")
    if isinstance(given.get("params"), dict):  # its own messages name the parameter
        try:
            given["params"] = parse_params(TrainParams, given["params"])
        except ValueError as error:
            raise TrainerConfigError(f"field 'params': {error}") from None
    try:
        return TrainerConfig(**given)
    except pydantic.ValidationError as error:
        name = str(error.errors()[0]["loc"][0])
        words = MUST_BE[name]
        raise TrainerConfigError(f"field {name!r} must be {words}, got "
                                 f"{_shown(given.get(name))}.") from None


def _check_values(config: TrainerConfig) -> None:
    """What the types cannot say: a valid id and device, absolute paths, existing inputs, and
    (with a workspace) every path the run writes inside it."""
    try:
        validate_user_id(config.user_id)
    except ValueError as error:
        raise TrainerConfigError(f"field 'user_id': {error}") from None
    if not DEVICE_PATTERN.fullmatch(config.device):
        raise TrainerConfigError(f"field 'device' must be auto, cpu, mps, cuda or cuda:N, got "
                                 f"{_shown(config.device)}.")
    for name in ("output_dir", "cancel_file"):
        path = getattr(config, name)
        if path is not None and not path.expanduser().is_absolute():
            raise TrainerConfigError(f"field {name!r} must be an absolute path, got "
                                     f"{str(path)!r}.")
    for name in ("workspace", "dataset_dir", "weights_dir"):
        path = getattr(config, name)
        if path is not None and not path.expanduser().is_dir():
            raise TrainerConfigError(f"field {name!r}: {path.expanduser().resolve()} is not a "
                                     "folder.")
    for folder in config.lora_copy_dirs:
        path = folder.expanduser()
        if not path.is_absolute() or (path.exists() and not path.is_dir()):
            raise TrainerConfigError(f"field 'lora_copy_dirs': {str(folder)!r} must be a folder "
                                     "given by an absolute path.")
    if config.workspace is not None:
        root = config.workspace.expanduser().resolve()
        for name in ("output_dir", "dataset_dir", "cancel_file"):
            path = getattr(config, name)
            if path is not None:
                _inside(name, path.expanduser().resolve(), root)
    base_model = config.base_model.expanduser().resolve()
    if not base_model.is_file():
        raise TrainerConfigError(f"field 'base_model': {base_model} is not a file.")


def _inside(name: str, path: Path, root: Path) -> None:
    if path != root and root not in path.parents:
        raise TrainerConfigError(f"field {name!r}: {path} is outside the workspace ({root}).")


def _shown(value: Any) -> str:
    kind = {str: "text", bool: "true/false", int: "a number", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
    return f"{kind} {json.dumps(value, default=str)[:60]}"


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
