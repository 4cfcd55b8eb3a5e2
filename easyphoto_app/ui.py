"""The EasyPhoto tab (Train / Generate), built from the params models.

Works with gradio 3.41 (AUTOMATIC1111 1.10) and gradio 4.x (Forge, standalone). Every widget's
label, default and bounds come from `easyphoto_core.params`, so the UI never restates a default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from easyphoto_core.context import StudioContext
from easyphoto_core.jobs import FINISHED
from easyphoto_core.params import GenerateParams, TrainParams, field_specs, parse_params
from easyphoto_core.studio import start_generation, start_training

# Fields a user sees first; the rest go into an "Advanced" accordion.
TRAIN_MAIN_FIELDS = ("max_train_steps", "steps_per_photos", "rank", "network_alpha", "resolution")
GENERATE_MAIN_FIELDS = ("seed", "lora_weight", "first_denoising_strength", "crop_face_preprocess")


def widget_for(name: str, spec: dict[str, Any]) -> gr.components.Component:
    """A gradio input for one params field, from its label, default, bounds and choices."""
    common = {"label": spec["label"], "value": spec["default"], "elem_id": f"easyphoto_{name}"}
    if spec.get("help"):
        common["info"] = spec["help"]
    if spec["choices"]:
        return gr.Dropdown(choices=spec["choices"], **common)
    if spec["type"] == "boolean":
        return gr.Checkbox(**common)
    if spec["type"] in ("integer", "number") and spec["minimum"] is not None and spec["maximum"]:
        step = spec.get("multiple_of") or (1 if spec["type"] == "integer"
                                           else _float_step(spec["maximum"]))
        return gr.Slider(minimum=spec["minimum"], maximum=spec["maximum"], step=step, **common)
    if spec["type"] in ("integer", "number"):
        return gr.Number(precision=0 if spec["type"] == "integer" else None, **common)
    return gr.Textbox(lines=2 if "prompt" in name else 1, **common)


def _float_step(maximum: float) -> float:
    return 1e-6 if maximum <= 0.01 else 0.01


def params_widgets(
    specs: dict[str, dict[str, Any]], main_fields: tuple[str, ...]
) -> dict[str, gr.components.Component]:
    """The main fields, then every other field in an 'Advanced' accordion; name -> widget."""
    widgets = {name: widget_for(name, specs[name]) for name in main_fields}
    with gr.Accordion("Advanced", open=False):
        for name, spec in specs.items():
            if name not in widgets:
                widgets[name] = widget_for(name, spec)
    return widgets


POLL_SECONDS = 1.0


def _file_paths(files: Any) -> list[Path]:
    """Uploaded files as paths: gradio 4+ gives strings, gradio 3 tempfile objects."""
    return [Path(f if isinstance(f, str) else f.name) for f in (files or [])]


def _status(record: Any) -> str:
    progress = record.progress
    detail = ""
    if progress.get("total"):
        detail = f" — {progress.get('stage', '')} {progress.get('step', 0)}/{progress['total']}"
    elif progress.get("stage"):
        detail = f" — {progress['stage']}"
    return f"**{record.kind}** job `{record.id}`: {record.state}{detail} {record.message}"


def _follow(context: StudioContext, record: Any) -> Iterator[Any]:
    """Yield the job's record every POLL_SECONDS until it finishes (gradio streams each)."""
    while record.state not in FINISHED:
        yield record
        time.sleep(POLL_SECONDS)
        record = context.jobs.get(record.id)
    yield record


def train_handler(context: StudioContext, names: list[str]) -> Callable[..., Iterator[str]]:
    def handler(user_id: str, files: Any, *values: Any) -> Iterator[str]:
        try:
            params = parse_params(TrainParams, dict(zip(names, values, strict=True)))
            record = start_training(context, user_id, _file_paths(files), params)
        except (ValueError, FileNotFoundError) as error:
            yield f"Cannot start training: {error}"
            return
        for latest in _follow(context, record):
            yield _status(latest)
        if latest.state == "done":
            yield _status(latest) + f"\n\nLoRA: `{latest.result['lora']}`"

    return handler


def generate_handler(context: StudioContext, names: list[str]) -> Callable[..., Iterator[Any]]:
    def handler(template: Any, user_ids: list[str], *values: Any) -> Iterator[Any]:
        if template is None:
            yield None, "Upload a template photo first."
            return
        try:
            params = parse_params(GenerateParams, dict(zip(names, values, strict=True)))
            record = start_generation(context, np.asarray(template, dtype=np.uint8)[..., :3],
                                      list(user_ids or []), params)
        except (ValueError, FileNotFoundError) as error:
            yield None, f"Cannot generate: {error}"
            return
        for latest in _follow(context, record):
            yield None, _status(latest)
        if latest.state == "done":
            scores = ", ".join(f"{f['user_id']}: {f['score']}" for f in latest.result["faces"])
            yield latest.result["image"], _status(latest) + f"\n\nIdentity scores: {scores}"

    return handler


def _refresh_user_ids(context: StudioContext) -> Any:
    return gr.update(choices=context.workspace.trained_user_ids())


def build_ui(context: StudioContext) -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False, title="EasyPhoto") as blocks:
        with gr.Tab("Train", elem_id="easyphoto_train_tab"), gr.Row():
            with gr.Column():
                user_id = gr.Textbox(label="User id", placeholder="letters, digits, _ and -",
                                     elem_id="easyphoto_user_id")
                photos = gr.File(label="Photos (5-20 of one person)", file_count="multiple",
                                 file_types=["image"], elem_id="easyphoto_photos")
                train_button = gr.Button("Start training", variant="primary",
                                         elem_id="easyphoto_train_button")
                train_status = gr.Markdown(elem_id="easyphoto_train_status")
            with gr.Column():
                train_widgets = params_widgets(field_specs(TrainParams), TRAIN_MAIN_FIELDS)
        with gr.Tab("Generate", elem_id="easyphoto_generate_tab"), gr.Row():
            with gr.Column():
                template = gr.Image(label="Template", type="numpy",
                                    elem_id="easyphoto_template")
                with gr.Row():
                    user_ids = gr.Dropdown(label="User ids (left to right)", multiselect=True,
                                           choices=context.workspace.trained_user_ids(),
                                           elem_id="easyphoto_generate_user_ids")
                    refresh = gr.Button("Refresh", elem_id="easyphoto_refresh_user_ids")
                generate_button = gr.Button("Generate", variant="primary",
                                            elem_id="easyphoto_generate_button")
                generate_status = gr.Markdown(elem_id="easyphoto_generate_status")
            with gr.Column():
                result = gr.Image(label="Portrait", type="filepath",
                                  elem_id="easyphoto_result")
                generate_widgets = params_widgets(field_specs(GenerateParams),
                                                  GENERATE_MAIN_FIELDS)
        with gr.Tab("About", elem_id="easyphoto_about_tab"):
            gr.JSON(value=context.describe(), label="EasyPhoto")
        train_button.click(train_handler(context, list(train_widgets)),
                           inputs=[user_id, photos, *train_widgets.values()],
                           outputs=[train_status])
        generate_button.click(generate_handler(context, list(generate_widgets)),
                              inputs=[template, user_ids, *generate_widgets.values()],
                              outputs=[result, generate_status])
        refresh.click(lambda: _refresh_user_ids(context), inputs=[], outputs=[user_ids])
    return blocks
