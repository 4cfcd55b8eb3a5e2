"""Jobs through the API under real faults, on the tiny models: the trainer killed mid-step, a
cancel then a resume, and a re-training that fails leaving the user byte-for-byte as it was;
bad requests (ids differing by case, prompt tags, a full queue, an unwritable store)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import pytest

pytest.importorskip("gradio")
from fastapi.testclient import TestClient  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext, StudioSettings  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402
from tests.api_helpers import files_of, wait_for  # noqa: E402

TRAIN = {"resolution": 256, "rank": 4, "network_alpha": 4, "max_train_steps": 2,
         "val_and_checkpointing_steps": 1, "validation": False, "lora_selection": "best"}
LONG = {**TRAIN, "max_train_steps": 8, "val_and_checkpointing_steps": 2}
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg"]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, shared_models_dir):
    from easyphoto_core.sd.tiny import write_tiny_models

    models = write_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)
    host_lora = tmp_path_factory.mktemp("host_lora")
    settings = StudioSettings(base_model=models.checkpoint, lora_copy_dirs=[host_lora],
                              controlnet_dirs=[models.checkpoint.parent],
                              weights_dir=shared_models_dir, device="cpu")
    context = StudioContext(Workspace(tmp_path_factory.mktemp("ws")), "diffusers",
                            settings=settings)
    return TestClient(create_app(context)), context, host_lora


def train(client, faces_dir, user_id, params):
    response = client.post("/easyphoto/v1/train",
                           data={"user_id": user_id, "params": json.dumps(params)},
                           files=files_of(faces_dir, PHOTOS))
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait_until(client, job_id, condition, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/easyphoto/v1/jobs/{job_id}").json()
        if condition(record):
            return record
        assert record["state"] in ("queued", "running"), record["message"]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id}: condition not met; {record}")


def digest(*folders) -> dict[str, str]:
    """sha256 of every file the user has (a training's staging folder is not the user's)."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            relative = str(path.relative_to(folder))
            if path.is_file() and not relative.startswith((".train-", ".old-")):
                found[f"{folder.name}/{relative}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def trained_user(user, host_lora):
    """What a finished training leaves (its bytes only have to be recognisable)."""
    for folder in ("dataset", "checkpoints", "validation"):
        (user.root / folder).mkdir(parents=True)
        (user.root / folder / "kept.bin").write_bytes(os.urandom(64))
    for path in (user.lora_file, user.reference_photo, user.face_id_image, user.training_report,
                 host_lora / user.lora_file.name):
        path.write_bytes(os.urandom(256))


def test_retrain_killed_then_cancelled_keeps_the_user_then_resume_swaps_in(studio, faces_dir):
    client, context, host_lora = studio
    user = context.workspace.user("ann")
    trained_user(user, host_lora)
    before = digest(user.root, host_lora)
    assert len(before) == 8

    # 1. the trainer is killed (kill -9) mid-run, after its first checkpoint
    job_id = train(client, faces_dir, "ann", LONG)
    running = wait_until(client, job_id, lambda r: (r["progress"].get("checkpoint_step") or 0) >= 2)
    os.kill(running["progress"]["trainer_pid"], signal.SIGKILL)
    killed = wait_for(client, job_id)
    assert killed["state"] == "failed" and killed["can_resume"]
    assert "killed by SIGKILL" in killed["message"] and "trainer.log" in killed["message"]
    assert digest(user.root, host_lora) == before

    # 2. resumed: it continues from step 2; cancelled after its next checkpoint
    resumed = client.post(f"/easyphoto/v1/jobs/{job_id}/resume").json()
    assert resumed["state"] in ("queued", "running")  # the idle worker may take it at once
    resumed = wait_until(client, job_id, lambda r: (r["progress"].get("checkpoint_step") or 0) >= 4)
    assert resumed["progress"]["start_step"] == 2
    assert client.post(f"/easyphoto/v1/jobs/{job_id}/cancel").status_code == 200
    cancelled = wait_for(client, job_id)
    assert cancelled["state"] == "cancelled", cancelled["message"]
    assert cancelled["message"].startswith("cancelled by a request to the API")
    assert "current LoRA is unchanged" in cancelled["message"]
    assert digest(user.root, host_lora) == before

    # 3. resumed again (the earlier cancel does not count): done, and only now swapped in
    client.post(f"/easyphoto/v1/jobs/{job_id}/resume")
    done = wait_for(client, job_id)
    assert done["state"] == "done", done["message"]
    after = digest(user.root, host_lora)
    assert after["ann/easyphoto_ann.safetensors"] != before["ann/easyphoto_ann.safetensors"]
    assert after[f"{host_lora.name}/easyphoto_ann.safetensors"] == \
        after["ann/easyphoto_ann.safetensors"]
    assert not list(user.root.glob(".train-*"))
    assert after["ann/reference.png"] != before["ann/reference.png"]
    assert "ann/face_id.png" not in after  # no validation: no face-id image (the old one goes)
    listed = client.get("/easyphoto/v1/jobs").json()["jobs"]
    assert listed[0]["id"] == job_id and listed[0]["state"] == "done"


def test_bad_requests_are_refused_with_the_cause(studio, faces_dir):
    client, context, _ = studio
    context.workspace.user("bob").root.mkdir(parents=True, exist_ok=True)
    twin = client.post("/easyphoto/v1/train", data={"user_id": "Bob"},
                       files=files_of(faces_dir, PHOTOS[:1]))
    assert twin.status_code == 400 and "'bob'" in twin.json()["detail"]
    device = client.post("/easyphoto/v1/train", data={"user_id": "nul"},
                         files=files_of(faces_dir, PHOTOS[:1]))
    assert device.status_code == 400 and "Windows" in device.json()["detail"]
    template = (faces_dir / "biden.jpg").read_bytes()
    tagged = client.post("/easyphoto/v1/generate",
                         data={"user_ids": "ghost",
                               "params": json.dumps({"prompt": "photo, <lora:other:2>"})},
                         files={"template": ("t.jpg", template, "image/jpeg")})
    assert tagged.status_code == 400 and "<lora:other:2>" in tagged.json()["detail"]
    long_id = client.get("/easyphoto/v1/jobs/" + "a" * 5000)
    assert long_id.status_code == 404 and "12 hex digits" in long_id.json()["detail"]
    context.jobs.max_queued = 0
    try:
        full = client.post("/easyphoto/v1/train", data={"user_id": "zed"},
                           files=files_of(faces_dir, PHOTOS[:1]))
    finally:
        context.jobs.max_queued = 16
    assert full.status_code == 429 and "queue is full" in full.json()["detail"]
    finished = client.get("/easyphoto/v1/jobs").json()["jobs"][0]["id"]
    again = client.post(f"/easyphoto/v1/jobs/{finished}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_an_unwritable_store_is_a_503_with_the_cause(tmp_path, faces_dir):
    from fastapi import FastAPI

    from easyphoto_app.api import register_routes

    (tmp_path / "jobs").write_text("a file where the jobs folder should be")
    context = StudioContext(Workspace(tmp_path), "diffusers",
                            settings=StudioSettings(base_model=tmp_path / "jobs"))
    app = FastAPI()
    register_routes(app, context, credentials={})  # starts although the store is unusable
    client = TestClient(app)
    response = client.post("/easyphoto/v1/train", data={"user_id": "ann"},
                           files=files_of(faces_dir, PHOTOS[:1]))
    assert response.status_code == 503 and "jobs cannot be used" in response.json()["detail"]
    assert client.get("/easyphoto/v1/jobs").status_code == 503
