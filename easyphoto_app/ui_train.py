"""The Train tab: photos with thumbnails, user id, params, Start / Cancel, and while the job runs
the photo verdicts, a progress bar, the log, the validation images and the result."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from easyphoto_app import compat, views
from easyphoto_app.labels import text
from easyphoto_app.ui_jobs import newest_job
from easyphoto_app.widgets import ENDED, Changes, follow, params_widgets
from easyphoto_core.context import StudioContext
from easyphoto_core.params import TrainParams, field_specs, parse_params
from easyphoto_core.studio import start_training
from easyphoto_core.workspace import USER_ID_PATTERN, atomic_save_with

TRAIN_MAIN_FIELDS = ("max_train_steps", "steps_per_photos", "rank", "network_alpha", "resolution")
KEEP_THUMBNAIL_SETS = 50  # thumbnails of the newest jobs' photos; older sets are removed


@dataclass
class TrainTab:
    user_id: Any
    photos: Any
    thumbnails: Any
    clear: Any
    overwrite: Any
    start: Any
    cancel: Any
    summary: Any
    progress: Any
    log: Any
    validations: Any
    result: Any
    face_id: Any
    job_id: Any
    params: dict[str, Any]

    def follow_outputs(self) -> list[Any]:
        """What a followed training job updates, in `render`'s order."""
        return [self.start, self.cancel, self.job_id, self.thumbnails, self.summary,
                self.progress, self.log, self.validations, self.result, self.face_id,
                self.user_id]


def build_train_tab(context: StudioContext) -> TrainTab:
    with gr.Row():
        with gr.Column():
            user_id = gr.Textbox(label=text("user_id"), placeholder=text("user_id_placeholder"),
                                 elem_id="easyphoto_user_id")
            overwrite = gr.Markdown(elem_id="easyphoto_overwrite_warning")
            photos = gr.File(label=text("photos"), file_count="multiple", file_types=["image"],
                             elem_id="easyphoto_photos")
            clear = gr.Button(text("clear_photos"), elem_id="easyphoto_clear_photos")
            thumbnails = compat.gallery(label=text("photo_thumbnails"),
                                        elem_id="easyphoto_photo_gallery", columns=5)
            summary = gr.Markdown(elem_id="easyphoto_photos_summary")
            with gr.Row():
                start = gr.Button(text("start_training"), variant="primary",
                                  elem_id="easyphoto_train_button")
                cancel = gr.Button(text("cancel_training"), variant="stop", interactive=False,
                                   elem_id="easyphoto_train_cancel")
            progress = gr.HTML(views.progress_html(None), elem_id="easyphoto_train_progress")
            result = gr.Markdown(elem_id="easyphoto_train_result")
        with gr.Column():
            widgets = params_widgets("train", field_specs(TrainParams), TRAIN_MAIN_FIELDS)
            log = gr.Textbox(label=text("training_log"), lines=10, max_lines=10,
                             interactive=False, elem_id="easyphoto_train_log")
            validations = compat.gallery(label=text("validation_images"),
                                         elem_id="easyphoto_validation_gallery", columns=4)
            face_id = gr.Image(label=text("face_id_image"), type="pil", interactive=False,
                               height=320, elem_id="easyphoto_face_id")
    job_id = gr.State("")
    return TrainTab(user_id, photos, thumbnails, clear, overwrite, start, cancel, summary,
                    progress, log, validations, result, face_id, job_id, widgets)


# --- thumbnails of the uploaded photos -----------------------------------------------------------


def thumbnails_dir(context: StudioContext, job_id: str) -> Path:
    return context.workspace.root / "ui" / "thumbnails" / job_id


def save_thumbnails(context: StudioContext, job_id: str, paths: list[Path]) -> list[str]:
    """Small copies of the uploads (gradio's temp files go away), kept for a reload to show."""
    folder = thumbnails_dir(context, job_id)
    saved = []
    for index, path in enumerate(paths):
        target = folder / f"{index:03d}.png"
        image = views.thumbnail(path)
        atomic_save_with(target, lambda tmp, image=image: image.save(tmp, format="PNG"))
        saved.append(str(target))
    _prune_thumbnails(folder.parent)
    return saved


def stored_thumbnails(context: StudioContext, job_id: str) -> list[str]:
    folder = thumbnails_dir(context, job_id) if job_id else None
    if folder is None or not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.glob("*.png"))]


def _prune_thumbnails(root: Path) -> None:
    sets = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in sets[:-KEEP_THUMBNAIL_SETS]:
        shutil.rmtree(old, ignore_errors=True)


def upload_items(files: Any) -> list[views.GalleryItem]:
    return [(views.thumbnail(path), path.name) for path in compat.file_paths(files)]


# --- rendering a training job --------------------------------------------------------------------


def render(context: StudioContext, changes: Changes, record: Any,
           state: dict[str, Any]) -> tuple[Any, ...]:
    running = record.state not in ENDED
    thumbs = state.setdefault("thumbs", stored_thumbnails(context, record.id))
    photos = record.progress.get("photos") or []
    validations = record.progress.get("validations") or []
    return (
        gr.update(interactive=not running),
        gr.update(interactive=running),
        record.id,
        changes(0, ("photos", record.id, len(photos)),
                lambda: views.verdict_items(record, thumbs) if photos else gr.update()),
        changes(1, ("summary", record.id, len(photos)), lambda: views.photos_summary(record)),
        views.progress_html(record, stage_since=state.get("stage_since")),
        changes(2, ("log", record.id, len(record.progress.get("log") or []), record.state),
                lambda: views.log_text(record)),
        changes(3, ("validations", record.id, len(validations)),
                lambda: views.validation_items(record)),
        changes(4, ("result", record.id, record.state), lambda: views.train_result_markdown(record)),
        changes(5, ("face_id", record.id, record.state), lambda: views.face_id_image(record)),
        changes(6, ("user", record.id), lambda: record.user_ids[0] if record.user_ids else ""),
    )


def start_handler(context: StudioContext, names: list[str]):
    def handler(user_id: str, files: Any, *values: Any) -> Iterator[tuple[Any, ...]]:
        paths = compat.file_paths(files)
        try:
            if not paths:
                raise ValueError(text("no_photos"))
            params = parse_params(TrainParams, dict(zip(names, values, strict=True)))
            record = start_training(context, (user_id or "").strip(), paths, params)
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            yield _refused(text("cannot_train", error=views.plain_message(str(error))))
            return
        save_thumbnails(context, record.id, paths)
        changes = Changes()
        yield from follow(context.jobs.get, record,
                          lambda rec, state: render(context, changes, rec, state),
                          closing=context.ui_closing)

    return handler


def _refused(message: str) -> tuple[Any, ...]:
    keep = gr.update()
    return (gr.update(interactive=True), keep, keep, keep, keep, keep, keep, keep, message, keep,
            keep)


def _idle() -> tuple[Any, ...]:
    keep = gr.update()
    return (gr.update(interactive=True), gr.update(interactive=False), *[keep] * 9)


def cancel_handler(context: StudioContext):
    def handler(job_id: str) -> Any:
        if job_id:
            with contextlib.suppress(KeyError, ValueError):  # finished: the loop shows how
                context.jobs.cancel(job_id)
        return gr.update(interactive=False)

    return handler


def attach_handler(context: StudioContext):
    """On page load (a reload, a second tab): follow the newest training job, if any."""
    def handler() -> Iterator[tuple[Any, ...]]:
        record = newest_job(context, "train")
        if record is None:  # a generator must yield once, or gradio empties every output
            yield _idle()
            return
        changes = Changes()
        yield from follow(context.jobs.get, record,
                          lambda rec, state: render(context, changes, rec, state),
                          closing=context.ui_closing)

    return handler


def overwrite_warning(context: StudioContext):
    def handler(user_id: str) -> str:
        user_id = (user_id or "").strip()
        if USER_ID_PATTERN.fullmatch(user_id) and user_id in context.workspace.trained_user_ids():
            return text("overwrite_warning", user_id=user_id)
        return ""

    return handler


def wire_train_tab(context: StudioContext, tab: TrainTab) -> None:
    """The tab's own small events (Start is wired by ui.build_ui, with the job list)."""
    tab.cancel.click(cancel_handler(context), inputs=[tab.job_id], outputs=[tab.cancel],
                     **compat.quick())
    tab.photos.change(upload_items, inputs=[tab.photos], outputs=[tab.thumbnails],
                      **compat.quick())
    tab.clear.click(lambda: (None, [], ""), inputs=[],
                    outputs=[tab.photos, tab.thumbnails, tab.summary], **compat.quick())
    warn = overwrite_warning(context)
    # gradio 3.41 drops a change that comes while the previous one runs, and answers that may
    # arrive out of order (the warning for "" after the one for "obama"): each change is
    # checked again once its answer is in, with the box's value then, and again on leaving
    tab.user_id.change(warn, inputs=[tab.user_id], outputs=[tab.overwrite], **compat.quick()) \
        .then(warn, inputs=[tab.user_id], outputs=[tab.overwrite], **compat.quick())
    tab.user_id.blur(warn, inputs=[tab.user_id], outputs=[tab.overwrite], **compat.quick())
