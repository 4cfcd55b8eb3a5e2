"""The Generate tab: template gallery (+ upload, + batch), one user-id dropdown per face found,
Generate / Interrupt, progress of every pass, and the results with each face's crop and score."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageOps

from easyphoto_app import compat, paste, templates, views
from easyphoto_app.labels import text, text_in_any_language
from easyphoto_app.ui_jobs import newest_job
from easyphoto_app.widgets import ENDED, Changes, next_frame_wanted, params_widgets
from easyphoto_core.context import StudioContext
from easyphoto_core.params import GenerateParams, field_specs, parse_params
from easyphoto_core.pipeline.portrait import MIN_RELATIVE_FACE_SIZE
from easyphoto_core.pipeline.stages import locate_faces
from easyphoto_core.studio import face_models, start_generation

GENERATE_MAIN_FIELDS = ("seed", "lora_weight", "first_denoising_strength")
MAX_FACES = 5  # the pipeline paints at most this many user ids into one template


@dataclass
class GenerateTab:
    gallery: Any
    template: Any
    add: Any
    batch: Any
    faces: Any
    user_ids: list[Any]
    refresh: Any
    generate: Any
    interrupt: Any
    progress: Any
    results: Any
    message: Any
    job_ids: Any
    params: dict[str, Any]
    infotext: Any  # hidden: the selected portrait's infotext, what the host's Send to sends

    def follow_outputs(self) -> list[Any]:
        return [self.generate, self.interrupt, self.job_ids, self.progress, self.results,
                self.message, self.infotext]


def build_generate_tab(context: StudioContext) -> GenerateTab:
    with gr.Row():
        with gr.Column():
            gallery = compat.gallery(label=text("templates"), elem_id="easyphoto_template_gallery",
                                     value=gallery_items(context), columns=5, height=220,
                                     allow_preview=False)
            # an image, not a file path: Forge replaces gradio's save_pil_to_cache with a
            # function that lacks gradio 4's `name=`, so every type="filepath" image input
            # fails there before our handler runs (seen in Forge dfdcbab6)
            template = gr.Image(label=text("template"), type="pil", height=320,
                                elem_id="easyphoto_template")
            add = gr.Button(text("add_template"), size="sm", elem_id="easyphoto_add_template")
            with gr.Accordion(text("batch"), open=False, elem_id="easyphoto_batch_accordion"):
                batch = gr.File(label=text("batch_templates"), file_count="multiple",
                                file_types=["image"], elem_id="easyphoto_batch_templates")
            faces = gr.Markdown(text("choose_template"), elem_id="easyphoto_faces_found")
            with gr.Row():
                user_ids = [gr.Dropdown(label=text("face_user_id", number=n + 1),
                                        choices=[text("leave_face")], value=text("leave_face"),
                                        visible=n == 0, elem_id=f"easyphoto_face_user_id_{n + 1}")
                            for n in range(MAX_FACES)]
            refresh = gr.Button(text("refresh_user_ids"), size="sm",
                                elem_id="easyphoto_refresh_user_ids")
            with gr.Row():
                generate = gr.Button(text("generate"), variant="primary",
                                     elem_id="easyphoto_generate_button")
                interrupt = gr.Button(text("interrupt"), variant="stop", interactive=False,
                                      elem_id="easyphoto_generate_interrupt")
            progress = gr.HTML(views.progress_html(None), elem_id="easyphoto_generate_progress")
            message = gr.Markdown(elem_id="easyphoto_generate_message")
        with gr.Column():
            # the id ends in _gallery: the host's extract_image_from_gallery (javascript/ui.js)
            # sends the thumbnail selected in such a gallery, else always the first image
            results = compat.gallery(label=text("results"), elem_id="easyphoto_results_gallery",
                                     columns=3, height=420)
            infotext = gr.Textbox(visible=False, elem_id="easyphoto_results_infotext")
            if context.settings.results_buttons is not None:  # a host: its own Send to ...
                context.settings.results_buttons(results, infotext)
            widgets = params_widgets("generate", field_specs(GenerateParams),
                                     GENERATE_MAIN_FIELDS)
            # a portrait's infotext back into the fields (the host also has its paste button)
            if context.settings.paste_fields is not None:  # a host: its paste button
                context.settings.paste_fields(widgets)
            load = gr.File(label=text("load_settings"), file_types=["image"],
                           elem_id="easyphoto_load_settings")
            load.change(paste.load_settings_handler(list(widgets)), inputs=load,
                        outputs=[*widgets.values(), message], **compat.quick())
    return GenerateTab(gallery, template, add, batch, faces, user_ids, refresh, generate,
                       interrupt, progress, results, message, gr.State([]), widgets, infotext)


# --- templates and faces -------------------------------------------------------------------------


def gallery_items(context: StudioContext) -> list[views.GalleryItem]:
    return [(views.thumbnail(path, 384), path.stem) for path in templates.list_templates(context)]


def read_template(source: Path | str | Image.Image) -> np.ndarray:
    """RGB pixels of a template file or of the template input's image, EXIF orientation applied."""
    if isinstance(source, Image.Image):
        return np.asarray(ImageOps.exif_transpose(source).convert("RGB"))
    with Image.open(source) as opened:
        return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))


def count_faces(context: StudioContext, image: np.ndarray) -> int:
    detector = face_models(context).detector
    return len(locate_faces(image, detector=detector, min_relative_size=MIN_RELATIVE_FACE_SIZE))


def user_choices(context: StudioContext) -> list[str]:
    return [text("leave_face"), *context.workspace.trained_user_ids()]


def dropdown_updates(context: StudioContext, count: int | None,
                     current: list[str] | None = None) -> list[Any]:
    """One dropdown per face (count None: keep the visible ones), each offering the trained ids;
    a choice that is still offered is kept, the first face gets the newest... first id else."""
    choices = user_choices(context)
    current = list(current or [None] * MAX_FACES)
    # Settings → EasyPhoto → user-id slots (read at each update: the host's options change live)
    slots = max(1, min(MAX_FACES, int(context.settings.option("user_id_slots"))))
    count = None if count is None else min(count, slots)
    updates = []
    for n in range(MAX_FACES):
        value = current[n] if current[n] in choices else text("leave_face")
        if count is not None and n >= max(1, count):
            value = text("leave_face")  # a hidden face's choice would ask for a face not there
        if n == 0 and value == text("leave_face") and len(choices) > 1:
            value = choices[1]
        options: dict[str, Any] = {"choices": choices, "value": value}
        if count is not None:
            options["visible"] = n < max(1, count)
        elif n >= slots:  # count unknown: leave the visible ones, never show more than the slots
            options.update(visible=False, value=text("leave_face"))
        updates.append(gr.update(**options))
    return updates


def select_template(context: StudioContext):
    # gradio passes the event data at its parameter's position: first, before the dropdowns
    def handler(evt: gr.SelectData, *current: str) -> list[Any]:
        paths = templates.list_templates(context)
        index = compat.select_index(evt)
        if index is None or index >= len(paths):
            return [gr.update(), gr.update(), *[gr.update()] * MAX_FACES]
        # the image itself, not its path: gradio 4+ serves only files in its allowed folders
        image = read_template(paths[index])
        return [image, *_faces_count_outputs(context, image, list(current))]

    return handler


def template_changed(context: StudioContext):
    def handler(image: Image.Image | None, *current: str) -> list[Any]:
        if image is None:
            return [text("choose_template"), *dropdown_updates(context, 1, list(current))]
        return _faces_count_outputs(context, read_template(image), list(current))

    return handler


def _faces_count_outputs(context: StudioContext, image: np.ndarray, current: list[str]
                         ) -> list[Any]:
    count = count_faces(context, image)
    message = text("faces_found", count=count) if count else text("no_face_found")
    return [message, *dropdown_updates(context, count, current)]


def add_handler(context: StudioContext):
    def handler(image: Image.Image | None) -> tuple[Any, str]:
        if image is None:
            return gr.update(), text("choose_template")
        try:
            added = templates.add_template(context, image)
        except ValueError as error:
            return gr.update(), str(error)
        return gallery_items(context), text("template_added", name=added.name)

    return handler


# --- generating ----------------------------------------------------------------------------------


def chosen_user_ids(values: tuple[str, ...] | list[str], visible: int = MAX_FACES
                    ) -> list[str | None]:
    """Dropdown values left to right, "(leave this face)" as None, trailing Nones dropped."""
    leave = {None, "", *text_in_any_language("leave_face")}
    ids = [None if v in leave else v for v in list(values)[:visible]]
    while ids and ids[-1] is None:
        ids.pop()
    return ids


def generate_handler(context: StudioContext, names: list[str]):
    def handler(template: Image.Image | None, batch: Any, *values: Any
                ) -> Iterator[tuple[Any, ...]]:
        user_values, param_values = values[:MAX_FACES], values[MAX_FACES:]
        sources: list[Image.Image | Path] = [template] if template is not None else []
        sources += compat.file_paths(batch)
        user_ids = chosen_user_ids(user_values)
        try:
            if not sources:
                raise ValueError(text("choose_template"))
            if not any(user_ids):
                raise ValueError(text("no_user_chosen"))
            params = parse_params(GenerateParams, dict(zip(names, param_values, strict=True)))
            records = [start_generation(context, read_template(source), user_ids, params)
                       for source in sources]
        except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
            keep = gr.update()
            yield (gr.update(interactive=True), keep, keep, keep, keep,
                   text("cannot_generate", error=views.plain_message(str(error))), keep)
            return
        yield from follow_batch(context, [r.id for r in records])

    return handler


def follow_batch(context: StudioContext, job_ids: list[str]) -> Iterator[tuple[Any, ...]]:
    """Stream the jobs of one Generate click: the bar follows the job that runs now; each
    finished portrait joins the results with its faces' crops and scores."""
    changes, since, last_stage = Changes(), time.time(), None
    while True:
        records = [context.jobs.get(job_id) for job_id in job_ids]
        current = next((r for r in records if r.state not in ENDED), records[-1])
        stage = (current.id, current.state, current.progress.get("stage"))
        if stage != last_stage:
            last_stage, since = stage, time.time()
        running = any(r.state not in ENDED for r in records)
        done = [r for r in records if r.state == "done"]
        yield (gr.update(interactive=not running), gr.update(interactive=running), job_ids,
               views.progress_html(current, stage_since=since),
               changes(0, tuple(r.id for r in done), lambda done=done: _results(done)),
               changes(1, tuple(r.state for r in records),
                       lambda records=records: views.generate_result_markdown(records)),
               # new results: the gallery shows no selection, so Send to takes the first one
               changes(2, tuple(r.id for r in done),
                       lambda done=done: next(iter(result_infotexts(done)), "")))
        if not running:
            return
        if not next_frame_wanted(context.ui_closing):
            return


def _results(done: list[Any]) -> list[views.GalleryItem]:
    items: list[views.GalleryItem] = []
    for number, record in enumerate(done, start=1):
        items += views.result_items(record, number)
    return items


def result_infotexts(done: list[Any]) -> list[str]:
    """The infotext of each item `_results` shows, in its order: a face's crop carries the
    portrait's (it is a part of that generation)."""
    texts: list[str] = []
    for record in done:
        texts += [record.result.get("infotext") or ""] * views.result_item_count(record)
    return texts


def select_infotext(context: StudioContext):
    """Gallery selection -> the hidden infotext box the host's Send-to buttons read."""
    def handler(evt: gr.SelectData, job_ids: list[str]) -> Any:
        index = compat.select_index(evt)
        records = [context.jobs.get(job_id) for job_id in job_ids or []]
        texts = result_infotexts([r for r in records if r.state == "done"])
        return texts[index] if index is not None and index < len(texts) else gr.update()

    return handler


def interrupt_handler(context: StudioContext):
    def handler(job_ids: list[str]) -> Any:
        for job_id in job_ids or []:
            with contextlib.suppress(KeyError, ValueError):  # finished already
                context.jobs.cancel(job_id)
        return gr.update(interactive=False)

    return handler


def attach_handler(context: StudioContext):
    def handler() -> Iterator[tuple[Any, ...]]:
        record = newest_job(context, "generate")
        if record is None:  # a generator must yield once, or gradio empties every output
            keep = gr.update()
            yield (gr.update(interactive=True), gr.update(interactive=False), keep, keep, keep,
                   keep, keep)
            return
        yield from follow_batch(context, [record.id])

    return handler


def wire_generate_tab(context: StudioContext, tab: GenerateTab) -> None:
    """The tab's own small events (Generate is wired by ui.build_ui, with the job list)."""
    tab.gallery.select(select_template(context), inputs=tab.user_ids,
                       outputs=[tab.template, tab.faces, *tab.user_ids], **compat.quick())
    tab.template.upload(template_changed(context), inputs=[tab.template, *tab.user_ids],
                        outputs=[tab.faces, *tab.user_ids], **compat.quick())
    tab.add.click(add_handler(context), inputs=[tab.template], outputs=[tab.gallery, tab.faces],
                  **compat.quick())
    tab.refresh.click(lambda *current: dropdown_updates(context, None, list(current)),
                      inputs=tab.user_ids, outputs=tab.user_ids, **compat.quick())
    tab.interrupt.click(interrupt_handler(context), inputs=[tab.job_ids],
                        outputs=[tab.interrupt], **compat.quick())
    tab.results.select(select_infotext(context), inputs=[tab.job_ids], outputs=[tab.infotext],
                       **compat.quick())
