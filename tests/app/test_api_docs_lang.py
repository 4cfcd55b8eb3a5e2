"""Offline /docs and /redoc, described routes, errors in the caller's language, and
sd-webui-EasyPhoto's own routes (its fields, its answer shape, the same auth)."""

from __future__ import annotations

import base64
import re

import pytest

pytest.importorskip("gradio")
from fastapi.testclient import TestClient  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402

AUTH = ("ann", "secret")


@pytest.fixture()
def client(tmp_path):
    return TestClient(create_app(StudioContext(Workspace(tmp_path), "diffusers")))


@pytest.fixture()
def locked(tmp_path):
    context = StudioContext(Workspace(tmp_path / "locked"), "diffusers")
    return TestClient(create_app(context, api_auth="ann:secret"))


@pytest.mark.parametrize("url", ["/docs", "/redoc"])
def test_docs_pages_need_no_network(client, url):
    page = client.get(url)
    assert page.status_code == 200 and "/openapi.json" in page.text
    # nothing loaded from elsewhere: no script/style/font/image from another host
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert "cdn" not in page.text.lower()


def test_every_route_of_ours_is_described_with_errors_and_examples(client):
    schema = client.get("/openapi.json").json()
    ours = {(path, method): op for path, ops in schema["paths"].items()
            for method, op in ops.items() if path.startswith("/easyphoto")}
    assert len(ours) >= 12
    for (path, method), op in ours.items():
        assert len(op.get("description", "")) > 40, (path, method)
        assert "401" in op["responses"], (path, method)
        if method == "post" and "requestBody" in op and not path.endswith(("cancel", "resume")):
            assert any("example" in media for media in op["requestBody"]["content"].values()), \
                path
    train = ours[("/easyphoto/v1/train", "post")]
    assert "/easyphoto/v1/params" in train["description"]
    assert {"400", "429", "503"} <= set(train["responses"])


def test_error_detail_follows_accept_language_and_lang(client):
    english = client.get("/easyphoto/v1/jobs/0123456789ab").json()["detail"]
    assert english == "No job '0123456789ab' in this studio."
    chinese = client.get("/easyphoto/v1/jobs/0123456789ab",
                         headers={"Accept-Language": "zh-CN,zh;q=0.9"}).json()["detail"]
    assert chinese == "此工作室中没有任务 '0123456789ab'。"
    assert client.get("/easyphoto/v1/jobs/0123456789ab?lang=zh").json()["detail"] == chinese
    # a form field `lang`, with an error raised deep in the core (the user id check)
    answer = client.post("/easyphoto/v1/train", data={"user_id": "bad/id", "lang": "zh"},
                         files=[("photos", ("a.jpg", b"x", "image/jpeg"))])
    assert answer.status_code == 400 and "用户 ID 'bad/id' 含有 '/'" in answer.json()["detail"]


def test_compat_routes_and_docs_behind_the_same_auth(locked):
    answer = locked.get("/easyphoto/v1/version")
    assert answer.status_code == 401
    for route in ("easyphoto_train_forward", "easyphoto_infer_forward"):
        assert locked.post(f"/easyphoto/{route}", json={}).status_code == 401
    assert locked.get("/docs").status_code == 401
    assert locked.get("/docs", auth=AUTH).status_code == 200


def test_compat_train_refuses_unknown_fields_by_name_in_easyphotos_shape(client):
    answer = client.post("/easyphoto/easyphoto_train_forward",
                         json={"user_id": "alice", "instance_images": [], "max_steps": 5})
    body = answer.json()
    assert answer.status_code == 400
    assert body["message"].startswith("Train error, error info:") and "max_steps" in body["message"]
    zh = client.post("/easyphoto/easyphoto_train_forward", json={"user_id": "alice",
                     "lang": "zh", "max_steps": 5}).json()["message"]
    assert zh.startswith("训练出错，错误信息：") and "max_steps" in zh


def test_compat_train_checks_its_inputs_like_ours(client):
    bad = base64.b64encode(b"not an image").decode()
    body = client.post("/easyphoto/easyphoto_train_forward",
                       json={"user_id": "bad id", "instance_images": [bad]}).json()
    assert "User id 'bad id'" in body["message"]
    body = client.post("/easyphoto/easyphoto_train_forward",
                       json={"user_id": "alice", "instance_images": "x"}).json()
    assert "instance_images must be a list" in body["message"]


def test_compat_infer_answers_in_easyphotos_shape(client):
    answer = client.post("/easyphoto/easyphoto_infer_forward",
                         json={"user_ids": "alice", "first_diffusion_steps": 5})
    body = answer.json()
    assert answer.status_code == 400
    assert body["outputs"] == [] and body["face_id_outputs"] == []
    assert body["message"].startswith("Infer error, error info:No template")
    body = client.post("/easyphoto/easyphoto_infer_forward",
                       json={"user_ids": ["alice"], "first_diffusion_steps": 500,
                             "init_image": "AAAA"}).json()
    assert "first_diffusion_steps" in body["message"]


def test_version_says_what_a_first_portrait_still_needs(client):
    missing = client.get("/easyphoto/v1/version").json()["missing"]
    assert missing[0]["name"] == "v1-5-pruned-emaonly" and missing[0]["message"]
    zh = client.get("/easyphoto/v1/version", headers={"Accept-Language": "zh"}).json()
    assert zh["missing"][0]["message"].startswith("缺少：")
