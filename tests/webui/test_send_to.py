"""The host's Send to img2img / inpaint / extras under our results: each button is bound with
the gallery and a hidden textbox holding the selected portrait's infotext, so the target tab
gets the prompt, seed and size as well as the image (infotext_utils at 82a973c0)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from tests.webui.stand_ins import forget_host_modules, use_host

REPO = Path(__file__).resolve().parents[2]
TEXT_A = "a portrait\nNegative prompt: blurry\nSteps: 5, Seed: 111, Size: 64x48, EasyPhoto: 1"
TEXT_B = "another\nNegative prompt: dark\nSteps: 6, Seed: 222, Size: 32x32, EasyPhoto: 1"


@pytest.fixture()
def a1111(monkeypatch, tmp_path):
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(tmp_path / "sd15.safetensors"))
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    use_host(monkeypatch, "a1111")
    spec = importlib.util.spec_from_file_location("easyphoto.py", REPO / "scripts" / "easyphoto.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    from modules import infotext_utils, script_callbacks

    infotext_utils.reset()
    yield script_callbacks.registered, infotext_utils
    forget_host_modules(monkeypatch)


def _record(tmp_path: Path, job_id: str, text: str, faces: int) -> SimpleNamespace:
    image = tmp_path / f"{job_id}.png"
    Image.new("RGB", (64, 48)).save(image)
    result = {"image": str(image), "infotext": text,
              "faces": [{"user_id": "u", "box": [1, 1, 8, 8], "score": 0.5}] * faces}
    return SimpleNamespace(id=job_id, state="done", result=result, progress={}, message="",
                           kind="generate", user_ids=["u"])


def _context(records: list[SimpleNamespace]) -> SimpleNamespace:
    jobs = {r.id: r for r in records}
    return SimpleNamespace(jobs=SimpleNamespace(get=jobs.__getitem__))


def test_send_to_buttons_carry_a_hidden_infotext_box_and_the_gallery(a1111):
    registered, utils = a1111
    registered["ui_tabs"][0]()
    bindings = {b.tabname: b for b in utils.registered_param_bindings}
    assert {"img2img", "inpaint", "extras"} <= set(bindings)
    for tab in ("img2img", "inpaint", "extras"):
        box, gallery = bindings[tab].source_text_component, bindings[tab].source_image_component
        assert isinstance(box, gr.Textbox) and box.elem_id == "easyphoto_results_infotext"
        assert not box.visible
        # the host's JS sends the selected thumbnail only of a gallery whose id ends in _gallery
        assert isinstance(gallery, gr.Gallery) and gallery.elem_id.endswith("_gallery")


def test_the_box_follows_the_selection_and_starts_at_the_first_portrait(a1111, tmp_path):
    _, utils = a1111
    from easyphoto_app.ui_generate import follow_batch, select_infotext

    # two portraits of one click: A with 2 faces (3 gallery items), then B with 1 (2 items)
    records = [_record(tmp_path, "a", TEXT_A, 2), _record(tmp_path, "b", TEXT_B, 1)]
    context = _context(records)
    first = next(follow_batch(context, ["a", "b"]))
    assert len(first[4]) == 5 and first[6] == TEXT_A  # results, then the box

    select = select_infotext(context)
    for index, expected in [(0, TEXT_A), (2, TEXT_A), (3, TEXT_B), (4, TEXT_B)]:
        event = SimpleNamespace(index=index)
        assert select(event, ["a", "b"]) == expected, index
    parsed = utils.parse_generation_parameters(select(SimpleNamespace(index=3), ["a", "b"]))
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Seed"]) == (
        "another", "dark", "222")
    assert (parsed["Size-1"], parsed["Size-2"]) == ("32", "32")
