"""The first-run panel: a registry download into the right folder (from a local mirror), the
offline answer, and pointing at a file already on the machine."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from easyphoto_app.first_run import Downloads, download_handler, use_existing_handler  # noqa: E402
from easyphoto_core.context import StudioContext, StudioSettings  # noqa: E402
from easyphoto_core.workspace import Workspace  # noqa: E402

YUNET = Path(__file__).resolve().parents[3] / "shared" / "models" / \
    "face_detection_yunet_2023mar.onnx"


def _context(tmp_path: Path) -> StudioContext:
    settings = StudioSettings(weights_dir=tmp_path / "weights")
    return StudioContext(Workspace(tmp_path / "ws"), "diffusers", settings=settings)


@pytest.fixture()
def mirror(monkeypatch):
    data = YUNET.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("EASYPHOTO_OFFLINE", raising=False)
    monkeypatch.setenv("EASYPHOTO_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_port}")
    yield
    server.shutdown()


def test_download_lands_in_the_weights_folder_and_is_used(tmp_path, mirror):
    context = _context(tmp_path)
    lines = list(download_handler(context, Downloads())("face_detection_yunet_2023mar"))
    status, _ = lines[-1]
    target = tmp_path / "weights" / "face_detection_yunet_2023mar.onnx"
    assert target.read_bytes() == YUNET.read_bytes()
    assert status.startswith("Downloaded") and str(target) in status


def test_offline_download_says_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("EASYPHOTO_OFFLINE", "1")
    lines = list(download_handler(_context(tmp_path), Downloads())("control_v11p_sd15_canny"))
    status, _ = lines[-1]
    assert "control_v11p_sd15_canny_fp16.safetensors" in status
    assert str(tmp_path / "weights" / "ControlNet") in status


def test_existing_files_are_checked_then_used(tmp_path):
    context = _context(tmp_path)
    use = use_existing_handler(context)
    assert "No file at" in use("v1-5-pruned-emaonly", str(tmp_path / "nope.safetensors"))[0]
    wrong = tmp_path / "model.ckpt"
    wrong.write_bytes(b"x")
    assert "is not a .safetensors file" in use("v1-5-pruned-emaonly", str(wrong))[0]
    checkpoint = tmp_path / "mine.safetensors"
    checkpoint.write_bytes(b"x")
    status, _ = use("v1-5-pruned-emaonly", str(checkpoint))
    assert status.startswith("Using") and context.settings.base_model == checkpoint
    assert "v1-5-pruned-emaonly" not in [i["name"] for i in context.missing_models()]
    fake = tmp_path / "detector.onnx"
    fake.write_bytes(b"not yunet")
    assert "sha256 differs" in use("face_detection_yunet_2023mar", str(fake))[0]
    assert not (tmp_path / "weights" / "face_detection_yunet_2023mar.onnx").exists()
    status, _ = use("face_detection_yunet_2023mar", str(YUNET))
    assert (tmp_path / "weights" / "face_detection_yunet_2023mar.onnx").is_file()
