"""scripts/easyphoto.py loaded the way A1111 loads it, against the stand-in host modules."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.api_helpers import files_of, wait_for

REPO = Path(__file__).resolve().parents[2]
STAND_IN = Path(__file__).resolve().parent / "stand_in_host"


@pytest.fixture()
def host(monkeypatch, tmp_path):
    """Import the stand-in host, then load scripts/easyphoto.py like modules/scripts.py does."""
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "my_loras"))
    monkeypatch.setenv("STAND_IN_API_AUTH", "alice:s3cr:et")
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    _forget_host_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(STAND_IN))
    spec = importlib.util.spec_from_file_location("easyphoto.py", REPO / "scripts" / "easyphoto.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from modules import script_callbacks, shared

    yield script_callbacks.registered, shared
    _forget_host_modules(monkeypatch)


def _forget_host_modules(monkeypatch):
    # each test gets a fresh host, and our glue must bind to it, not to an earlier one
    for name in list(sys.modules):
        if name.split(".")[0] in ("modules", "extensions", "easyphoto_webui"):
            monkeypatch.delitem(sys.modules, name)


def test_script_registers_tab_settings_and_routes(host):
    registered, _ = host
    assert [len(registered[k]) for k in ("ui_tabs", "ui_settings", "app_started")] == [1, 1, 1]


def test_tab_is_named_easyphoto(host):
    registered, _ = host
    (blocks, title, elem_id), = registered["ui_tabs"][0]()
    assert (title, elem_id) == ("EasyPhoto", "easyphoto")
    assert type(blocks).__name__ == "Blocks"


def test_settings_go_to_the_easyphoto_section(host):
    registered, shared = host
    registered["ui_settings"][0]()
    info = shared.opts.data_labels["easyphoto_workspace"]
    assert info.section == ("easyphoto", "EasyPhoto")


def test_routes_enforce_the_hosts_api_auth(host, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    registered, _ = host
    app = FastAPI()
    registered["app_started"][0](None, app)
    client = TestClient(app)
    assert client.get("/easyphoto/v1/version").status_code == 401
    wrong = base64.b64encode(b"alice:nope").decode()
    assert client.get("/easyphoto/v1/version", headers={"Authorization": f"Basic {wrong}"}
                      ).status_code == 401
    right = base64.b64encode(b"alice:s3cr:et").decode()  # passwords may contain ':'
    response = client.get("/easyphoto/v1/version", headers={"Authorization": f"Basic {right}"})
    assert response.status_code == 200
    body = response.json()
    assert body["backend"] == "a1111"
    assert body["lora_dir"] == str(tmp_path / "my_loras")  # --lora-dir honoured
    assert body["workspace"] == str((tmp_path / "ws").resolve())
    paths = client.get("/openapi.json").json()["paths"]
    assert "/easyphoto/v1/user_ids" in paths  # listed in the host's OpenAPI schema


def test_training_from_the_host_uses_its_checkpoint_lora_dir_and_frees_its_gpu(
        monkeypatch, tmp_path, faces_dir, shared_models_dir):
    """The real trainer, driven through the A1111 routes, on a tiny checkpoint 'loaded' in the
    stand-in host: the LoRA lands in --lora-dir and the host model leaves the GPU meanwhile."""
    import json

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from easyphoto_core.sd.tiny import write_tiny_models

    models = write_tiny_models(tmp_path / "models", seed=0)
    monkeypatch.setenv("STAND_IN_CHECKPOINT", str(models.checkpoint))
    monkeypatch.setenv("STAND_IN_LORA_DIR", str(tmp_path / "my_loras"))
    monkeypatch.setenv("STAND_IN_API_AUTH", "")
    monkeypatch.setenv("EASYPHOTO_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("EASYPHOTO_MODELS_DIR", str(shared_models_dir))  # YuNet, offline
    _forget_host_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(STAND_IN))
    spec = importlib.util.spec_from_file_location("easyphoto.py", REPO / "scripts" / "easyphoto.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    from modules import script_callbacks, sd_models

    app = FastAPI()
    script_callbacks.registered["app_started"][-1](None, app)
    client = TestClient(app)
    assert client.get("/easyphoto/v1/version").json()["base_model"] == str(models.checkpoint)
    params = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 1,
              "validation": False}
    photos = files_of(faces_dir, ["obama.jpg", "obama2.jpg", "obama3.jpg"])
    job = client.post("/easyphoto/v1/train", data={"user_id": "obama",
                                                   "params": json.dumps(params)}, files=photos)
    assert job.status_code == 200, job.text
    record = wait_for(client, job.json()["id"], timeout=300)
    assert record["state"] == "done", record["message"]
    assert (tmp_path / "my_loras" / "easyphoto_obama.safetensors").is_file()
    assert sd_models.calls[-2:] == ["unload_model_weights", "send_model_to_device"]

    # then a portrait, painted by the host's img2img with ControlNet units and the LoRA tag
    from modules import processing

    generate = {"first_diffusion_resolution": 256, "first_diffusion_steps": 4,
                "second_diffusion_steps": 4, "seed": 5}
    template = (faces_dir / "biden.jpg").read_bytes()
    job = client.post("/easyphoto/v1/generate",
                      data={"user_ids": "obama", "params": json.dumps(generate)},
                      files={"template": ("biden.jpg", template, "image/jpeg")})
    assert job.status_code == 200, job.text
    record = wait_for(client, job.json()["id"], timeout=300)
    assert record["state"] == "done", record["message"]
    assert len(processing.runs) >= 2  # the first and second diffusion
    assert all("<lora:easyphoto_obama:" in run["p"].settings["prompt"] for run in processing.runs)
    assert all(run["lock_held"] and run["units"] for run in processing.runs)
    assert client.get(f"/easyphoto/v1/jobs/{record['id']}/image").status_code == 200

