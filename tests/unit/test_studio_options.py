"""Each studio option (Settings → EasyPhoto in the host, flags standalone) is read where it
applies: face backend, keep face models loaded, saving portraits where the host keeps them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from easyphoto_core import studio
from easyphoto_core.context import StudioContext, StudioSettings
from easyphoto_core.faces.base import FaceModelError
from easyphoto_core.workspace import Workspace


def _context(tmp_path: Path, **options) -> StudioContext:
    settings = StudioSettings(weights_dir=tmp_path / "no-weights", options=lambda: options)
    return StudioContext(Workspace(tmp_path / "ws"), "diffusers", settings=settings)


def test_face_backend_dlib_is_used_alone(tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    monkeypatch.setenv("EASYPHOTO_OFFLINE", "1")
    context = _context(tmp_path, face_backend="dlib")
    models = studio.face_models(context)
    assert models.describe()["detector"] == "dlib_hog"
    assert context.describe()["face_models"]["detector"] == "dlib_hog"


def test_face_backend_yunet_without_its_file_fails_instead_of_falling_back(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("EASYPHOTO_OFFLINE", "1")
    with pytest.raises(FaceModelError, match="yunet") as error:
        studio.face_models(_context(tmp_path, face_backend="yunet"))
    assert "dlib_hog" not in str(error.value)


def test_keep_face_models_decides_whether_they_stay_loaded(tmp_path, monkeypatch):
    loads = []

    class Fake:
        @classmethod
        def load(cls, paths, **kwargs):
            loads.append(kwargs["backend"])
            return object()

    monkeypatch.setattr("easyphoto_core.faces.chooser.FaceModels", Fake)
    options = {"keep_face_models": True, "face_backend": "auto"}
    settings = StudioSettings(options=lambda: options)
    context = StudioContext(Workspace(tmp_path / "ws"), "diffusers", settings=settings)
    assert studio.face_models(context) is studio.face_models(context)
    assert loads == ["auto"]
    options["face_backend"] = "dlib"  # a changed setting loads the chosen backend
    studio.face_models(context)
    assert loads == ["auto", "dlib"]
    options["keep_face_models"] = False
    first, second = studio.face_models(context), studio.face_models(context)
    assert first is not second and "face_models" not in context.resources


def test_a_host_save_hook_gets_the_portrait_and_its_infotext(tmp_path, monkeypatch):
    saved = []
    settings = StudioSettings(save_portrait=lambda image, text, params: saved.append(
        (image.shape, text, params.lora_weight)))
    context = StudioContext(Workspace(tmp_path / "ws"), "diffusers", settings=settings)
    result = SimpleNamespace(image=np.zeros((16, 24, 3), np.uint8), faces=[], notes=[], seed=3)
    monkeypatch.setattr(studio, "portrait_pipeline", lambda ctx: lambda *a, **k: result)
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    Image.new("RGB", (24, 16)).save(input_dir / "template.png")
    handle = SimpleNamespace(
        record=SimpleNamespace(id="0123456789ab", inputs={
            "params": {"lora_weight": 0.5}, "user_ids": ["alice"]}),
        input_dir=input_dir, report=lambda **kw: None, cancelled=False)
    answer = studio._run_generation(context, handle)
    assert saved and saved[0][0] == (16, 24, 3) and saved[0][2] == 0.5
    assert "Seed: 3" in saved[0][1]
    with Image.open(answer["image"]) as image:
        assert image.info["parameters"] == saved[0][1]
    assert answer["infotext"] == saved[0][1]  # the record's, for the host's Send to img2img
