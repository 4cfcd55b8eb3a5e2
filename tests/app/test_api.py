from __future__ import annotations

import pytest

pytest.importorskip("gradio")
from fastapi.testclient import TestClient  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.params import TrainParams, field_specs  # noqa: E402
from easyphoto_core.workspace import Workspace, atomic_write_bytes  # noqa: E402


@pytest.fixture()
def client(tmp_path):
    workspace = Workspace(tmp_path)
    alice = workspace.user("alice")
    atomic_write_bytes(alice.lora_file, b"x")
    atomic_write_bytes(alice.reference_photo, b"x")
    workspace.user("bob").root.mkdir(parents=True)
    return TestClient(create_app(StudioContext(workspace, "diffusers")))


def test_params_route_serves_the_params_model(client):
    body = client.get("/easyphoto/v1/params").json()
    assert body["train"]["learning_rate"] == field_specs(TrainParams)["learning_rate"]
    assert body["generate"]["lora_weight"]["default"] == pytest.approx(0.9)


def test_user_ids_route_lists_trained_users(client):
    assert client.get("/easyphoto/v1/user_ids").json() == {
        "user_ids": ["alice", "bob"], "trained": ["alice"]}


def test_standalone_without_auth_is_open_and_serves_the_ui(client):
    assert client.get("/easyphoto/v1/version").json()["backend"] == "diffusers"
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
