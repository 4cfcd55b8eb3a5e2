"""A trained user can always be painted: a face-id image that is missing, unreadable or shows
no face falls back to the reference photo, and the result says so."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from easyphoto_core.params import GenerateParams, parse_params
from easyphoto_core.pipeline.portrait import PortraitPipeline, check_prompt_tags
from easyphoto_core.workspace import Workspace


class OnlyFacesIn:
    """A detector that finds a face only in images whose top-left pixel is 255 (the photo of a
    person), none in the grey 'validation image' that drew no face."""

    def detect(self, image):
        if image[0, 0, 0] == 255:
            return [SimpleNamespace(area=100.0, box=np.array([0, 0, 10, 10], np.float32))]
        return []


@pytest.fixture()
def pipeline(tmp_path):
    workspace = Workspace(tmp_path)
    user = workspace.user("ann")
    user.root.mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(user.reference_photo)
    user.lora_file.write_bytes(b"lora")
    models = SimpleNamespace(detector=OnlyFacesIn(), landmarks=None)
    return PortraitPipeline(backend=None, face_models=models, workspace=workspace), user


def test_a_faceless_face_id_image_falls_back_to_the_reference_with_a_note(pipeline):
    portrait, user = pipeline
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(user.face_id_image)
    notes: list[str] = []
    assets = portrait.load_user("ann", parse_params(GenerateParams), notes)
    assert assets.face_id is assets.reference
    assert len(notes) == 1 and "face-id image could not be used" in notes[0]
    assert "reference photo" in notes[0]


def test_an_unreadable_face_id_image_falls_back_too(pipeline):
    portrait, user = pipeline
    user.face_id_image.write_bytes(b"not a png")
    notes: list[str] = []
    assert portrait.load_user("ann", parse_params(GenerateParams), notes).face_id.shape == \
        (32, 32, 3)
    assert notes


def test_a_good_face_id_image_is_used_silently(pipeline):
    portrait, user = pipeline
    face_id = np.full((32, 32, 3), 255, np.uint8)
    face_id[1, 1] = 7
    Image.fromarray(face_id).save(user.face_id_image)
    notes: list[str] = []
    assets = portrait.load_user("ann", parse_params(GenerateParams), notes)
    assert assets.face_id[1, 1, 0] == 7 and notes == []


@pytest.mark.parametrize("prompt", ["a <lora:x:2> photo", "<LyCo:y>", "<hypernet:z:1>",
                                    "< lora : evil >"])
def test_prompt_tags_are_refused(prompt):
    with pytest.raises(ValueError, match="cannot add LoRAs"):
        check_prompt_tags(parse_params(GenerateParams, {"prompt": prompt}))
    with pytest.raises(ValueError, match="negative prompt"):
        check_prompt_tags(parse_params(GenerateParams, {"negative_prompt": prompt}))
    check_prompt_tags(parse_params(GenerateParams, {"prompt": "a photo, <3 lovely"}))
