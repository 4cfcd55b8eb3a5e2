"""With --api-auth, the standalone app refuses every request without credentials: our routes,
the UI page, its gradio API (HTTP and websocket), its files, /docs and /openapi.json."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("gradio")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402

GOOD = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret:x").decode()}
WRONG = {"Authorization": "Basic " + base64.b64encode(b"ann:guess").decode()}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    context = StudioContext(Workspace(tmp_path_factory.mktemp("ws")), "diffusers")
    return create_app(context, api_auth="ann:s3cret:x")


def every_route(app):
    """(path, methods) of every route: ours from the OpenAPI schema (how FastAPI keeps included
    routers differs between versions), the docs, and every route of the mounted gradio app."""
    for path, operations in app.openapi()["paths"].items():
        yield path, {method.upper() for method in operations}
    yield from mounted_routes(app.routes)


def mounted_routes(routes, prefix=""):
    for route in routes:
        if isinstance(route, Mount):
            yield from mounted_routes(route.routes, prefix + route.path)
        elif isinstance(getattr(route, "path", None), str):
            yield prefix + route.path, getattr(route, "methods", None) or {"WEBSOCKET"}


def concrete(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "0123456789ab", path) or "/"


def test_every_route_refuses_a_request_without_credentials(app):
    client = TestClient(app)
    routes = list(every_route(app))
    paths = {path for path, _ in routes}
    assert {"/easyphoto/v1/train", "/easyphoto/v1/jobs", "/docs", "/openapi.json"} <= paths
    assert any("api" in p or "queue" in p for p in paths), paths  # gradio's API is mounted
    checked = 0
    for path, methods in routes:
        for method in methods - {"HEAD", "OPTIONS", "WEBSOCKET"}:
            for headers in ({}, WRONG):
                response = client.request(method, concrete(path), headers=headers)
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"].startswith("Basic")
                checked += 1
    assert checked > 20
    for path in ("/", "/gradio_api/call/handler", "/gradio_api/info", "/config",
                 "/file=/etc/hostname", "/gradio_api/file=/etc/hostname", "/assets/x.js"):
        assert client.get(path).status_code == 401, path
        assert client.post(path, json={"data": [{"path": "/etc/hostname"}]}).status_code == 401


def test_a_websocket_without_credentials_is_closed(app):
    from starlette.websockets import WebSocketDisconnect

    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/queue/join") as ws:
        ws.receive_text()


def test_with_credentials_everything_answers(app):
    client = TestClient(app)
    assert client.get("/easyphoto/v1/jobs", headers=GOOD).json() == {"jobs": []}
    assert client.get("/openapi.json", headers=GOOD).status_code == 200
    assert client.get("/docs", headers=GOOD).status_code == 200
    page = client.get("/", headers=GOOD)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_listening_without_auth_warns(monkeypatch, capsys, tmp_path):
    import uvicorn

    from easyphoto_app import server

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(server, "create_app", lambda *a, **k: None)  # no UI needed here
    server.main(["--listen", "--workspace", str(tmp_path)])
    assert "without --api-auth" in capsys.readouterr().err
    server.main(["--listen", "--workspace", str(tmp_path), "--api-auth", "a:b"])
    assert "without --api-auth" not in capsys.readouterr().err
