"""What a first portrait still needs: the SD1.5 checkpoint, the ControlNet models, a face detector.

One answer for every place that tells the user — the banner above the tab, `GET
/easyphoto/v1/version` (`missing`) and the console at start-up — each item naming the registry
download, or (offline: `EASYPHOTO_OFFLINE=1`) which file to put in which folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from easyphoto_core import weights
from easyphoto_core.i18n import gettext

CONTROLNETS = ("control_v11p_sd15_canny", "control_v11p_sd15_openpose",
               "control_v11f1e_sd15_tile")
CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".ckpt")
FACE_DETECTOR = "face_detection_yunet_2023mar"
BASE_MODEL = "v1-5-pruned-emaonly"


def _controlnet_present(stem: str, folders: list[Path]) -> bool:
    return any(path.suffix in CONTROLNET_SUFFIXES and path.stem.startswith(stem)
               for folder in folders if folder.is_dir() for path in folder.rglob(f"{stem}*"))


def _dlib_available() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("dlib", "face_recognition_models"))


def missing(settings: Any, *, in_host: bool = False) -> list[dict[str, Any]]:
    """Each missing model: what it is, its registry name, file, folder, the command that fetches
    it, and a sentence saying what to do (in the current language)."""
    paths = weights.WeightPaths.standalone(settings.weights_dir)
    offline = weights.is_offline()
    items = []
    base = settings.current_base_model()
    if base is None or not Path(base).is_file():
        items.append(_item("SD1.5 checkpoint", BASE_MODEL, paths, offline, in_host=in_host))
    if settings.controlnet_dirs or not in_host:  # a host's ControlNet folders are its own
        folders = [Path(d) for d in settings.controlnet_dirs] or [paths.controlnet]
        for stem in CONTROLNETS:
            if not _controlnet_present(stem, folders):
                items.append(_item(f"ControlNet {stem.rsplit('_', 1)[-1]}", stem, paths,
                                   offline, folder=folders[0]))
    record = weights.get_record(FACE_DETECTOR)
    if not weights.is_present(record, paths) and not _dlib_available():
        items.append(_item("face detector", FACE_DETECTOR, paths, offline))
    return items


def _item(what: str, name: str, paths: weights.WeightPaths, offline: bool, *,
          folder: Path | None = None, in_host: bool = False) -> dict[str, Any]:
    record = weights.get_record(name)
    folder = folder or paths.folder(record.destination)
    command = f"python -m easyphoto_core download {name}"
    if in_host and name == BASE_MODEL:
        message = gettext("Missing: {what}. Load an SD1.5 checkpoint in the WebUI's checkpoint "
                          "menu (or put {file} into models/Stable-diffusion).",
                          what=gettext(what), file=record.filename)
    elif offline:
        message = gettext("Missing: {what}. No network here: put {file} ({size} MB, from {url}) "
                          "into {folder}.", what=gettext(what), file=record.filename,
                          size=record.size >> 20, url=record.url, folder=folder)
    else:
        message = gettext("Missing: {what}. Download it ({size} MB) with `{command}`, or put "
                          "{file} into {folder}.", what=gettext(what), size=record.size >> 20,
                          command=command, file=record.filename, folder=folder)
    return {"what": what, "name": name, "file": record.filename, "folder": str(folder),
            "size": record.size, "url": record.url, "command": command, "offline": offline,
            "message": message}


def console_lines(items: list[dict[str, Any]]) -> list[str]:
    """The start-up console's lines (nothing when a first portrait has all it needs)."""
    if not items:
        return []
    head = gettext("EasyPhoto: {count} model(s) missing before a first portrait:",
                   count=len(items))
    return [head, *(f"  - {item['message']}" for item in items)]
