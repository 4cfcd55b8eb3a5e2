"""The tab without a browser: its widgets (labels, bounds, keys the host's ui-config.json uses),
what it shows for a job record, and the handlers' answers to bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from easyphoto_app import labels, views  # noqa: E402
from easyphoto_app.ui import build_ui  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.jobs import JobRecord  # noqa: E402
from easyphoto_core.params import GenerateParams, TrainParams, field_specs  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402


@pytest.fixture()
def context(tmp_path):
    return StudioContext(Workspace(tmp_path), "diffusers")


@pytest.fixture()
def blocks(context):
    return build_ui(context)


def _walk(block, found):
    found.append(block)
    for child in getattr(block, "children", []) or []:
        _walk(child, found)
    return found


def _ui_config_keys(blocks) -> list[str]:
    """The keys AUTOMATIC1111's ui_loadsave.add_block gives our widgets: label-based (Tabs by
    elem_id, unlabelled buttons by their text)."""
    keys = []
    for block in _walk(blocks, [])[1:]:
        if isinstance(block, gr.Tabs) and block.elem_id:
            keys.append(f"easyphoto/Tabs@{block.elem_id}")
        elif getattr(block, "children", None) is not None:
            if isinstance(block, gr.Accordion):
                keys.append(f"easyphoto/{block.label}")
        elif getattr(block, "label", None) is not None:
            keys.append(f"easyphoto/{block.label}")
        elif isinstance(block, gr.Button) and block.value is not None:
            keys.append(f"easyphoto/{block.value}")
    return keys


def test_every_widget_has_its_own_ui_config_key_and_element_id(blocks):
    keys = _ui_config_keys(blocks)
    assert "easyphoto/Seed" in keys and "easyphoto/Training seed" in keys
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    ids = [b.elem_id for b in _walk(blocks, []) if getattr(b, "elem_id", None)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_widgets_take_bounds_from_the_params_and_no_seed_slider(blocks):
    by_id = {b.elem_id: b for b in _walk(blocks, []) if getattr(b, "elem_id", None)}
    for tab, model in (("train", TrainParams), ("generate", GenerateParams)):
        for name, spec in field_specs(model).items():
            widget = by_id[f"easyphoto_{tab}_{name}"]
            if isinstance(widget, gr.Slider):
                assert (widget.minimum, widget.maximum) == (spec["minimum"], spec["maximum"])
                assert (widget.maximum - widget.minimum) / widget.step <= 10_000, name
    assert isinstance(by_id["easyphoto_train_seed"], gr.Number)
    assert isinstance(by_id["easyphoto_generate_seed"], gr.Number)
    assert by_id["easyphoto_generate_seed"].value == -1
    assert by_id["easyphoto_train_resolution"].step == 64


def _record(**fields) -> JobRecord:
    return JobRecord(id="abc123def456", kind=fields.pop("kind", "train"), user_ids=["ann"],
                     **fields)


def test_progress_line_says_stage_step_loss_eta_and_time_in_stage():
    record = _record(state="running", progress={
        "stage": "train", "step": 6, "total": 12, "loss": 0.1234, "eta_seconds": 75,
        "stage_started": 100.0})
    shown = views.progress_html(record, now=112.0)
    assert "training · step 6/12 · loss 0.1234 · ETA 1:15 · 0:12 in this stage" in shown
    validating = _record(state="running", progress={"stage": "validation", "step": 6,
                                                    "total": 12, "stage_started": 100.0})
    later = views.progress_html(validating, now=130.0)
    assert "validating a checkpoint" in later and "0:30 in this stage" in later
    assert "easyphoto-progress-busy" in later  # no steps in this stage: the bar is animated


def test_bar_only_moves_forward_through_the_training_stages():
    stages = [("preprocess", 1, 5), ("preprocess", 5, 5), ("loading", 0, 0), ("train", 1, 4),
              ("validation", 2, 4), ("train", 3, 4), ("validation", 4, 4), ("fusion", 4, 4)]
    fractions = [views.bar_fraction(_record(state="running", progress={
        "stage": s, "step": step, "total": total})) for s, step, total in stages]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0
    assert views.bar_fraction(_record(state="done")) == 1.0


def test_verdicts_are_words_and_failures_lose_their_class_name():
    outlier = {"index": 0, "name": "kit.jpg", "kept": False, "reason": "identity_outlier",
               "message": "a different person from the other photos (similarity 0.12, same "
                          "person from 0.91)"}
    caption = views.verdict_caption(outlier)
    assert caption.startswith("kit.jpg: dropped: someone else (a different person")
    assert "identity_outlier" not in caption
    assert views.verdict_caption({"name": "a.jpg", "kept": True}) == "a.jpg: kept"
    failed = _record(state="failed", message="PreprocessError: only 1 usable photo")
    assert views.train_result_markdown(failed) == "**Training failed:** only 1 usable photo"
    assert set(labels.REASONS) >= {"not_an_image", "identity_outlier", "no_face"}


def test_validation_gallery_and_result_name_the_lora_as_the_host_shows_it(tmp_path):
    image = tmp_path / "v.png"
    views.placeholder(64).save(image)
    record = _record(state="done", progress={"validations": [
        {"step": 2, "mean_score": 0.5, "scores": [0.5], "images": [str(image)]}]},
        result={"lora": "/ws/users/ann/easyphoto_ann.safetensors", "lora_name": "easyphoto_ann",
                "selected": [2, 4], "fusion_error": 0.01, "score": 0.5})
    assert [caption for _, caption in views.validation_items(record)] == [
        "step 2: identity 0.50"]
    result = views.train_result_markdown(record)
    assert "`<lora:easyphoto_ann:0.9>`" in result and "2, 4" in result and "0.010" in result


def test_result_gallery_has_the_portrait_then_each_face_with_its_score(tmp_path):
    portrait = tmp_path / "p.png"
    views.placeholder(200).save(portrait)
    record = _record(kind="generate", state="done", result={"image": str(portrait), "faces": [
        {"user_id": "ann", "box": [20, 20, 50, 50], "score": 0.61234},
        {"user_id": "bob", "box": [120, 20, 50, 50], "score": None}]})
    items = views.result_items(record)
    assert [caption for _, caption in items] == [
        "portrait 1", "face 1: ann, identity 0.612",
        "face 2: bob, no face found in the output"]
    assert items[1][0].size == (75, 75)  # the face box with a quarter of its side around it


def test_job_list_shows_state_and_progress():
    running = _record(state="running", progress={"stage": "train", "step": 3, "total": 4})
    table = views.jobs_html([running], now=running.updated + 5)
    assert "abc123def456" in table and "running" in table and "training 3/4" in table
    assert views.jobs_html([]).count("No jobs yet.") == 1


def test_start_and_generate_explain_bad_input_instead_of_failing(context):
    from easyphoto_app import ui_generate, ui_train

    names = list(field_specs(TrainParams))
    defaults = [spec["default"] for spec in field_specs(TrainParams).values()]
    start = ui_train.start_handler(context, names)
    outputs = list(start("ann", [], *defaults))
    assert outputs[-1][8] == "Cannot start training: Upload 5-20 photos of one person first."
    outputs = list(start("../x", [__file__], *defaults))
    assert "User id '../x' contains '.', '/'" in outputs[-1][8]
    names = list(field_specs(GenerateParams))
    defaults = [spec["default"] for spec in field_specs(GenerateParams).values()]
    generate = ui_generate.generate_handler(context, names)
    nobody = [labels.text("leave_face")] * ui_generate.MAX_FACES
    assert list(generate(None, None, *nobody, *defaults))[-1][5] == (
        "Cannot generate: Choose a template from the gallery or upload one.")
    assert ui_generate.chosen_user_ids(["ann", labels.text("leave_face"), "bob", None]) == [
        "ann", None, "bob"]


def test_user_id_slots_setting_caps_the_dropdowns(tmp_path):
    """Settings → EasyPhoto → user-id slots: a four-face template offers only two dropdowns."""
    from easyphoto_app.ui_generate import MAX_FACES, dropdown_updates
    from easyphoto_core.context import StudioSettings

    slots = {"user_id_slots": 2}
    settings = StudioSettings(options=lambda: slots)
    context = StudioContext(Workspace(tmp_path), "diffusers", settings=settings)
    visible = [update.get("visible") for update in dropdown_updates(context, 4)]
    assert visible == [True, True] + [False] * (MAX_FACES - 2)
    slots["user_id_slots"] = 5  # changed in the host's settings: read again
    visible = [update.get("visible") for update in dropdown_updates(context, 4)]
    assert visible == [True] * 4 + [False] * (MAX_FACES - 4)


@pytest.mark.skipif(gr.__version__.startswith("3."), reason="Forge runs gradio 4+; gradio 3's "
                    "image input has no save_pil_to_cache to replace")
def test_the_template_input_works_where_forge_replaces_gradios_image_cache(
        context, blocks, monkeypatch, faces_dir):
    """Forge (modules/ui_tempdir.py) installs save_pil_to_file(pil_image, cache_dir=None,
    format="png") as gradio's save_pil_to_cache: no `name=`, so a type="filepath" image input
    raised TypeError on every upload there and the Generate tab could not generate."""
    import gradio.processing_utils as processing_utils
    from gradio.data_classes import ImageData
    from PIL import Image

    from easyphoto_app import templates

    def forge_save_pil_to_file(pil_image, cache_dir=None, format="png"):  # Forge's signature
        return str(Path(cache_dir or ".") / "saved.png")

    monkeypatch.setattr(processing_utils, "save_pil_to_cache", forge_save_pil_to_file)
    template = next(b for b in _walk(blocks, []) if getattr(b, "elem_id", None) ==
                    "easyphoto_template")
    photo = faces_dir / "obama.jpg"
    image = template.preprocess(ImageData(path=str(photo), orig_name=photo.name))
    with Image.open(photo) as original:
        assert image.size == original.size
    added = templates.add_template(context, image)
    with Image.open(added) as stored:
        assert added.name == "template.png" and stored.size == image.size
