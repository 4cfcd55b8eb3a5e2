"""Settings → EasyPhoto: the options that change what the studio does, and where they are read.

- `easyphoto_workspace`: the workspace folder (host.workspace_root, read when the studio starts).
- `easyphoto_user_id_slots`: how many user-id dropdowns the Generate tab offers (1-5).
- `easyphoto_face_backend`: auto / dlib / yunet / insightface (read per job: studio.face_models).
- `easyphoto_keep_face_models`: keep them loaded between jobs (read per job).
- `easyphoto_save_folder`: where portraits are saved as well (empty = the host's img2img folder,
  its filename pattern and format; read per portrait).
- `easyphoto_language`: the language of messages and API errors (auto = the host's
  localization; the host translates the tab's labels itself from localizations/zh_CN.json).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from modules import shared

from easyphoto_core.i18n import normalize_language, set_default_language
from easyphoto_webui import host

log = logging.getLogger(__name__)
MAX_USER_ID_SLOTS = 5
# the choices of easyphoto_core.faces.chooser.FACE_BACKENDS (a test keeps them equal), spelled
# here so that loading the settings does not import the face backends
FACE_BACKENDS = ("auto", "dlib", "yunet", "insightface")

# key -> (default, label, kind, component args); the workspace option is host.add_settings'
OPTIONS: dict[str, tuple[Any, str, str, dict[str, Any]]] = {
    "easyphoto_user_id_slots": (MAX_USER_ID_SLOTS, "Number of user-id slots (faces painted "
                                "at once)", "slider", {"minimum": 1, "maximum": 5, "step": 1}),
    "easyphoto_face_backend": ("auto", "Face backend (auto = the best one installed)", "radio",
                               {"choices": list(FACE_BACKENDS)}),
    "easyphoto_keep_face_models": (True, "Keep face models loaded between jobs", "checkbox", {}),
    "easyphoto_save_folder": ("", "Save portraits to this folder (empty = the img2img output "
                              "folder)", "textbox", {}),
    "easyphoto_language": ("auto", "Language of EasyPhoto's messages (auto = the WebUI's "
                           "localization)", "radio", {"choices": ["auto", "en", "zh"]}),
}


def add_options() -> None:
    """Register the options above on the host's Settings page."""
    import gradio as gr

    components = {"slider": gr.Slider, "radio": gr.Radio, "checkbox": None, "textbox": None}
    for key, (default, label, kind, args) in OPTIONS.items():
        component = components[kind]
        host.add_option(key, shared.OptionInfo(default, label, component, args or None))


def _opt(key: str) -> Any:
    return getattr(shared.opts, key, OPTIONS[key][0])


def studio_options() -> dict[str, Any]:
    """The options the core reads per job (StudioSettings.options); applies the language too."""
    apply_language()
    return {"face_backend": _opt("easyphoto_face_backend"),
            "keep_face_models": bool(_opt("easyphoto_keep_face_models")),
            "user_id_slots": user_id_slots()}


def user_id_slots() -> int:
    return max(1, min(MAX_USER_ID_SLOTS, int(_opt("easyphoto_user_id_slots"))))


def apply_language() -> str:
    chosen = _opt("easyphoto_language")
    if chosen == "auto":
        chosen = normalize_language(getattr(shared.opts, "localization", "") or "") or "en"
    return set_default_language(chosen)


def save_folder() -> Path:
    """Settings → EasyPhoto's save folder, else where the host saves an img2img result: its
    "Output directory for images" when set, else the img2img one (A1111's img2img.py order)."""
    configured = _opt("easyphoto_save_folder")
    if configured:
        return Path(configured)
    folder = getattr(shared.opts, "outdir_samples", "") or getattr(
        shared.opts, "outdir_img2img_samples", "")
    return Path(folder or "outputs/img2img-images")


def save_portrait(image: Any, text: str, params: Any) -> Path | None:
    """Save like the host saves an img2img result: its `images.save_image` (filename pattern,
    format, the `parameters` infotext PNG Info reads) into `save_folder()`."""
    import numpy as np
    from PIL import Image

    try:
        images = importlib.import_module("modules.images")
    except ImportError as error:  # a host without it: the workspace copy is still written
        log.warning("EasyPhoto: the host cannot save images (%s); the portrait is in the "
                    "workspace only", error)
        return None
    from easyphoto_core.infotext import parse

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    seed = parse(text).get("Seed")  # the seed used (params may say -1 = random)
    fullfn, _ = images.save_image(
        picture, str(save_folder()), "", seed=seed, prompt=getattr(params, "prompt", ""),
        extension=getattr(shared.opts, "samples_format", "png") or "png", info=text)
    return Path(fullfn)
