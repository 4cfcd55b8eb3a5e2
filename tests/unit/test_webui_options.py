"""Settings → EasyPhoto on the stand-in host: registered in the EasyPhoto section, and each read
where it applies (per job, per portrait)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.webui.stand_ins import use_host


@pytest.fixture()
def options(monkeypatch):
    use_host(monkeypatch, "a1111")
    import modules.shared as shared

    from easyphoto_webui import options as module

    module.add_options()
    yield module, shared
    from easyphoto_core.i18n import set_default_language

    set_default_language("en")


def test_options_are_in_the_easyphoto_section(options):
    module, shared = options
    from easyphoto_webui import host

    host.add_settings()
    for key in [*module.OPTIONS, "easyphoto_workspace"]:
        info = shared.opts.data_labels[key]
        assert info.section == ("easyphoto", "EasyPhoto")
        # a category the host registers, or the page puts the section under "Uncategorized"
        assert info.category_id == "training" and info.category_id in shared.CATEGORIES


def test_options_register_on_a_host_without_categories(options, monkeypatch):
    """A1111 before 1.6: OptionInfo has no category_id and a section is only (id, label)."""
    module, shared = options

    class OldOptionInfo:
        def __init__(self, default=None, label="", component=None, component_args=None,
                     onchange=None, section=None):
            self.default, self.label, self.section = default, label, section

    monkeypatch.setattr(shared, "OptionInfo", OldOptionInfo)
    shared.opts.data_labels.clear()
    module.add_options()
    for key in module.OPTIONS:
        info = shared.opts.data_labels[key]
        assert info.section == ("easyphoto", "EasyPhoto") and not hasattr(info, "category_id")


def test_face_backend_choices_are_the_choosers():
    from easyphoto_core.faces.chooser import FACE_BACKENDS
    from easyphoto_webui.options import FACE_BACKENDS as OFFERED

    assert OFFERED == FACE_BACKENDS


def test_studio_options_follow_the_settings_at_each_read(options):
    module, shared = options
    assert module.studio_options() == {"face_backend": "auto", "keep_face_models": True,
                                       "user_id_slots": 5}
    shared.opts.data.update(easyphoto_face_backend="dlib", easyphoto_keep_face_models=False,
                            easyphoto_user_id_slots=2)
    assert module.studio_options() == {"face_backend": "dlib", "keep_face_models": False,
                                       "user_id_slots": 2}
    shared.opts.data["easyphoto_user_id_slots"] = 9
    assert module.user_id_slots() == 5


def test_language_auto_follows_the_hosts_localization(options):
    from easyphoto_core.i18n import current_language

    module, shared = options
    shared.opts.data["localization"] = "zh_CN"
    module.studio_options()
    assert current_language() == "zh"
    shared.opts.data["easyphoto_language"] = "en"
    module.studio_options()
    assert current_language() == "en"


def test_save_portrait_uses_the_hosts_save_image_and_folder(options, monkeypatch, tmp_path):
    module, shared = options
    calls = []
    images = type(sys)("modules.images")
    images.save_image = lambda image, path, basename, **kw: calls.append((path, kw)) or (
        str(Path(path) / "00001-5.png"), None)
    monkeypatch.setitem(sys.modules, "modules.images", images)
    shared.opts.data["outdir_img2img_samples"] = str(tmp_path / "img2img")
    text = "p\nNegative prompt: n\nSteps: 5, Seed: 77, Size: 8x8, EasyPhoto version: 1"
    path = module.save_portrait(np.zeros((8, 8, 3), np.uint8), text, None)
    assert path == tmp_path / "img2img" / "00001-5.png"
    assert calls[0][0] == str(tmp_path / "img2img")
    assert calls[0][1]["info"] == text and calls[0][1]["seed"] == "77"
    # "Output directory for images" set: A1111 saves every img2img result there, so do we
    shared.opts.data["outdir_samples"] = str(tmp_path / "all")
    module.save_portrait(np.zeros((8, 8, 3), np.uint8), text, None)
    assert calls[1][0] == str(tmp_path / "all")
    shared.opts.data["easyphoto_save_folder"] = str(tmp_path / "mine")
    module.save_portrait(np.zeros((8, 8, 3), np.uint8), text, None)
    assert calls[2][0] == str(tmp_path / "mine")


def test_send_to_and_paste_use_the_hosts_registry(options, monkeypatch):
    registered, pasted = [], []
    utils = type(sys)("modules.infotext_utils")
    utils.create_buttons = lambda tabs: {tab: f"button:{tab}" for tab in tabs}
    utils.ParamBinding = lambda **kw: kw
    utils.register_paste_params_button = registered.append
    utils.add_paste_fields = lambda tab, init, fields: pasted.append((tab, init, fields))
    monkeypatch.setitem(sys.modules, "modules.infotext_utils", utils)
    import gradio as gr

    from easyphoto_webui.send_to import add_paste_button, bind_paste, bind_results

    with gr.Blocks():
        buttons = bind_results("gallery", "infotext")
        prompt = gr.Textbox()
        button = add_paste_button({"prompt": prompt})
    assert registered[-1] == {"paste_button": button, "tabname": "easyphoto",
                              "source_text_component": prompt}
    registered.clear()
    pasted.clear()
    assert list(buttons) == ["img2img", "inpaint", "extras"]
    with gr.Blocks():
        bind_results("gallery", "infotext")
    assert registered[0] == {"paste_button": "button:img2img", "tabname": "img2img",
                             "source_text_component": "infotext",
                             "source_image_component": "gallery"}
    bind_paste({"lora_weight": "w", "seed": "s"}, "prompt", "paste")
    assert pasted == [("easyphoto", None, [("w", "EasyPhoto LoRA weight"), ("s", "Seed")])]
    assert registered[-1]["tabname"] == "easyphoto"


def test_a_host_without_infotext_utils_builds_the_tab_without_the_buttons(options, monkeypatch):
    for name in ("modules.infotext_utils", "modules.generation_parameters_copypaste"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError
    from easyphoto_webui.send_to import add_paste_button, bind_results

    assert bind_results("gallery", "infotext") == {}
    assert add_paste_button({"prompt": None}) is None
