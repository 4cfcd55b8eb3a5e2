"""Gradio inputs built from the params models (labels, defaults, bounds), and the follow loop that
streams a job's record to the tab."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from easyphoto_app.labels import FIELD_LABELS, text
from easyphoto_app.views import ENDED
from easyphoto_core.i18n import gettext

POLL_SECONDS = 1.0
# A slider only where its range is one a hand can move through; wider integer ranges (a seed,
# 0 ... 4 294 967 295) are a number box.
MAX_SLIDER_STEPS = 10_000


def widget_for(tab: str, name: str, spec: dict[str, Any]) -> gr.components.Component:
    """A gradio input for one params field. The element id names the tab too, so the host's
    ui-config.json gives Train's and Generate's "Seed" two keys."""
    label = FIELD_LABELS.get(f"{tab}.{name}")
    common = {"label": gettext(label) if label else spec["label"], "value": spec["default"],
              "elem_id": f"easyphoto_{tab}_{name}"}
    if spec.get("help"):
        common["info"] = spec["help"]
    if spec["choices"]:
        return gr.Dropdown(choices=spec["choices"], **common)
    if spec["type"] == "boolean":
        return gr.Checkbox(**common)
    if spec["type"] in ("integer", "number") and _slider_fits(spec):
        return gr.Slider(minimum=spec["minimum"], maximum=spec["maximum"], step=_step(spec),
                         **common)
    if spec["type"] in ("integer", "number"):
        return gr.Number(precision=0 if spec["type"] == "integer" else None, **common)
    return gr.Textbox(lines=3 if "prompt" in name else 1, **common)


def _slider_fits(spec: dict[str, Any]) -> bool:
    low, high = spec["minimum"], spec["maximum"]
    if low is None or high is None:
        return False
    return (high - low) / _step(spec) <= MAX_SLIDER_STEPS


def _step(spec: dict[str, Any]) -> float:
    if spec.get("multiple_of"):
        return spec["multiple_of"]
    if spec["type"] == "integer":
        return 1
    return 1e-6 if spec["maximum"] <= 0.01 else 0.01


def params_widgets(tab: str, specs: dict[str, dict[str, Any]], main_fields: tuple[str, ...]
                   ) -> dict[str, gr.components.Component]:
    """The main fields, then every other field in an 'Advanced' accordion; name -> widget."""
    widgets = {name: widget_for(tab, name, specs[name]) for name in main_fields}
    with gr.Accordion(text(f"advanced_{tab}"), open=False, elem_id=f"easyphoto_{tab}_advanced"):
        for name, spec in specs.items():
            if name not in widgets:
                widgets[name] = widget_for(tab, name, spec)
    return widgets


class Changes:
    """Sends a value only when it differs from the last one sent (gr.update() = no change), so a
    gallery is not re-sent every second while only the progress line moves."""

    def __init__(self) -> None:
        self._last: dict[int, Any] = {}

    def __call__(self, slot: int, key: Any, make: Callable[[], Any]) -> Any:
        if slot in self._last and self._last[slot] == key:
            return gr.update()
        self._last[slot] = key
        return make()


def follow(get: Callable[[str], Any], record: Any,
           render: Callable[[Any, dict[str, Any]], tuple[Any, ...]],
           closing: Callable[[], bool] = lambda: False) -> Iterator[tuple[Any, ...]]:
    """Render the job's record every POLL_SECONDS until it ends or the page closes
    (`closing()`: the host's close waits for open streams); `render(record, state)` gets a
    dict it may keep things in (e.g. when the stage began)."""
    state: dict[str, Any] = {}
    while True:
        stage = (record.state, record.progress.get("stage"))
        if state.get("stage") != stage:
            state["stage"], state["stage_since"] = stage, time.time()
        yield render(record, state)
        if record.state in ENDED:
            return
        if not next_frame_wanted(closing):
            return
        record = get(record.id)


def next_frame_wanted(closing: Callable[[], bool]) -> bool:
    """Wait POLL_SECONDS, then whether a stream may send its next frame: not once the page is
    closing. Checked just before that frame: one sent after the host stopped its queue goes to
    a closed websocket, gradio 3.41 then never marks the event done, and the host's close waits
    for it forever (seen in a real A1111 with py-spy and gdb)."""
    time.sleep(POLL_SECONDS)
    return not closing()
