"""The EasyPhoto tab (Train / Generate), built from the params models.

Works with gradio 3.41 (AUTOMATIC1111 1.10) and gradio 4.x (Forge, standalone). Every widget's
label, default and bounds come from `easyphoto_core.params`, so the UI never restates a default.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from easyphoto_core.context import StudioContext
from easyphoto_core.params import GenerateParams, TrainParams, field_specs

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
        step = 1 if spec["type"] == "integer" else _float_step(spec["maximum"])
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


def build_ui(context: StudioContext) -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False, title="EasyPhoto") as blocks:
        with gr.Tab("Train", elem_id="easyphoto_train_tab"), gr.Row():
            with gr.Column():
                gr.Textbox(label="User id", placeholder="letters, digits, _ and -",
                           elem_id="easyphoto_user_id")
                gr.File(label="Photos (5-20 of one person)", file_count="multiple",
                        file_types=["image"], elem_id="easyphoto_photos")
            with gr.Column():
                params_widgets(field_specs(TrainParams), TRAIN_MAIN_FIELDS)
        with gr.Tab("Generate", elem_id="easyphoto_generate_tab"), gr.Row():
            with gr.Column():
                gr.Image(label="Template", type="pil", elem_id="easyphoto_template")
                gr.Dropdown(label="User ids (left to right)", multiselect=True,
                            choices=context.workspace.trained_user_ids(),
                            elem_id="easyphoto_generate_user_ids")
            with gr.Column():
                params_widgets(field_specs(GenerateParams), GENERATE_MAIN_FIELDS)
        with gr.Tab("About", elem_id="easyphoto_about_tab"):
            gr.JSON(value=context.describe(), label="EasyPhoto")
    return blocks
