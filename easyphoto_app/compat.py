"""The few places where gradio 3.41 (AUTOMATIC1111 1.10) and gradio 4-6 (standalone, Forge)
differ for this tab, behind small functions so the tab's code reads the same for both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

GRADIO_MAJOR = int(gr.__version__.split(".")[0])
GRADIO_3 = GRADIO_MAJOR < 4


def streaming(**kwargs: Any) -> dict[str, Any]:
    """Event options for a handler that follows a job for minutes: it must not hold up the same
    button in another browser tab (gradio 4+ runs one call per event at a time by default), and
    it shows its own progress bar rather than gradio's overlay."""
    if GRADIO_3:
        return {"show_progress": False, **kwargs}
    return {"show_progress": "hidden", "concurrency_limit": None, **kwargs}


def quick(**kwargs: Any) -> dict[str, Any]:
    """Event options for a short handler (a click that returns at once)."""
    if GRADIO_3:
        return {"show_progress": False, **kwargs}
    return {"show_progress": "hidden", "concurrency_limit": None, **kwargs}


def queue_options() -> dict[str, Any]:
    """`Blocks.queue(...)` options for the standalone app: several tabs follow jobs at once."""
    if GRADIO_3:
        return {"concurrency_count": 16}
    return {"default_concurrency_limit": None}


def gallery(**kwargs: Any) -> gr.Gallery:
    """A gallery that shows captions under its images in both versions."""
    options = {"columns": 4, "height": 280, "object_fit": "contain", "allow_preview": True}
    options.update(kwargs)
    if GRADIO_3:
        options.pop("interactive", None)
    return gr.Gallery(**options)


def file_paths(files: Any) -> list[Path]:
    """Uploaded files as paths: gradio 4+ gives strings, gradio 3 tempfile wrappers."""
    if files is None:
        return []
    if not isinstance(files, list | tuple):
        files = [files]
    return [Path(f if isinstance(f, str | Path) else f.name) for f in files]


def select_index(event: Any) -> int | None:
    """The index a gallery `select` event names (an int, or [row, col] in some versions)."""
    index = getattr(event, "index", None)
    if isinstance(index, list | tuple):
        index = index[0] if index else None
    return index if isinstance(index, int) else None


def client_script(script: str) -> dict[str, Any]:
    """Event options that run `script` (a JS function) in the browser: `_js` in gradio 3."""
    return {"_js": script} if GRADIO_3 else {"js": script}
