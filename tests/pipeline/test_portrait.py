"""The portrait pipeline end to end on the tiny models, with real photos as templates and users."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from easyphoto_core.params import GenerateParams, TrainParams, parse_params
from easyphoto_core.pipeline.backend import BaseModelMismatchError, MissingModelError
from easyphoto_core.pipeline.diffusers_backend import DiffusersBackend, ModelCache
from easyphoto_core.pipeline.portrait import PortraitPipeline, UnknownUserError
from easyphoto_core.pipeline.stages import TemplateFaceError
from easyphoto_core.workspace import Workspace
from tests.pipeline.conftest import write_random_lora

FAST = {"first_diffusion_resolution": 256, "first_diffusion_steps": 4,
        "second_diffusion_steps": 4, "first_denoising_strength": 0.5,
        "second_denoising_strength": 0.5, "seed": 7}


def train_stand_in(workspace, user_id, photos, face_models, checkpoint, *, seed, base="sd_v1"):
    """A user as training leaves one: dataset + embeddings + reference, and a (random) LoRA."""
    from easyphoto_core.preprocess import preprocess_photos

    user = workspace.user(user_id)
    params = parse_params(TrainParams, {"resolution": 256, "min_photos": 2})
    preprocess_photos(photos, user, params, face_models)
    shutil.copyfile(user.dataset_dir / "reference.png", user.reference_photo)
    write_random_lora(user.lora_file, checkpoint, seed=seed, base=base)
    return user


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_files, faces_dir, face_models):
    workspace = Workspace(tmp_path_factory.mktemp("ws"))
    train_stand_in(workspace, "obama", [faces_dir / f"obama{n}.jpg" for n in ("", "2", "3")],
                   face_models, tiny_files.checkpoint, seed=1)
    train_stand_in(workspace, "kit", [faces_dir / "kit1.jpg", faces_dir / "kit2.jpg"],
                   face_models, tiny_files.checkpoint, seed=2)
    backend = DiffusersBackend(base_model=tiny_files.checkpoint,
                               controlnet_dirs=[tiny_files.checkpoint.parent],
                               cache=ModelCache(torch.device("cpu"), torch.float32))
    return PortraitPipeline(backend=backend, face_models=face_models, workspace=workspace)


def record(events: list):
    """A pipeline callback (step, total, stage) keeping each call as a dict."""
    return lambda step, total, stage: events.append(
        {"stage": stage, "step": step, "total": total})


def photo(faces_dir, name, *, width: int | None = None) -> np.ndarray:
    image = Image.open(faces_dir / name).convert("RGB")
    if width is not None:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    return np.asarray(image)


# The two-person photo at half size: the seam pass's attention grows with the square of the
# band box's pixels, and at full size (1126 x 661) it was 20 of the test's 30 s on a CPU.
TWO_PEOPLE_WIDTH = 560


def test_one_person_keeps_size_and_everything_outside_the_face(studio, faces_dir):
    template = photo(faces_dir, "biden.jpg")
    unet = studio.backend.cache.checkpoint(studio.backend.base_model).unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    result = studio(template, ["obama"], parse_params(GenerateParams, FAST),
                    return_intermediates=True)
    # the user's LoRA is off the shared base model once the portrait is done
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert result.image.shape == template.shape
    outside = result.intermediates["paste_weight"] <= 0
    assert outside.mean() > 0.3  # the test means something: much of the photo is outside
    assert np.array_equal(result.image[outside], template[outside])
    assert not np.array_equal(result.image[~outside], template[~outside])
    assert [f.user_id for f in result.faces] == ["obama"]
    for name in ("face1_fused", "face1_openpose", "face1_canny", "face1_mask", "face1_replace"):
        assert name in result.intermediates


def test_two_people_left_to_right_each_with_a_score(studio, faces_dir):
    template = photo(faces_dir, "two_people.jpg", width=TWO_PEOPLE_WIDTH)
    events = []
    params = parse_params(GenerateParams, {**FAST, "seam_steps": 6,
                                           "seam_denoising_strength": 0.5})
    result = studio(template, ["kit", "obama"], params, callback=record(events),
                    return_intermediates=True)
    assert result.image.shape == template.shape
    assert [f.user_id for f in result.faces] == ["kit", "obama"]
    assert result.faces[0].box[0] < result.faces[1].box[0]
    assert "seam_mask" in result.intermediates
    outside = (result.intermediates["paste_weight"] <= 0) & (result.intermediates["seam_mask"] == 0)
    assert np.array_equal(result.image[outside], template[outside])
    for face in result.faces:
        assert face.identity is None or 0.0 <= face.identity.score <= 1.0
    # the seam pass paints the box around the band (not the whole photo), with the params' steps,
    # and reports its progress
    crop = result.intermediates["seam_pass_crop"]
    assert crop.shape[0] * crop.shape[1] < 0.9 * template.shape[0] * template.shape[1]
    seam = [e for e in events if e["stage"] == "seam pass"]
    assert seam and seam[-1]["step"] == seam[-1]["total"] and 1 <= seam[-1]["total"] <= 6


def test_no_seam_pass_at_zero_strength(studio, faces_dir):
    template = photo(faces_dir, "two_people.jpg", width=TWO_PEOPLE_WIDTH)
    events = []
    studio(template, ["kit", "obama"],
           parse_params(GenerateParams, {**FAST, "seam_denoising_strength": 0.0}),
           callback=record(events))
    assert events and not any(e["stage"] == "seam pass" for e in events)


def test_same_seed_same_portrait(studio, faces_dir):
    template = photo(faces_dir, "biden.jpg")
    params = parse_params(GenerateParams, FAST)
    first, second = (studio(template, ["obama"], params).image for _ in range(2))
    assert np.array_equal(first, second)


def test_progress_callback_and_interrupt(studio, faces_dir):
    from easyphoto_core.pipeline.sampler import Interrupted

    template = photo(faces_dir, "biden.jpg")
    events = []
    studio(template, ["obama"], parse_params(GenerateParams, FAST), callback=record(events))
    stages = [e["stage"] for e in events]
    assert "face 1: first diffusion" in stages and "face 1: second diffusion" in stages
    with pytest.raises(Interrupted):
        studio(template, ["obama"], parse_params(GenerateParams, FAST), interrupt=lambda: True)


class Untouchable:
    """Face models that fail the test when check_inputs reaches for them."""

    def __getattr__(self, name):
        raise AssertionError(f"check_inputs used the face models ({name})")


def test_check_inputs_runs_no_face_model_and_loads_no_lora(studio, faces_dir, monkeypatch):
    """check_inputs runs on the request thread: files, params, ids and headers only."""
    pipeline = PortraitPipeline(backend=studio.backend, face_models=Untouchable(),
                                workspace=studio.workspace)
    loaded = []
    monkeypatch.setattr(studio.backend.cache, "lora", lambda path: loaded.append(path))
    pipeline.check_inputs(np.full((256, 256, 3), 127, np.uint8), ["obama", "kit"],
                          parse_params(GenerateParams, FAST))
    assert loaded == []


def test_no_face_in_template_fails_the_job(studio):
    blank = np.full((256, 256, 3), 127, np.uint8)
    with pytest.raises(TemplateFaceError, match="no face"):
        studio(blank, ["obama"], parse_params(GenerateParams, FAST))


def test_more_user_ids_than_faces(studio, faces_dir):
    with pytest.raises(TemplateFaceError, match="1 face"):
        studio.pair_faces(photo(faces_dir, "biden.jpg"), ["obama", "kit"])


def test_unknown_user_id(studio, faces_dir):
    with pytest.raises(UnknownUserError, match="nobody"):
        studio.check_inputs(photo(faces_dir, "biden.jpg"), ["nobody"],
                            parse_params(GenerateParams, FAST))


def test_lora_of_another_base_type(studio, faces_dir, tiny_files):
    user = studio.workspace.user("xl")
    user.root.mkdir(parents=True)
    write_random_lora(user.lora_file, tiny_files.checkpoint, base="sdxl_base_v1-0")
    with pytest.raises(BaseModelMismatchError, match="sdxl"):
        studio.check_inputs(photo(faces_dir, "biden.jpg"), ["xl"],
                            parse_params(GenerateParams, FAST))


def test_missing_controlnet_names_file_and_folder(studio, faces_dir, tmp_path):
    pipeline = PortraitPipeline(
        backend=DiffusersBackend(base_model=studio.backend.base_model, controlnet_dirs=[tmp_path],
                                 cache=studio.backend.cache),
        face_models=studio.face_models, workspace=studio.workspace)
    with pytest.raises(MissingModelError, match="control_v11p_sd15_canny") as caught:
        pipeline.check_inputs(photo(faces_dir, "biden.jpg"), ["obama"],
                              parse_params(GenerateParams, FAST))
    assert str(tmp_path) in str(caught.value)
