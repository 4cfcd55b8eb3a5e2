"""Registry of the weights EasyPhoto downloads, and a resumable, verified downloader.

One `WeightRecord` per downloadable file: where it comes from (URL), what it must be (sha256 and
byte size), its licence, and which folder it belongs in (`WeightDestination`: our models dir, or the
host's ControlNet / Lora / Stable-diffusion / insightface dir). `REGISTRY` is the tuple of them.

`download()` fetches a record's file into ``<dest>.part`` in the destination folder, resuming an
earlier partial transfer with an HTTP ``Range: bytes=N-`` request (a server that answers 200
instead of 206 restarts the file), hashes the whole file with sha256, and only then renames it onto
its final name (`os.replace`). A file of the wrong size or hash is refused and the ``.part``
removed.

Environment:

- ``EASYPHOTO_OFFLINE=1`` (also ``true``/``yes``/``on``): every download that is needed raises
  `WeightsOfflineError`, naming the file, its URL and the full path where to put it by hand.
  Files already present are used as they are.
- ``EASYPHOTO_WEIGHTS_MIRROR=<scheme>://<host>[/prefix]``: replaces the scheme and host of every
  registry URL (the path and query are kept, after the optional prefix), e.g.
  ``https://hf-mirror.com`` turns ``https://huggingface.co/a/b/resolve/main/f`` into
  ``https://hf-mirror.com/a/b/resolve/main/f``. The sha256 check still applies.
- ``EASYPHOTO_MODELS_DIR`` (default `DEFAULT_WEIGHTS_DIR`: ``weights/`` beside the package; the
  repository's ``models/`` holds configs only), ``EASYPHOTO_CONTROLNET_DIR``,
  ``EASYPHOTO_LORA_DIR``, ``EASYPHOTO_CHECKPOINT_DIR``, ``EASYPHOTO_INSIGHTFACE_DIR``: folder
  overrides read by `WeightPaths.standalone()` (inside A1111 the host adapter passes the host's
  folders instead).

Stdlib only (urllib, hashlib); tqdm, if installed, draws the default progress bar. Progress is a
callback ``progress(done_bytes, total_bytes, file name)`` (callbacks.ProgressCallback) so a UI can
show it too.
"""

from __future__ import annotations

import enum
import hashlib
import http.client
import inspect
import os
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import PROJECT_ROOT
from .callbacks import ProgressCallback

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WEIGHTS_DIR",
    "DownloadCancelled",
    "MIRROR_ENV",
    "OFFLINE_ENV",
    "REGISTRY",
    "SHA256_UNKNOWN",
    "ProgressCallback",
    "WeightDestination",
    "WeightPaths",
    "WeightRecord",
    "WeightsError",
    "WeightsOfflineError",
    "download",
    "effective_url",
    "ensure",
    "file_sha256",
    "format_listing",
    "get_record",
    "is_offline",
    "is_present",
    "part_path",
    "records_for",
    "resolve_path",
    "tqdm_progress",
]

OFFLINE_ENV = "EASYPHOTO_OFFLINE"
MIRROR_ENV = "EASYPHOTO_WEIGHTS_MIRROR"
SHA256_UNKNOWN = "unknown"  # marks a record whose hash nobody has pinned: never downloaded
DEFAULT_CHUNK_SIZE = 1 << 20
# Standalone home of downloaded weights. Not models/: that folder holds configs (and its
# "controlnet/" configs folder would be the same folder as "ControlNet/" on Windows and macOS).
DEFAULT_WEIGHTS_DIR = PROJECT_ROOT / "weights"
DEFAULT_TIMEOUT = 60.0
# How often a transfer with a cancel event looks at it while it waits for bytes: a Cancel in the
# UI takes effect within this, on a slow or stalled link too (a plain read of 1 MB waited for the
# whole MB, and a stalled one for the 60 s timeout).
CANCEL_POLL_SECONDS = 0.1
USER_AGENT = "sd-webui-easyphoto-weights/1"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_HEX = frozenset("0123456789abcdef")

# ``progress(done_bytes, total_bytes, file name)``; ``done`` includes bytes resumed from a .part
_BytesCallback = Callable[[int, int], None]  # the transfer's own (done, total)


class WeightsError(RuntimeError):
    """A weight file could not be obtained: HTTP error, interrupted or corrupt transfer, unknown
    record. The message names the file and the URL; a ``.part`` is kept only when resumable."""


class WeightsOfflineError(WeightsError):
    """A download was needed while offline; the message says where to get and put the file."""


class DownloadCancelled(Exception):
    """The transfer's cancel event was set: it stopped, and its ``.part`` stays to resume."""


class WeightDestination(str, enum.Enum):
    """Which folder a weight file belongs in."""

    MODELS = "models"  # EasyPhoto's own models dir
    CONTROLNET = "controlnet"  # host ControlNet dir (A1111: models/ControlNet, --controlnet-dir)
    LORA = "lora"  # host Lora dir (A1111: models/Lora, --lora-dir)
    CHECKPOINT = "checkpoint"  # host Stable-diffusion dir (A1111: models/Stable-diffusion)
    INSIGHTFACE = "insightface"  # insightface model root (…/insightface/models/<pack>/)


@dataclass(frozen=True)
class WeightRecord:
    """One downloadable file. ``sha256`` is 64 lowercase hex digits, or `SHA256_UNKNOWN`."""

    name: str
    filename: str
    url: str
    sha256: str
    size: int
    license: str
    destination: WeightDestination
    description: str = ""
    required_for: tuple[str, ...] = ()

    @property
    def sha256_known(self) -> bool:
        return len(self.sha256) == 64 and set(self.sha256) <= _HEX


@dataclass(frozen=True)
class WeightPaths:
    """The folder of each `WeightDestination`."""

    models: Path
    controlnet: Path
    lora: Path
    checkpoint: Path
    insightface: Path

    @classmethod
    def standalone(
        cls, root: Path | str | None = None, env: Mapping[str, str] | None = None
    ) -> WeightPaths:
        """Defaults without a host: ``root`` (else ``$EASYPHOTO_MODELS_DIR``, else
        `DEFAULT_WEIGHTS_DIR`) holds our files, with ``ControlNet/``, ``Lora/``,
        ``Stable-diffusion/`` and ``insightface/`` under it; each can be overridden by its
        ``EASYPHOTO_*_DIR`` variable."""
        env = os.environ if env is None else env
        base = (
            Path(root)
            if root is not None
            else Path(env.get("EASYPHOTO_MODELS_DIR") or DEFAULT_WEIGHTS_DIR)
        )

        def pick(var: str, default: Path) -> Path:
            value = env.get(var)
            return Path(value).expanduser() if value else default

        return cls(
            models=base.expanduser(),
            controlnet=pick("EASYPHOTO_CONTROLNET_DIR", base / "ControlNet"),
            lora=pick("EASYPHOTO_LORA_DIR", base / "Lora"),
            checkpoint=pick("EASYPHOTO_CHECKPOINT_DIR", base / "Stable-diffusion"),
            insightface=pick("EASYPHOTO_INSIGHTFACE_DIR", base / "insightface"),
        )

    def folder(self, destination: WeightDestination | str) -> Path:
        dest = WeightDestination(destination)
        return Path(getattr(self, dest.value))


_HF_CN = "https://huggingface.co/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/"
_CN_LICENSE = (
    "OpenRAIL (ControlNet 1.1, lllyasviel/ControlNet-v1-1; fp16 conversion by comfyanonymous)"
)
_CN_NOTE = (
    " ControlNet 1.1 for SD1.5, fp16 safetensors; 340 tensors, keys prefixed 'control_model.'"
    " (ldm/cldm layout), which sd-webui-controlnet and diffusers' from_single_file both accept."
)

REGISTRY: tuple[WeightRecord, ...] = (
    WeightRecord(
        name="face_detection_yunet_2023mar",
        filename="face_detection_yunet_2023mar.onnx",
        url=(
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2023mar.onnx"
        ),
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        size=232_589,
        license="MIT (opencv_zoo); Apache-2.0 (libfacedetection.train)",
        destination=WeightDestination.MODELS,
        description="OpenCV YuNet face detector (boxes + 5 landmarks) for cv2.FaceDetectorYN.",
        required_for=("preprocess", "generate"),
    ),
    WeightRecord(
        name="control_v11p_sd15_canny",
        filename="control_v11p_sd15_canny_fp16.safetensors",
        url=_HF_CN + "control_v11p_sd15_canny_fp16.safetensors",
        sha256="8932b66e15aae835b3490dbf989f56c253104cee08a88bf21283762f557c9f10",
        size=722_601_100,
        license=_CN_LICENSE,
        destination=WeightDestination.CONTROLNET,
        description="Canny-edge control." + _CN_NOTE,
        required_for=("generate",),
    ),
    WeightRecord(
        name="control_v11p_sd15_openpose",
        filename="control_v11p_sd15_openpose_fp16.safetensors",
        url=_HF_CN + "control_v11p_sd15_openpose_fp16.safetensors",
        sha256="4003c1da17b0e4ba444e02140e1c0d83bb24b79e4dcfd613c3a554d38f0f89c7",
        size=722_601_100,
        license=_CN_LICENSE,
        destination=WeightDestination.CONTROLNET,
        description="OpenPose (body/face keypoints) control." + _CN_NOTE,
        required_for=("generate",),
    ),
    WeightRecord(
        name="control_v11f1e_sd15_tile",
        filename="control_v11f1e_sd15_tile_fp16.safetensors",
        url=_HF_CN + "control_v11f1e_sd15_tile_fp16.safetensors",
        sha256="2f31868eedb243a77932e3c63907a6ba0a2058b6d65b5c27b89ee1b7f618ea33",
        size=722_601_104,
        license=_CN_LICENSE,
        destination=WeightDestination.CONTROLNET,
        description="Tile / colour control for the second diffusion." + _CN_NOTE,
        required_for=("generate",),
    ),
    WeightRecord(
        name="v1-5-pruned-emaonly",
        filename="v1-5-pruned-emaonly.safetensors",
        url=(
            "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/"
            "v1-5-pruned-emaonly.safetensors"
        ),
        sha256="6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        size=4_265_146_304,
        license="CreativeML OpenRAIL-M",
        destination=WeightDestination.CHECKPOINT,
        description=(
            "Stable Diffusion 1.5 base checkpoint (EMA-only weights, single file;"
            " A1111 short hash 6ce0161689)."
        ),
        required_for=("train", "generate"),
    ),
)


# --- look-ups -------------------------------------------------------------------------------


def get_record(name: str, records: Iterable[WeightRecord] = REGISTRY) -> WeightRecord:
    """The record called ``name`` (its registry name or its file name)."""
    records = tuple(records)
    for record in records:
        if name in (record.name, record.filename):
            return record
    known = ", ".join(r.name for r in records)
    raise WeightsError(f"no weight called {name!r} in the registry (known: {known})")


def records_for(
    feature: str, records: Iterable[WeightRecord] = REGISTRY
) -> tuple[WeightRecord, ...]:
    """The records whose ``required_for`` names ``feature`` ("preprocess", "train", "generate")."""
    return tuple(r for r in records if feature in r.required_for)


def resolve_path(record: WeightRecord, paths: WeightPaths) -> Path:
    """Where ``record``'s file lives."""
    return paths.folder(record.destination) / record.filename


def part_path(dest: Path) -> Path:
    """The temporary file a download of ``dest`` goes to (same folder: the rename is atomic)."""
    return dest.with_name(dest.name + ".part")


def file_sha256(path: Path, hasher: hashlib._Hash | None = None) -> str:
    """The sha256 hex digest of ``path`` (feeding ``hasher`` if given)."""
    hasher = hasher if hasher is not None else hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(DEFAULT_CHUNK_SIZE), b""):
            hasher.update(block)
    return hasher.hexdigest()


def is_present(record: WeightRecord, paths: WeightPaths, *, verify: bool = False) -> bool:
    """True when the file exists with the registry size; ``verify=True`` also checks the sha256
    (a record whose sha256 is unknown can only be checked by size)."""
    path = resolve_path(record, paths)
    try:
        if not path.is_file() or path.stat().st_size != record.size:
            return False
    except OSError:
        return False
    if verify and record.sha256_known:
        return file_sha256(path) == record.sha256
    return True


def is_offline(env: Mapping[str, str] | None = None) -> bool:
    """True when ``EASYPHOTO_OFFLINE`` is set to 1/true/yes/on."""
    env = os.environ if env is None else env
    return env.get(OFFLINE_ENV, "").strip().lower() in _TRUE_WORDS


def effective_url(
    record: WeightRecord, *, url: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The URL a download uses: ``url`` if given, else the record's URL with its scheme and host
    replaced by ``$EASYPHOTO_WEIGHTS_MIRROR`` when that is set, else the record's URL."""
    if url:
        return url
    env = os.environ if env is None else env
    mirror = env.get(MIRROR_ENV, "").strip()
    if not mirror:
        return record.url
    base = urllib.parse.urlsplit(mirror.rstrip("/"))
    if not base.scheme or not base.netloc:
        raise WeightsError(f"{MIRROR_ENV}={mirror!r} is not a base URL like https://host[/prefix]")
    src = urllib.parse.urlsplit(record.url)
    return urllib.parse.urlunsplit((base.scheme, base.netloc, base.path + src.path, src.query, ""))


# --- download -------------------------------------------------------------------------------


@contextmanager
def tqdm_progress(record: WeightRecord) -> Iterator[ProgressCallback]:
    """A progress callback drawing a tqdm bar on stderr (silent when tqdm is missing or stderr is
    not a terminal)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but stay usable without it
        yield lambda done, total, what: None
        return
    bar = tqdm(
        total=record.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=record.filename,
        disable=None,
        leave=False,
    )

    def update(done: int, total: int, what: str) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def _offline_message(record: WeightRecord, url: str, dest: Path) -> str:
    bad = " (the file there has the wrong size or sha256)" if dest.exists() else ""
    return (
        f"{record.filename} ({record.name}) is needed but {OFFLINE_ENV} is set, so nothing is "
        f"downloaded.\n  Download it from: {url}\n  and put it at:    {dest}{bad}\n"
        f"  (expected {record.size} bytes, sha256 {record.sha256}, licence: {record.license})"
    )


def _request(
    record: WeightRecord, url: str, offset: int, timeout: float
) -> http.client.HTTPResponse | None:
    """GET ``url`` from byte ``offset``; None when the server answers 416 to a Range request."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return None
        raise WeightsError(
            f"download of {record.filename} failed: HTTP {exc.code} {exc.reason} for {url}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"download of {record.filename} failed: cannot reach {url}: {reason}"
        ) from exc


def _open_resumable(
    record: WeightRecord, url: str, offset: int, timeout: float
) -> tuple[http.client.HTTPResponse, int]:
    """Open the transfer, resuming at ``offset`` when the server honours the Range request;
    returns the response and the offset its body starts at (0 when the server restarted)."""
    response = _request(record, url, offset, timeout)
    if response is None:  # 416: the server cannot serve the remainder; start over
        return _open_from_start(record, url, timeout), 0
    if not offset:
        return response, 0
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and content_range.startswith(f"bytes {offset}-"):
        return response, offset
    if response.status == 200:  # Range ignored: this body is the whole file
        return response, 0
    response.close()
    return _open_from_start(record, url, timeout), 0


def _open_from_start(record: WeightRecord, url: str, timeout: float) -> http.client.HTTPResponse:
    response = _request(record, url, 0, timeout)
    assert response is not None  # _request only returns None for a Range request
    return response


def _usable_offset(part: Path, size: int) -> int:
    """How many bytes of an earlier ``.part`` can be resumed (a too-long one is discarded)."""
    try:
        have = part.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:
        part.unlink()
        return 0
    return have


def _copy_body(
    chunks: Iterator[bytes],
    out: BinaryIO,
    hasher: hashlib._Hash,
    done: int,
    total: int,
    progress: _BytesCallback,
) -> int:
    """Stream the body into ``out``; returns the byte count reached (stops past ``total``)."""
    for chunk in chunks:
        done += len(chunk)
        if done > total:
            return done
        out.write(chunk)
        hasher.update(chunk)
        progress(done, total)
    return done


def _body_chunks(response: http.client.HTTPResponse, chunk_size: int,
                 cancel: threading.Event | None) -> Iterator[bytes]:
    """The body as it arrives. `read1` returns what one socket read brings (at most
    ``chunk_size``), so a slow link yields small chunks often instead of one per full MB.

    With a ``cancel`` event the reads run on a helper thread and the event is looked at every
    `CANCEL_POLL_SECONDS` while a chunk is awaited, then `DownloadCancelled` is raised: a blocked
    socket read cannot be interrupted, and closing the response here would wait for it (the
    buffered reader's lock). The helper owns the response then and closes it once its read
    returns (at the latest after the socket timeout); it never writes to the file."""
    if cancel is None:
        while chunk := response.read1(chunk_size):
            yield chunk
        return
    arrived: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=8)
    stop = threading.Event()
    threading.Thread(target=_read_ahead, args=(response, chunk_size, arrived, stop),
                     daemon=True, name="easyphoto-download-read").start()
    try:
        while True:
            if cancel.is_set():
                raise DownloadCancelled()
            try:
                item = arrived.get(timeout=CANCEL_POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()


def _read_ahead(response: http.client.HTTPResponse, chunk_size: int,
                arrived: queue.Queue[bytes | BaseException], stop: threading.Event) -> None:
    """`_body_chunks`' helper thread: read until the end, an error or `stop`, then close."""
    with response:
        try:
            while not stop.is_set():
                chunk = response.read1(chunk_size)
                if not _hand_over(arrived, chunk, stop) or not chunk:
                    return
        except Exception as error:  # raised again on the downloading thread
            _hand_over(arrived, error, stop)


def _hand_over(arrived: queue.Queue[bytes | BaseException], item: bytes | BaseException,
               stop: threading.Event) -> bool:
    """Queue ``item`` unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            arrived.put(item, timeout=CANCEL_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _transfer(
    record: WeightRecord,
    url: str,
    part: Path,
    progress: _BytesCallback,
    chunk_size: int,
    timeout: float,
    cancel: threading.Event | None = None,
) -> str:
    """Bring ``part`` to the full size (resuming when possible); returns its sha256."""
    hasher = hashlib.sha256()
    offset = _usable_offset(part, record.size)
    if offset == record.size:  # finished by an earlier run that stopped before the rename
        progress(offset, record.size)
        return file_sha256(part, hasher)
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled()
    response, offset = _open_resumable(record, url, offset, timeout)
    chunks = _body_chunks(response, chunk_size, cancel)
    try:
        if offset:
            file_sha256(part, hasher)
        progress(offset, record.size)
        with part.open("ab" if offset else "wb") as out:
            done = _copy_body(chunks, out, hasher, offset, record.size, progress)
    except (OSError, http.client.HTTPException) as exc:
        raise WeightsError(
            f"download of {record.filename} from {url} was interrupted ({exc}); "
            f"run it again to resume from {part}"
        ) from exc
    finally:
        started = inspect.getgeneratorstate(chunks) != inspect.GEN_CREATED
        chunks.close()
        if cancel is None or not started:  # else its reader thread closes it
            response.close()
    if done > record.size:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"download of {record.filename} from {url} is larger than the expected "
            f"{record.size} bytes; refused and removed"
        )
    if done < record.size:
        raise WeightsError(
            f"download of {record.filename} from {url} was interrupted after {done} of "
            f"{record.size} bytes; run it again to resume from {part}"
        )
    return hasher.hexdigest()


def _commit(record: WeightRecord, url: str, part: Path, dest: Path, digest: str) -> None:
    """Rename the verified ``part`` onto ``dest``; a wrong size or hash deletes it and raises."""
    size = part.stat().st_size
    if size != record.size or digest != record.sha256:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"{record.filename} downloaded from {url} is corrupt and was removed: expected "
            f"sha256 {record.sha256} ({record.size} bytes), got sha256 {digest} ({size} bytes)"
        )
    os.replace(part, dest)


def download(
    record: WeightRecord,
    paths: WeightPaths,
    *,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    offline: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    verify_existing: bool = True,
    cancel: threading.Event | None = None,
) -> Path:
    """Make ``record``'s file present and verified at `resolve_path`; returns that path.

    A file already there with the right size (and, with ``verify_existing``, the right sha256) is
    used as is. Otherwise the file is fetched from ``url`` (default: `effective_url`) into
    ``<dest>.part``, resumed if a ``.part`` exists, verified and renamed. ``progress`` is called as
    ``progress(done, total, file name)``; when None a tqdm bar is drawn. ``offline`` (default:
    ``$EASYPHOTO_OFFLINE``) turns a needed download into `WeightsOfflineError`.

    Setting ``cancel`` (from another thread) stops the transfer within `CANCEL_POLL_SECONDS`,
    however slow the link, with `DownloadCancelled`; the ``.part`` stays for the next call and
    nothing is written at the destination.

    Raises `WeightsError` on an HTTP error (naming the URL and status), an interrupted transfer
    (the ``.part`` stays for the next call), a wrong size or hash (nothing is left behind), or a
    record whose sha256 is unknown.
    """
    dest = resolve_path(record, paths)
    if is_present(record, paths, verify=verify_existing):
        return dest
    source = effective_url(record, url=url)
    if urllib.parse.urlsplit(source).scheme.lower() not in ("http", "https"):
        raise WeightsError(f"{record.filename}: only http(s) URLs are downloaded, not {source}")
    if not record.sha256_known:
        raise WeightsError(
            f"{record.filename}: sha256 unknown in the registry, so it is never downloaded; "
            f"fetch it yourself from {source} and put it at {dest}"
        )
    offline = is_offline() if offline is None else offline
    if offline:
        raise WeightsOfflineError(_offline_message(record, source, dest))
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    try:
        with nullcontext(progress) if progress is not None else tqdm_progress(record) as report:
            digest = _transfer(record, source, part,
                               lambda done, total: report(done, total, record.filename),
                               chunk_size, timeout, cancel)
    except WeightsError as error:
        raise WeightsError(f"{error}\n  Without network here, fetch it on another machine and "
                           f"put it at: {dest}\n  (expected {record.size} bytes, sha256 "
                           f"{record.sha256})") from error
    _commit(record, source, part, dest, digest)
    return dest


def ensure(
    name: str,
    paths: WeightPaths | None = None,
    *,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    offline: bool | None = None,
    verify_existing: bool = True,
    records: Iterable[WeightRecord] = REGISTRY,
) -> Path:
    """The path of the registry file called ``name``, downloading it first if needed
    (``paths`` defaults to `WeightPaths.standalone()`)."""
    record = get_record(name, records)
    paths = paths if paths is not None else WeightPaths.standalone()
    return download(
        record, paths, url=url, progress=progress, offline=offline, verify_existing=verify_existing
    )


# --- listing --------------------------------------------------------------------------------


def _status(record: WeightRecord, paths: WeightPaths, verify: bool) -> str:
    path = resolve_path(record, paths)
    note = "" if record.sha256_known else " (sha256 unknown)"
    if path.is_file():
        if path.stat().st_size != record.size:
            return "wrong size" + note
        if verify and record.sha256_known and file_sha256(path) != record.sha256:
            return "corrupt"
        return "present" + note
    part = part_path(path)
    if part.is_file() and record.size > 0:
        return f"partial {100 * part.stat().st_size // record.size}%" + note
    return "missing" + note


def format_listing(
    paths: WeightPaths, *, records: Iterable[WeightRecord] = REGISTRY, verify: bool = False
) -> str:
    """A text table of every record: name, size in MB, destination, status, path. Status is
    ``present``, ``missing``, ``partial N%`` (a ``.part`` to resume), ``wrong size``, or with
    ``verify=True`` ``corrupt`` (hash mismatch)."""
    header = ("name", "size MB", "destination", "status", "path")
    rows = [
        (
            r.name,
            f"{r.size / 1e6:.1f}",
            r.destination.value,
            _status(r, paths, verify),
            str(resolve_path(r, paths)),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            row[i].rjust(widths[i]) if i == 1 else row[i].ljust(widths[i])
            for i in range(len(widths))
        ]
        return "  ".join([*cells, row[-1]])

    return "\n".join(line(row) for row in [header, *rows])
