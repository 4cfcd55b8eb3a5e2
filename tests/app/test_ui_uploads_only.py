"""The UI's gradio API takes files only as uploads: a client that names a server path in an API
call gets an error, and the file is never read (not copied into gradio's cache)."""

from __future__ import annotations

import json

import pytest

gr = pytest.importorskip("gradio")
if int(gr.__version__.split(".")[0]) < 4:
    pytest.skip("gradio 3 has no per-file upload check (the host's auth covers its API)",
                allow_module_level=True)
from fastapi.testclient import TestClient  # noqa: E402

from easyphoto_app.server import create_app  # noqa: E402
from easyphoto_core.context import StudioContext  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402


def file_endpoints(info: dict, server_file: dict) -> list[tuple[str, list]]:
    """(api name, inputs naming `server_file` in every file input) per endpoint taking files."""
    found = []
    for name, endpoint in info.get("named_endpoints", {}).items():
        data, has_file = [], False
        for parameter in endpoint["parameters"]:
            kind = parameter.get("type") or {}
            if "FileData" in json.dumps(kind):
                data.append([server_file] if kind.get("type") == "array" else server_file)
                has_file = True
            else:
                data.append(parameter.get("parameter_default"))
        if has_file:
            found.append((name, data))
    return found


def test_a_server_path_in_a_gradio_api_call_is_refused(tmp_path, monkeypatch, faces_dir):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    secret = tmp_path / "outside" / "server_file.jpg"
    secret.parent.mkdir()
    secret.write_bytes((faces_dir / "obama.jpg").read_bytes())
    server_file = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    app = create_app(StudioContext(Workspace(tmp_path / "ws"), "diffusers"))
    with TestClient(app) as client:
        endpoints = file_endpoints(client.get("/gradio_api/info").json(), server_file)
        assert endpoints, "no endpoint of the UI takes a file"
        for name, data in endpoints:
            call = client.post(f"/gradio_api/call{name}", json={"data": data})
            assert call.status_code == 200, call.text
            events = client.get(f"/gradio_api/call{name}/{call.json()['event_id']}").text
            assert "event: error" in events, (name, events[-500:])
    cached = list((tmp_path / "cache").rglob("server_file.jpg"))
    assert cached == [], "gradio read the server file"
