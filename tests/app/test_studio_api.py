"""The studio's HTTP API end to end: train a user from real photos, then paint them into a
template, on the tiny random-weight models (the real trainer subprocess and pipeline)."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest

pytest.importorskip("gradio")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext, StudioSettings  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402
from tests.api_helpers import files_of, wait_for  # noqa: E402

TRAIN = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 2,
         "val_and_checkpointing_steps": 1, "validation": False, "lora_selection": "best"}
GENERATE = {"first_diffusion_resolution": 256, "first_diffusion_steps": 4,
            "second_diffusion_steps": 4, "seed": 5}


@pytest.fixture(scope="module")
def client(tmp_path_factory, shared_models_dir):
    from easyphoto_core.sd.tiny import write_tiny_models

    models = write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)
    settings = StudioSettings(base_model=models.checkpoint,
                              controlnet_dirs=[models.checkpoint.parent],
                              lora_copy_dirs=[tmp_path_factory.mktemp("host_lora")],
                              weights_dir=shared_models_dir, device="cpu")
    context = StudioContext(Workspace(tmp_path_factory.mktemp("ws")), "diffusers",
                            settings=settings)
    return TestClient(create_app(context))


@pytest.fixture(scope="module")
def trained(client, faces_dir) -> dict:
    """The job record of user obama's training through the API (once for this module)."""
    response = client.post("/easyphoto/v1/train", data={"user_id": "obama",
                                                         "params": json.dumps(TRAIN)},
                           files=files_of(faces_dir, ["obama.jpg", "obama2.jpg", "obama3.jpg"]))
    assert response.status_code == 200, response.text
    return wait_for(client, response.json()["id"])


def test_train_then_generate_through_the_api(client, trained, faces_dir):
    assert trained["state"] == "done", trained["message"]
    assert trained["result"]["lora"].endswith("easyphoto_obama.safetensors")
    assert client.get("/easyphoto/v1/user_ids").json()["trained"] == ["obama"]

    template = (faces_dir / "biden.jpg").read_bytes()
    response = client.post("/easyphoto/v1/generate",
                           data={"user_ids": "obama", "params": json.dumps(GENERATE)},
                           files={"template": ("biden.jpg", template, "image/jpeg")})
    assert response.status_code == 200, response.text
    painted = wait_for(client, response.json()["id"])
    assert painted["state"] == "done", painted["message"]
    assert painted["result"]["faces"][0]["user_id"] == "obama"
    png = client.get(f"/easyphoto/v1/jobs/{painted['id']}/image")
    assert png.status_code == 200
    assert Image.open(io.BytesIO(png.content)).size == Image.open(faces_dir / "biden.jpg").size


@pytest.mark.skipif(os.environ.get("EASYPHOTO_TEST_SUITE") == "newest",
                    reason="its clients call an AUTOMATIC1111 host: the A1111 suite paints it")
def test_sd_webui_easyphotos_infer_route_paints_a_trained_user(client, trained, faces_dir):
    """Its clients send base64 templates with its field names and get base64 PNGs back."""
    assert trained["state"] == "done", trained["message"]
    template = base64.b64encode((faces_dir / "biden.jpg").read_bytes()).decode("ascii")
    answer = client.post("/easyphoto/easyphoto_infer_forward", json={
        "user_ids": ["obama"], "init_image": template, "first_diffusion_steps": 1,
        "second_diffusion_steps": 1, "seed": 5, "tabs": 1})  # its fields have no resolution
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["message"] == "Success" and len(body["outputs"]) == 1
    portrait = Image.open(io.BytesIO(base64.b64decode(body["outputs"][0])))
    assert portrait.size == Image.open(faces_dir / "biden.jpg").size


def test_bad_requests_say_what_is_wrong(client, faces_dir):
    bad_id = client.post("/easyphoto/v1/train", data={"user_id": "../x"},
                         files=files_of(faces_dir, ["obama.jpg"]))
    assert bad_id.status_code == 400 and "'../x'" in bad_id.json()["detail"]
    bad_param = client.post("/easyphoto/v1/train",
                            data={"user_id": "a", "params": json.dumps({"rank": 0})},
                            files=files_of(faces_dir, ["obama.jpg"]))
    assert bad_param.status_code == 400 and "rank" in bad_param.json()["detail"]
    template = (faces_dir / "biden.jpg").read_bytes()
    unknown = client.post("/easyphoto/v1/generate", data={"user_ids": "ghost"},
                          files={"template": ("biden.jpg", template, "image/jpeg")})
    assert unknown.status_code == 400 and "ghost" in unknown.json()["detail"]
    assert client.get("/easyphoto/v1/jobs/nosuchjob").status_code == 404


def test_training_without_a_base_model_is_refused(tmp_path, faces_dir):
    app = create_app(StudioContext(Workspace(tmp_path), "diffusers"))
    response = TestClient(app).post("/easyphoto/v1/train", data={"user_id": "a"},
                                    files=files_of(faces_dir, ["obama.jpg"]))
    assert response.status_code == 400 and "--base-model" in response.json()["detail"]
