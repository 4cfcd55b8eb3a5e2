from __future__ import annotations

import pytest

from easyphoto_core.params import (
    GenerateParams,
    ParamsError,
    TrainParams,
    field_specs,
    infotext,
    params_to_dict,
    parse_params,
)


def test_training_defaults_are_easyphotos():
    params = parse_params(TrainParams)
    assert (params.resolution, params.rank, params.network_alpha) == (512, 128, 64)
    assert params.learning_rate == pytest.approx(1e-4)
    assert params.val_and_checkpointing_steps == 100
    assert (params.max_train_steps, params.steps_per_photos) == (800, 200)
    assert (params.train_batch_size, params.gradient_accumulation_steps) == (1, 4)
    assert params.effective_batch_size == 4


@pytest.mark.parametrize(("photos", "steps"), [(1, 200), (3, 600), (4, 800), (20, 800)])
def test_optimizer_steps_is_min_of_per_photo_and_max(photos, steps):
    assert parse_params(TrainParams).optimizer_steps(photos) == steps


def test_generation_defaults_are_easyphotos():
    params = parse_params(GenerateParams)
    assert params.lora_weight == pytest.approx(0.9)
    assert params.face_fusion_ratio_before == params.face_fusion_ratio_after == pytest.approx(0.6)
    assert (params.first_diffusion_steps, params.second_diffusion_steps) == (50, 20)
    assert params.first_denoising_strength == pytest.approx(0.45)
    assert params.second_denoising_strength == pytest.approx(0.30)
    assert (params.canny_weight, params.openpose_weight) == (0.5, 0.5)
    assert params.seed == -1


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (TrainParams, "learning_rate", 5.0),
        (TrainParams, "rank", 0),
        (TrainParams, "resolution", 500),  # not a multiple of 64
        (TrainParams, "lora_selection", "median"),
        (GenerateParams, "first_denoising_strength", 1.5),
        (GenerateParams, "lora_weight", -0.1),
    ],
)
def test_out_of_range_value_is_refused_naming_the_field(model, field, value):
    with pytest.raises(ParamsError) as caught:
        parse_params(model, {field: value})
    message = str(caught.value)
    assert field in message
    assert field_specs(model)[field]["label"] in message
    assert repr(value) in message


def test_unknown_field_is_refused():
    with pytest.raises(ParamsError, match="learnig_rate"):
        parse_params(TrainParams, {"learnig_rate": 1e-4})


def test_values_round_trip_through_dict():
    params = parse_params(TrainParams, {"rank": 64, "network_alpha": 32})
    again = parse_params(TrainParams, params_to_dict(params))
    assert again == params
    assert params_to_dict(again)["rank"] == 64


def test_field_specs_carry_labels_defaults_and_bounds():
    specs = field_specs(TrainParams)
    assert specs["learning_rate"]["label"] == "Learning rate"
    assert specs["learning_rate"]["default"] == pytest.approx(1e-4)
    assert specs["rank"]["minimum"] == 1 and specs["rank"]["maximum"] == 256
    assert specs["lora_selection"]["choices"] == ["best", "fusion"]
    assert specs["resolution"]["multiple_of"] == 64  # so the UI slider moves in valid steps
    # every field has a human label, so no UI shows a raw attribute name
    for model in (TrainParams, GenerateParams):
        for name, spec in field_specs(model).items():
            assert spec["label"] and spec["label"] != name


def test_infotext_lists_only_changed_values_by_default():
    params = parse_params(GenerateParams, {"lora_weight": 0.7})
    text = infotext(params)
    assert text == {"EasyPhoto LoRA weight": "0.7"}
    assert len(infotext(params, only_changed=False)) == len(field_specs(GenerateParams)) - 2


# --- every field does something ---------------------------------------------------------------

ACTING_PACKAGES = ("easyphoto_core", "easyphoto_train", "easyphoto_webui")


def _attributes_read(paths) -> set[str]:
    import ast

    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return names


def _derived_reads(model) -> dict[str, set[str]]:
    """Methods/properties of a params model -> the fields they read (`self.<field>`)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    reads: dict[str, set[str]] = {}
    for node in tree.body[0].body:
        if isinstance(node, ast.FunctionDef):
            reads[node.name] = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                                and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return reads


@pytest.mark.parametrize("model", [TrainParams, GenerateParams])
def test_every_field_is_read_where_the_work_is_done(model):
    """A knob the UI, API and CLI offer must change something: each field is read (as an
    attribute) by the core, the trainer or the host edge, directly or through a method of its
    model. The UI listing it, the API's EasyPhoto name map or the infotext do not count."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    paths = [p for package in ACTING_PACKAGES for p in (root / package).rglob("*.py")
             if p.name not in ("params.py", "infotext.py")]
    read = _attributes_read(paths)
    for method, fields in _derived_reads(model).items():
        if method in read:
            read |= fields
    fields = getattr(model, "model_fields", None) or model.__fields__
    unread = sorted(set(fields) - read)
    assert unread == [], f"{model.__name__} fields nothing reads: {unread}"
