"""The weights registry and downloader, against a real HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import hashlib
import http.server
import random
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from easyphoto_core import weights as w

SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "models"
YUNET_FILE = SHARED_MODELS / "face_detection_yunet_2023mar.onnx"

PAYLOAD = random.Random(1234).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and what it saw. Tests flip the switches between calls."""

    payload: bytes = PAYLOAD
    cut_after: int | None = None  # close the connection after this many body bytes
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    trickle: tuple[int, float] | None = None  # a slow link: (bytes, seconds) per write
    stall_after: int | None = None  # send this many body bytes, then nothing until released
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ServerState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            range_header = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, range_header))
            if self.path != "/blob.bin":
                self.send_error(404, "Not Found")
                return
            data, start = state.payload, 0
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))  # the full length, even when cut
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            if state.stall_after is not None:
                self.wfile.write(body[: state.stall_after])
                self.wfile.flush()
                state.release.wait(30)
                self.close_connection = True
                return
            if state.trickle is not None:
                size, pause = state.trickle
                try:
                    for at in range(0, len(body), size):
                        self.wfile.write(body[at:at + size])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client went away (cancelled)
                    pass
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (w.OFFLINE_ENV, w.MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def paths(tmp_path: Path) -> w.WeightPaths:
    return w.WeightPaths.standalone(tmp_path / "models", env={})


def _record(base_url: str, **changes: object) -> w.WeightRecord:
    record = w.WeightRecord(
        name="test_blob",
        filename="blob.bin",
        url=f"{base_url}/blob.bin",
        sha256=PAYLOAD_SHA,
        size=len(PAYLOAD),
        license="test data",
        destination=w.WeightDestination.CONTROLNET,
        description="random bytes served by the test server",
        required_for=("test",),
    )
    return replace(record, **changes)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.files: set[str] = set()

    def __call__(self, done: int, total: int, what: str) -> None:
        self.calls.append((done, total))
        self.files.add(what)


def test_full_download_verifies_and_renames(server, paths):
    base, state = server
    record = _record(base)
    progress = Recorder()
    path = w.download(record, paths, progress=progress, chunk_size=8192)
    assert path == paths.controlnet / "blob.bin"
    assert path.read_bytes() == PAYLOAD
    assert not w.part_path(path).exists()
    assert list(paths.controlnet.iterdir()) == [path]
    assert progress.calls[0] == (0, len(PAYLOAD)) and progress.calls[-1] == (
        len(PAYLOAD),
        len(PAYLOAD),
    )
    assert progress.files == {"blob.bin"}  # the same (done, total, what) as every stage
    assert state.requests == [("/blob.bin", None)]
    # present and verified: a second call makes no request
    assert w.download(record, paths, progress=progress) == path
    assert len(state.requests) == 1
    assert w.is_present(record, paths, verify=True)


def test_interrupted_transfer_leaves_part_then_resumes(server, paths):
    base, state = server
    record = _record(base)
    state.cut_after = 100_000
    with pytest.raises(w.WeightsError, match="interrupted") as err:
        w.download(record, paths, progress=Recorder(), chunk_size=8192)
    dest = w.resolve_path(record, paths)
    part = w.part_path(dest)
    assert "blob.bin" in str(err.value) and record.url in str(err.value)
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert "partial 33%" in w.format_listing(paths, records=(record,))

    state.cut_after = None
    progress = Recorder()
    path = w.download(record, paths, progress=progress, chunk_size=8192)
    assert state.requests[-1] == ("/blob.bin", "bytes=100000-")
    assert progress.calls[0] == (100_000, len(PAYLOAD))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert not part.exists()


def test_server_that_ignores_range_restarts_the_file(server, paths):
    base, state = server
    record = _record(base)
    dest = w.resolve_path(record, paths)
    dest.parent.mkdir(parents=True)
    w.part_path(dest).write_bytes(b"\xff" * 50_000)  # stale bytes that must not survive
    state.ignore_range = True
    path = w.download(record, paths, progress=Recorder())
    assert state.requests == [("/blob.bin", "bytes=50000-")]
    assert path.read_bytes() == PAYLOAD
    assert not w.part_path(dest).exists()


def test_part_longer_than_the_file_is_discarded(server, paths):
    base, state = server
    record = _record(base)
    dest = w.resolve_path(record, paths)
    dest.parent.mkdir(parents=True)
    w.part_path(dest).write_bytes(b"\0" * (len(PAYLOAD) + 10))
    assert w.download(record, paths, progress=Recorder()).read_bytes() == PAYLOAD
    assert state.requests == [("/blob.bin", None)]


def test_wrong_checksum_is_refused_and_removed(server, paths):
    base, _ = server
    wrong = hashlib.sha256(b"something else").hexdigest()
    record = _record(base, sha256=wrong)
    with pytest.raises(w.WeightsError) as err:
        w.download(record, paths, progress=Recorder())
    message = str(err.value)
    assert "blob.bin" in message and wrong in message and PAYLOAD_SHA in message
    dest = w.resolve_path(record, paths)
    assert not dest.exists() and not w.part_path(dest).exists()


def test_file_larger_than_expected_is_refused_and_removed(server, paths):
    base, _ = server
    record = _record(base, size=len(PAYLOAD) - 1000)
    with pytest.raises(w.WeightsError, match="larger than the expected"):
        w.download(record, paths, progress=Recorder())
    dest = w.resolve_path(record, paths)
    assert not dest.exists() and not w.part_path(dest).exists()


def test_http_404_names_the_url_and_status(server, paths):
    base, state = server
    record = _record(base, url=f"{base}/missing.bin")
    with pytest.raises(w.WeightsError) as err:
        w.download(record, paths, progress=Recorder())
    assert f"{base}/missing.bin" in str(err.value) and "404" in str(err.value)
    assert state.requests == [("/missing.bin", None)]
    dest = w.resolve_path(record, paths)
    assert not dest.exists() and not w.part_path(dest).exists()


def test_only_http_urls_are_fetched(paths):
    record = _record("file://", url="file:///etc/hostname")
    with pytest.raises(w.WeightsError, match="only http"):
        w.download(record, paths, progress=Recorder())


def test_unreachable_server_is_a_weights_error(paths):
    with socket.socket() as sock:  # a port that nothing listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    record = _record(f"http://127.0.0.1:{port}")
    with pytest.raises(w.WeightsError, match=f"cannot reach http://127.0.0.1:{port}/blob.bin"):
        w.download(record, paths, progress=Recorder(), timeout=5)


def test_offline_env_names_file_url_and_destination_and_makes_no_request(
    server, paths, monkeypatch
):
    base, state = server
    record = _record(base)
    monkeypatch.setenv(w.OFFLINE_ENV, "1")
    with pytest.raises(w.WeightsOfflineError) as err:
        w.download(record, paths, progress=Recorder())
    message = str(err.value)
    dest = w.resolve_path(record, paths)
    assert "blob.bin" in message and record.url in message and str(dest) in message
    assert state.requests == []
    assert not dest.parent.exists()  # nothing created either

    # offline=False wins over the environment; then offline with the file present is fine
    w.download(record, paths, progress=Recorder(), offline=False)
    assert w.download(record, paths, progress=Recorder()) == dest
    assert len(state.requests) == 1


def test_offline_argument(server, paths):
    base, state = server
    with pytest.raises(w.WeightsOfflineError):
        w.download(_record(base), paths, offline=True, progress=Recorder())
    assert state.requests == []


def test_unknown_sha256_is_never_downloaded(server, paths):
    base, state = server
    record = _record(base, sha256=w.SHA256_UNKNOWN)
    assert not record.sha256_known
    with pytest.raises(w.WeightsError, match="sha256 unknown"):
        w.download(record, paths, progress=Recorder())
    assert state.requests == []


def test_mirror_env_replaces_the_host(server, paths, monkeypatch):
    base, state = server
    record = _record(
        "https://weights.example.invalid", url="https://weights.example.invalid/blob.bin"
    )
    monkeypatch.setenv(w.MIRROR_ENV, base + "/")
    assert w.effective_url(record) == f"{base}/blob.bin"
    assert w.download(record, paths, progress=Recorder()).read_bytes() == PAYLOAD
    assert state.requests == [("/blob.bin", None)]
    # an explicit url wins over the mirror; a prefix in the mirror is kept
    assert w.effective_url(record, url="http://x/y") == "http://x/y"
    env = {w.MIRROR_ENV: "https://m.example/pfx"}
    hf = replace(record, url="https://huggingface.co/a/b/resolve/main/f.bin?download=true")
    assert (
        w.effective_url(hf, env=env) == "https://m.example/pfx/a/b/resolve/main/f.bin?download=true"
    )


def test_corrupt_existing_file_is_replaced(server, paths):
    base, state = server
    record = _record(base)
    dest = w.resolve_path(record, paths)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\0" * len(PAYLOAD))  # right size, wrong bytes
    assert w.is_present(record, paths)
    assert not w.is_present(record, paths, verify=True)
    assert "corrupt" in w.format_listing(paths, records=(record,), verify=True)
    # without verify_existing the size check is enough and nothing is fetched
    assert w.download(record, paths, progress=Recorder(), verify_existing=False) == dest
    assert state.requests == []
    assert w.download(record, paths, progress=Recorder()).read_bytes() == PAYLOAD
    assert len(state.requests) == 1


def test_default_progress_is_a_tqdm_bar(server, paths):
    base, _ = server
    assert w.download(_record(base), paths).read_bytes() == PAYLOAD


def test_ensure_and_listing_use_the_registry(paths):
    yunet = w.get_record("face_detection_yunet_2023mar")
    assert w.get_record(yunet.filename) is yunet
    listing = w.format_listing(paths)
    assert all(
        re.search(rf"^{re.escape(r.name)}\s.*\smissing\s", listing, re.M) for r in w.REGISTRY
    )
    if not YUNET_FILE.is_file():
        pytest.skip(f"{YUNET_FILE} not available")
    dest = w.resolve_path(yunet, paths)
    dest.parent.mkdir(parents=True)
    shutil.copyfile(YUNET_FILE, dest)
    # present and verified: no download, even though offline
    assert w.ensure("face_detection_yunet_2023mar", paths, offline=True) == dest
    listing = w.format_listing(paths, verify=True)
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(lines) == {r.name for r in w.REGISTRY}
    assert " present " in lines[yunet.name] and str(dest) in lines[yunet.name]
    assert "0.2" in lines[yunet.name] and " models " in lines[yunet.name]
    for record in w.REGISTRY:
        if record is not yunet:
            assert " missing " in lines[record.name]
            assert str(w.resolve_path(record, paths)) in lines[record.name]
    with pytest.raises(w.WeightsError, match="no weight called"):
        w.ensure("nope", paths)


def test_ensure_offline_error_for_a_registry_file(paths, monkeypatch):
    monkeypatch.setenv(w.OFFLINE_ENV, "yes")
    sd15 = w.get_record("v1-5-pruned-emaonly")
    with pytest.raises(w.WeightsOfflineError) as err:
        w.ensure(sd15.name, paths)
    assert sd15.url in str(err.value)
    assert str(paths.checkpoint / "v1-5-pruned-emaonly.safetensors") in str(err.value)


def test_registry_records_are_well_formed():
    names = [r.name for r in w.REGISTRY]
    assert len(names) == len(set(names))
    assert len({r.filename for r in w.REGISTRY}) == len(w.REGISTRY)
    for record in w.REGISTRY:
        assert re.fullmatch(r"[0-9a-f]{64}", record.sha256) or record.sha256 == w.SHA256_UNKNOWN
        assert record.size > 0
        assert record.filename and "/" not in record.filename and "\\" not in record.filename
        assert record.filename not in (".", "..")
        assert record.url.startswith("https://")
        assert record.url.split("?")[0].endswith("/" + record.filename)
        assert isinstance(record.destination, w.WeightDestination)
        assert record.license and record.required_for
    assert {r.destination for r in w.REGISTRY} >= {
        w.WeightDestination.MODELS,
        w.WeightDestination.CONTROLNET,
        w.WeightDestination.CHECKPOINT,
    }


def test_yunet_record_matches_the_real_file():
    if not YUNET_FILE.is_file():
        pytest.skip(f"{YUNET_FILE} not available")
    record = w.get_record("face_detection_yunet_2023mar")
    assert record.size == YUNET_FILE.stat().st_size
    assert record.sha256 == hashlib.sha256(YUNET_FILE.read_bytes()).hexdigest()


def test_weight_paths(tmp_path):
    env = {
        "EASYPHOTO_MODELS_DIR": str(tmp_path / "m"),
        "EASYPHOTO_LORA_DIR": str(tmp_path / "host_lora"),
    }
    paths = w.WeightPaths.standalone(env=env)
    assert paths.models == tmp_path / "m"
    assert paths.lora == tmp_path / "host_lora"
    assert paths.controlnet == tmp_path / "m" / "ControlNet"
    assert paths.checkpoint == tmp_path / "m" / "Stable-diffusion"
    assert paths.folder("insightface") == tmp_path / "m" / "insightface"
    default = w.WeightPaths.standalone(env={})
    assert default.models == Path(w.__file__).resolve().parent.parent / "weights"
    assert default.models == w.DEFAULT_WEIGHTS_DIR
    assert w.records_for("train") == (w.get_record("v1-5-pruned-emaonly"),)


def _cancel_when(recorder_done: threading.Event, cancel: threading.Event) -> list[float]:
    """Set `cancel` once the first bytes have arrived; returns [the time it was set]."""
    stamp: list[float] = []

    def later() -> None:
        recorder_done.wait(10)
        stamp.append(time.monotonic())
        cancel.set()

    threading.Thread(target=later, daemon=True).start()
    return stamp


@pytest.mark.parametrize("link", ["slow", "stalled"])
def test_cancel_stops_a_slow_or_stalled_download_at_once_and_leaves_a_resumable_part(
        server, paths, link):
    """Cancel acts within a fraction of a second whatever the link does: 4 KB every 0.2 s (a
    1 MB read would wait 15 s for its MB) or nothing at all after 4 KB (a read waits for the
    60 s timeout). Nothing lands at the destination; the .part resumes to the right file."""
    base, state = server
    if link == "slow":
        state.trickle = (4096, 0.2)
    else:
        state.stall_after = 4096
    record = _record(base)
    first_bytes, cancel = threading.Event(), threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int, what: str) -> None:
        seen.append(done)
        if done > 0:
            first_bytes.set()

    stamp = _cancel_when(first_bytes, cancel)
    with pytest.raises(w.DownloadCancelled):
        w.download(record, paths, progress=progress, cancel=cancel)
    waited = time.monotonic() - stamp[0]
    assert waited < 1.0, f"cancel took {waited:.2f} s"
    dest = w.resolve_path(record, paths)
    assert not dest.exists()
    part = w.part_path(dest)
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert part.read_bytes() == PAYLOAD[:part.stat().st_size]  # only whole, in-order bytes

    state.trickle = state.stall_after = None
    state.release.set()
    assert w.download(record, paths, progress=Recorder()).read_bytes() == PAYLOAD
    assert state.requests[-1][1] is not None  # resumed with a Range request


def test_a_cancel_set_before_the_start_makes_no_request(server, paths):
    base, state = server
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(w.DownloadCancelled):
        w.download(_record(base), paths, progress=Recorder(), cancel=cancel)
    assert state.requests == []


def test_a_download_with_a_cancel_event_that_is_never_set_completes(server, paths):
    base, _ = server
    path = w.download(_record(base), paths, progress=Recorder(), cancel=threading.Event(),
                      chunk_size=8192)
    assert path.read_bytes() == PAYLOAD
