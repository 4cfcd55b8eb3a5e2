"""Where a user id's files live, user id validation, and atomic writes.

A user id becomes a folder name, a LoRA file stem and a `<lora:...>` prompt tag, so it is
validated before anything touches the disk. Every file that matters is written to a temp file in
the same folder and renamed over the old one, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
LORA_PREFIX = "easyphoto_"  # LoRA file stem = prefix + user id, so our files are easy to spot
FILE_MODE = 0o644  # mkstemp makes 0600 files; the host (another user, a web server) must read them
# Names Windows reserves for devices in every folder ("CON", "nul", "COM1"...): such a folder
# cannot be created there, and a workspace may move between systems.
WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{kind}{n}" for kind in ("COM", "LPT") for n in range(1, 10)])
STAGING_PREFIX = ".train-"  # a re-training builds everything in <user>/.train-<job>/ first
COMMIT_MARKER = ".commit"


class UserIdError(ValueError):
    """A user id that cannot be used; the message says what is wrong and what is allowed."""


def validate_user_id(user_id: object) -> str:
    """Return `user_id` if it is 1-64 letters, digits, '_' or '-'; raise UserIdError otherwise."""
    if not isinstance(user_id, str):
        raise UserIdError(f"User id must be text, got {type(user_id).__name__}.")
    if USER_ID_PATTERN.fullmatch(user_id):
        if user_id.upper() in WINDOWS_DEVICE_NAMES:
            raise UserIdError(f"User id {user_id!r} is a name Windows reserves for a device "
                              "(CON, PRN, AUX, NUL, COM1-9, LPT1-9): pick another id.")
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
class DatasetFiles:
    """A preprocessed dataset's files (written by preprocess; read by training and generation)."""

    root: Path

    @property
    def index(self) -> Path:  # one JSON line per training crop: file, mask, face box, caption
        return self.root / "metadata.jsonl"

    @property
    def embeddings(self) -> Path:  # the kept photos' face embeddings (identity scores)
        return self.root / "embeddings.npy"

    @property
    def reference_photo(self) -> Path:  # the photo preprocess chose for face fusion
        return self.root / "reference.png"

    @property
    def report(self) -> Path:  # every photo kept or dropped, and why
        return self.root / "report.json"


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
    def dataset(self) -> DatasetFiles:
        return DatasetFiles(self.dataset_dir)

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
        return self.dataset.report

    @property
    def training_report(self) -> Path:
        return self.root / "training_report.json"

    def is_trained(self) -> bool:
        return self.lora_file.is_file() and self.reference_photo.is_file()

    def staging(self, job_id: str) -> UserFiles:
        """Where a training builds this user's next dataset, checkpoints and LoRA, beside the
        current ones (swapped in by `commit_training` only when it succeeds)."""
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,40}", job_id):
            raise ValueError(f"bad staging name {job_id!r}")
        return UserFiles(self.user_id, self.root / f"{STAGING_PREFIX}{job_id}")

    def trained_items(self) -> tuple[str, ...]:
        """What a training produces, as names inside the user's folder; a commit replaces all of
        them together (one left from the previous training would not match the new LoRA)."""
        return tuple(path.name for path in (
            self.dataset_dir, self.checkpoints_dir, self.validation_dir, self.lora_file,
            self.reference_photo, self.face_id_image, self.training_report))


class Workspace:
    """The folder holding every user id's files: `<root>/users/<user_id>/...`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def users_dir(self) -> Path:
        return self.root / "users"

    def user(self, user_id: str) -> UserFiles:
        return UserFiles(validate_user_id(user_id), self.users_dir / user_id)

    def new_user(self, user_id: str) -> UserFiles:
        """`user(user_id)` for a training: refuses an id that differs only by case from an
        existing one (on Windows and macOS both would be one folder)."""
        user = self.user(user_id)
        twin = self.case_twin(user.user_id)
        if twin is not None:
            raise UserIdError(f"User id {user_id!r} differs only by case from the existing user "
                              f"{twin!r} (on Windows and macOS they would be one folder): use "
                              f"{twin!r} to re-train that user, or pick another id.")
        return user

    def case_twin(self, user_id: str) -> str | None:
        """An existing user id equal to `user_id` ignoring case but spelled differently."""
        if not self.users_dir.is_dir():
            return None
        for path in self.users_dir.iterdir():
            if path.name.lower() == user_id.lower() and path.name != user_id:
                return path.name
        return None

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


# --- transactional re-training ------------------------------------------------------------------


def commit_training(user: UserFiles, staging: UserFiles) -> None:
    """Swap a finished training's files (in `staging`) in place of the user's current ones.

    A marker listing what the new training has is written first; from then on the swap only
    goes forward, and `recover_commits` finishes it after a crash. Before the marker, the current
    files are untouched whatever happens.
    """
    present = [name for name in user.trained_items() if (staging.root / name).exists()]
    atomic_write_json(staging.root / COMMIT_MARKER, {"present": present})
    _finish_commit(user, staging.root)


def recover_commits(user: UserFiles) -> bool:
    """Finish a commit a crash interrupted (True if there was one)."""
    found = False
    if user.root.is_dir():
        for staging in sorted(user.root.glob(f"{STAGING_PREFIX}*")):
            if (staging / COMMIT_MARKER).is_file():
                _finish_commit(user, staging)
                found = True
    return found


def discard_staging(user: UserFiles, keep: str | None = None) -> None:
    """Remove staging folders of older trainings of `user` (all but `keep`)."""
    if user.root.is_dir():
        for staging in user.root.glob(f"{STAGING_PREFIX}*"):
            if staging.name != keep:
                shutil.rmtree(staging, ignore_errors=True)


def _finish_commit(user: UserFiles, staging: Path) -> None:
    present = set(json.loads((staging / COMMIT_MARKER).read_text(encoding="utf-8"))["present"])
    trash = user.root / f".old-{staging.name}"
    trash.mkdir(exist_ok=True)
    for name in user.trained_items():
        new, current = staging / name, user.root / name
        if name in present and not new.exists():
            continue  # moved in before the crash
        if current.exists() or current.is_symlink():
            parked = trash / name
            if parked.exists():
                _remove_path(parked)
            os.replace(current, parked)
        if name in present:
            os.replace(new, current)
    (staging / COMMIT_MARKER).unlink()
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
