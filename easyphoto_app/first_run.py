"""The banner above the EasyPhoto tabs: what a first portrait still needs, and how to get it.

Shown at once when the page opens (not after an upload fails), from the same list as
`GET /easyphoto/v1/version` and the console (easyphoto_core.readiness); hidden when nothing is
missing. `ui.py` calls `banner(context)` before its tabs.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from easyphoto_app import compat
from easyphoto_core import weights
from easyphoto_core.i18n import gettext, translate_message
from easyphoto_core.workspace import atomic_save_with

POLL_SECONDS = 0.5


def banner_markdown(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    lines = [gettext("**Before a first portrait, EasyPhoto needs:**")]
    lines += [f"- {item['message']}" for item in items]
    return "\n".join(lines)


def banner(context: Any) -> gr.Markdown:
    """A Markdown block, refreshed on every page load (a file put in place meanwhile counts)."""
    block = gr.Markdown(banner_markdown(context.missing_models()),
                        elem_id="easyphoto-first-run", visible=bool(context.missing_models()))
    return block


def refresh(context: Any) -> tuple[Any, Any, Any]:
    """Updates for a page load: the banner, the downloads panel and its model choice. The tab is
    built before some hosts know their checkpoint (Forge fills its loading parameters after
    the extensions' tabs), so what was missing at build time is asked again here."""
    items = context.missing_models()
    names = [item["name"] for item in items]
    return (gr.update(value=banner_markdown(items), visible=bool(items)),
            gr.update(visible=bool(items), open=bool(items)),
            gr.update(choices=names, value=names[0] if names else None))


# --- fetching what is missing: registry download (progress, cancel) or an existing file -------

class Downloads:
    """The banner's downloads, one at a time per studio; Cancel stops the running one."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.lock = threading.Lock()


def _paths(context: Any, name: str) -> Any:
    paths = weights.WeightPaths.standalone(context.settings.weights_dir)
    if name.startswith("control_") and context.settings.controlnet_dirs:
        paths = dataclasses.replace(paths, controlnet=Path(context.settings.controlnet_dirs[0]))
    return paths


def _use(context: Any, name: str, path: Path) -> None:
    """Point the studio at a file now in place (the checkpoint, a ControlNet's folder)."""
    if name == "v1-5-pruned-emaonly" and context.settings.base_model_provider is None:
        context.settings.base_model = path
    elif name.startswith("control_") and path.parent not in context.settings.controlnet_dirs:
        context.settings.controlnet_dirs.append(path.parent)
    context.resources.pop("face_models", None)  # a new face detector is picked up


def download_handler(context: Any, downloads: Downloads) -> Callable[[str], Iterator[tuple]]:
    """Handler: registry name -> (progress line, banner update) while it downloads."""
    def handler(name: str) -> Iterator[tuple[Any, Any]]:
        if not name:
            yield gettext("Choose what to download."), gr.update()
            return
        if not downloads.lock.acquire(blocking=False):
            yield gettext("A download is already running."), gr.update()
            return
        try:
            downloads.cancel.clear()
            state: dict[str, Any] = {"done": 0, "total": 0}

            def progress(done: int, total: int, what: str) -> None:
                state.update(done=done, total=total)

            def run() -> None:
                try:  # Cancel stops it within a fraction of a second, however slow the link
                    state["path"] = weights.download(weights.get_record(name),
                                                     _paths(context, name), progress=progress,
                                                     cancel=downloads.cancel)
                except weights.DownloadCancelled:
                    state["error"] = gettext("Download cancelled: run it again to resume.")
                except (weights.WeightsError, OSError) as error:
                    state["error"] = translate_message(str(error))

            worker = threading.Thread(target=run, daemon=True, name=f"easyphoto-download-{name}")
            worker.start()
            while worker.is_alive():
                worker.join(POLL_SECONDS)
                yield _progress_line(name, state), gr.update()
            if "path" in state:
                _use(context, name, Path(state["path"]))
                yield gettext("Downloaded {file}.", file=state["path"]), refresh(context)
            else:
                yield state["error"], refresh(context)
        finally:
            downloads.lock.release()

    return handler


def _progress_line(name: str, state: dict[str, Any]) -> str:
    total = state["total"] or 1
    return gettext("Downloading {name}: {done} of {total} MB ({percent}%)", name=name,
                   done=state["done"] >> 20, total=state["total"] >> 20,
                   percent=int(100 * state["done"] / total))


def use_existing_handler(context: Any) -> Callable[[str, str], tuple[Any, Any]]:
    """Handler: (registry name, path of a file already on this machine) -> (status, banner)."""
    def handler(name: str, text: str) -> tuple[Any, Any]:
        path = Path((text or "").strip()).expanduser()
        if not name or not text or not path.is_file():
            return gettext("No file at {path}: give the full path of an existing file.",
                           path=text or "-"), gr.update()
        record = weights.get_record(name)
        if path.suffix != Path(record.filename).suffix:
            return gettext("{path} is not a {suffix} file.", path=path,
                           suffix=Path(record.filename).suffix), gr.update()
        if record.destination == weights.WeightDestination.MODELS:  # our own folder: a copy
            if record.sha256_known and weights.file_sha256(path) != record.sha256:
                return gettext("{path} is not the expected {file} (its sha256 differs).",
                               path=path, file=record.filename), gr.update()
            target = weights.resolve_path(record, _paths(context, name))
            atomic_save_with(target, lambda tmp: shutil.copyfile(path, tmp))
            path = target
        _use(context, name, path)
        return gettext("Using {file}.", file=path), refresh(context)

    return handler


def downloads_panel(context: Any, banner_block: Any) -> tuple[Any, Any]:
    """Under the banner: pick a missing model, download it (progress, Cancel) or point at a
    file. Shown only when something is missing. Returns the panel and its model choice (a page
    load refreshes both)."""
    items = context.missing_models()
    with gr.Accordion(gettext("Get the missing models"), open=bool(items), visible=bool(items),
                      elem_id="easyphoto-first-run-downloads") as panel:
        with gr.Row():
            choice = gr.Dropdown(choices=[item["name"] for item in items],
                                 value=items[0]["name"] if items else None,
                                 label=gettext("Model"), elem_id="easyphoto-download-name")
            start = gr.Button(gettext("Download"), elem_id="easyphoto-download-start")
            stop = gr.Button(gettext("Cancel download"), elem_id="easyphoto-download-cancel")
        status = gr.Markdown(elem_id="easyphoto-download-status")
        with gr.Row():
            existing = gr.Textbox(label=gettext("Or the path of a file you already have"),
                                  elem_id="easyphoto-download-path")
            use = gr.Button(gettext("Use this file"), elem_id="easyphoto-download-use")
    downloads = Downloads()
    start.click(download_handler(context, downloads), inputs=choice,
                outputs=[status, banner_block], **compat.streaming())
    stop.click(lambda: downloads.cancel.set(), inputs=[], outputs=[], **compat.quick())
    use.click(use_existing_handler(context), inputs=[choice, existing],
              outputs=[status, banner_block], **compat.quick())
    return panel, choice
