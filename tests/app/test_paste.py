"""Pasting a portrait's infotext back: the standalone upload handler and the host's field list."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from easyphoto_app.paste import host_paste_fields, load_settings_handler  # noqa: E402
from easyphoto_core import infotext  # noqa: E402
from easyphoto_core.params import GenerateParams  # noqa: E402


def _portrait(tmp_path, **values):
    params = GenerateParams(**values)
    text = infotext.build(params, infotext.Provenance(seed=5, width=8, height=8,
                                                      user_ids=["alice"]))
    path = tmp_path / "portrait.png"
    infotext.save_png(path, np.zeros((8, 8, 3), np.uint8), text)
    return path


def _value(update):
    return update.get("value") if isinstance(update, dict) else getattr(update, "value", None)


def test_load_settings_restores_widgets_and_names_user_ids(tmp_path):
    path = _portrait(tmp_path, lora_weight=0.55, color_control=True, prompt="a, b: c")
    names = ["lora_weight", "color_control", "prompt", "seed"]
    *updates, status = load_settings_handler(names)(str(path))
    assert [_value(u) for u in updates] == [0.55, True, "a, b: c", 5]
    assert "alice" in _value(status)


def test_an_image_without_settings_changes_nothing_and_says_so(tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    *updates, status = load_settings_handler(["lora_weight"])(str(plain))
    assert _value(updates[0]) is None
    assert "no generation settings" in _value(status)


def test_host_paste_fields_use_the_infotext_keys():
    widgets = {"lora_weight": "w1", "seed": "w2", "prompt": "w3"}
    assert host_paste_fields(widgets) == [("w1", "EasyPhoto LoRA weight"), ("w2", "Seed"),
                                          ("w3", "Prompt")]
