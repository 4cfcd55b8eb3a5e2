"""Template photos for the Generate tab: the ones that ship with the extension (clear licences,
see models/templates/README.md) and the workspace's own `templates/` folder, where uploads go."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from easyphoto_core import MODELS_DIR
from easyphoto_core.context import StudioContext
from easyphoto_core.workspace import atomic_save_with

SHIPPED_DIR = MODELS_DIR / "templates"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_TEMPLATE_SIDE = 2048  # larger uploads are stored scaled down: generation works on face crops


def templates_dir(context: StudioContext) -> Path:
    return context.workspace.root / "templates"


def list_templates(context: StudioContext) -> list[Path]:
    """Shipped templates first, then the workspace's, each group sorted by name."""
    found = []
    for folder in (SHIPPED_DIR, templates_dir(context)):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return found


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")
    return (stem or "template")[:64]


def add_template(context: StudioContext, source: Path | Image.Image, name: str | None = None
                 ) -> Path:
    """Store an uploaded image (a file, or the template input's image) in the workspace's
    templates folder (as PNG, EXIF orientation applied); a new name when one is taken. Raises
    ValueError when it is not an image."""
    from PIL import ImageOps

    if isinstance(source, Image.Image):
        image = ImageOps.exif_transpose(source).convert("RGB")
        name = name or "template.png"  # gradio hands the image over without its file name
    else:
        try:
            with Image.open(source) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{name or source.name} is not an image ({error})") from None
        name = name or source.name
    image.thumbnail((MAX_TEMPLATE_SIDE, MAX_TEMPLATE_SIDE))
    folder = templates_dir(context)
    stem = _safe_stem(name)
    target = folder / f"{stem}.png"
    number = 2
    while target.exists():
        target = folder / f"{stem}_{number}.png"
        number += 1
    atomic_save_with(target, lambda tmp: image.save(tmp, format="PNG"))
    return target
