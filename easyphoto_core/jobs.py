"""Train and generate jobs: one at a time (they share one GPU), persisted, cancellable.

A job is a function run on the manager's worker thread with a `JobHandle` to report progress
and to see a cancel request. Its record (state, progress, message, result) is written
atomically to `<jobs_dir>/<id>.json` at every change, so the UI, the API and a restarted
process all read the same truth.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core.workspace import atomic_write_json

FINISHED = ("done", "failed", "cancelled")
PROGRESS_WRITE_INTERVAL = 0.5  # seconds: progress is written at most this often


class JobCancelled(Exception):
    """Raised inside a job when it stops because it was asked to."""


class JobNotFound(KeyError):
    pass


@dataclass
class JobRecord:
    id: str
    kind: str  # "train" or "generate"
    user_ids: list[str]
    state: str = "queued"  # queued, running, done, failed, cancelled
    message: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobHandle:
    """What a running job sees: progress reporting and cancellation."""

    def __init__(self, record: JobRecord, manager: JobManager) -> None:
        self.record, self._manager = record, manager
        self._cancel_event = threading.Event()
        self._on_cancel: list[Callable[[], None]] = []
        self._last_write = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel_event.is_set()

    def on_cancel(self, action: Callable[[], None]) -> None:
        """Run `action` when a cancel is requested (e.g. write the trainer's cancel file)."""
        self._on_cancel.append(action)
        if self.cancelled:
            action()

    def request_cancel(self) -> None:
        self._cancel_event.set()
        for action in self._on_cancel:
            action()

    def report(self, **progress: Any) -> None:
        self.record.progress.update(progress)
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self._last_write = now
            self._manager.save(self.record)

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled("cancelled")


JobWork = Callable[[JobHandle], dict[str, Any]]


class JobManager:
    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = Path(jobs_dir)
        self._queue: queue.Queue[tuple[JobHandle, JobWork]] = queue.Queue()
        self._handles: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def submit(self, kind: str, user_ids: list[str], work: JobWork) -> JobRecord:
        record = JobRecord(id=uuid.uuid4().hex[:12], kind=kind, user_ids=list(user_ids))
        handle = JobHandle(record, self)
        with self._lock:
            self._handles[record.id] = handle
            self.save(record)
            self._queue.put((handle, work))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run_forever, daemon=True,
                                                name="easyphoto-jobs")
                self._worker.start()
        return record

    def get(self, job_id: str) -> JobRecord:
        handle = self._handles.get(job_id)
        if handle is not None:
            return handle.record
        path = self.jobs_dir / f"{job_id}.json"
        if not job_id.isalnum() or not path.is_file():
            raise JobNotFound(f"no job {job_id!r}")
        return JobRecord(**json.loads(path.read_text(encoding="utf-8")))

    def cancel(self, job_id: str) -> JobRecord:
        handle = self._handles.get(job_id)
        if handle is None:
            raise JobNotFound(f"no running or queued job {job_id!r}")
        handle.request_cancel()
        return handle.record

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.get(job_id).state not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.get(job_id)

    def save(self, record: JobRecord) -> None:
        record.updated = time.time()
        atomic_write_json(self.jobs_dir / f"{record.id}.json", record.to_dict())

    def _run_forever(self) -> None:
        while True:
            handle, work = self._queue.get()
            self._run(handle, work)

    def _run(self, handle: JobHandle, work: JobWork) -> None:
        record = handle.record
        if handle.cancelled:
            record.state, record.message = "cancelled", "cancelled before it started"
            self.save(record)
            return
        record.state = "running"
        self.save(record)
        try:
            record.result = work(handle)
            record.state, record.message = "done", record.message or "done"
        except JobCancelled as stop:
            record.state, record.message = "cancelled", str(stop)
        except Exception as error:  # the record says why; the worker goes on with the next job
            if handle.cancelled:
                record.state, record.message = "cancelled", str(error)
            else:
                record.state, record.message = "failed", f"{type(error).__name__}: {error}"
        self.save(record)
