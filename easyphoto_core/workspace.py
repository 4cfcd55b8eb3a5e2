"""Where a user id's files live, user id validation, and atomic writes.

A user id becomes a folder name, a LoRA file stem and a `<lora:...>` prompt tag, so it is
validated before anything touches the disk. Every file that matters is written to a temp file in
the same folder and renamed over the old one, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
LORA_PREFIX = "easyphoto_"
FILE_MODE = 0o644  # mkstemp makes 0600 files; the host (another user, a web server) must read them  # LoRA file stem = prefix + user id, so our files are easy to spot


class UserIdError(ValueError):
    """A user id that cannot be used; the message says what is wrong and what is allowed."""


def validate_user_id(user_id: object) -> str:
    """Return `user_id` if it is 1-64 letters, digits, '_' or '-'; raise UserIdError otherwise."""
    if not isinstance(user_id, str):
        raise UserIdError(f"User id must be text, got {type(user_id).__name__}.")
    if USER_ID_PATTERN.fullmatch(user_id):
        return user_id
    if not user_id:
        problem = "is empty"
    elif len(user_id) > 64:
        problem = f"is {len(user_id)} characters long (at most 64)"
    else:
        bad = sorted({ch for ch in user_id if not USER_ID_PATTERN.fullmatch(ch)})
        problem = "contains " + ", ".join(repr(ch) for ch in bad)
    raise UserIdError(
        f"User id {user_id!r} {problem}. Use 1-64 letters, digits, '_' or '-' "
        "(it becomes a folder name and a LoRA name)."
    )


@dataclass(frozen=True)
class UserFiles:
    """The paths of one user id's files inside a workspace (nothing is created here)."""

    user_id: str
    root: Path

    @property
    def photos_dir(self) -> Path:
        return self.root / "photos"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def lora_name(self) -> str:
        return LORA_PREFIX + self.user_id

    @property
    def lora_file(self) -> Path:
        return self.root / f"{self.lora_name}.safetensors"

    @property
    def reference_photo(self) -> Path:
        return self.root / "reference.png"

    @property
    def face_id_image(self) -> Path:
        return self.root / "face_id.png"

    @property
    def preprocess_report(self) -> Path:
        return self.dataset_dir / "report.json"

    @property
    def training_report(self) -> Path:
        return self.root / "training_report.json"

    def is_trained(self) -> bool:
        return self.lora_file.is_file() and self.reference_photo.is_file()


class Workspace:
    """The folder holding every user id's files: `<root>/users/<user_id>/...`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def users_dir(self) -> Path:
        return self.root / "users"

    def user(self, user_id: str) -> UserFiles:
        return UserFiles(validate_user_id(user_id), self.users_dir / user_id)

    def user_ids(self) -> list[str]:
        """User ids with a folder in this workspace, sorted; folders with invalid names ignored."""
        if not self.users_dir.is_dir():
            return []
        names = (p.name for p in self.users_dir.iterdir() if p.is_dir())
        return sorted(n for n in names if USER_ID_PATTERN.fullmatch(n))

    def trained_user_ids(self) -> list[str]:
        return [uid for uid in self.user_ids() if self.user(uid).is_trained()]


def default_workspace_root() -> Path:
    """`$EASYPHOTO_WORKSPACE`, else `./easyphoto_workspace` under the current directory."""
    return Path(os.environ.get("EASYPHOTO_WORKSPACE") or "easyphoto_workspace")


# --- atomic writes ------------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_save_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_with(path: str | os.PathLike[str], save: Callable[[Path], None]) -> None:
    """Write `path` atomically through `save(tmp_path)` (our bytes, safetensors, PIL...): the temp
    file sits beside `path`, is fsynced and renamed over it; on any error it is removed and
    `path` keeps its old content."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    os.chmod(tmp_name, FILE_MODE)
    try:
        save(Path(tmp_name))
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        _remove_quietly(tmp_name)
        raise


def _remove_quietly(path: str | os.PathLike[str]) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
