"""Train and generate jobs: a durable queue in the workspace, one job at a time (they share one
GPU), cancellable, resumable after a crash.

Storage. One SQLite database, `<jobs_dir>/jobs.sqlite3` (WAL, stdlib `sqlite3`), one row per
job. A job's input files (photos, template) live in `<jobs_dir>/<id>/`, written into a hidden
folder and renamed into place *before* `submit` returns, so a crash at any moment leaves either
no job or a complete one. Nothing about a job lives only in memory: the work is rebuilt from the
stored inputs by the *runner* registered for its kind, so jobs queued before a crash still run.

States. queued -> running -> done | failed | cancelled. A job found `running` when a store is
opened, whose process is gone, becomes `interrupted` (nothing stays "running" forever).
`resume(id)` puts an interrupted, cancelled or failed job back in the queue (a training then
continues from its last checkpoint); it never happens by itself, so a job that crashes the
process cannot crash it again at every start. `cancel(id)` works on every non-final state.

Public interface (the UI, the API and the WebUI glue use only this):
  JobManager(jobs_dir, max_queued=16)   opens the store lazily: a read-only folder is a
                                        StoreUnavailable error at the first call, not at import
  .register(kind, runner)               runner(handle) -> result dict; starts the worker thread
  .submit(kind, user_ids, inputs={}, files={}) -> JobRecord          QueueFull, StoreUnavailable
  .get(id) -> JobRecord                                              JobNotFound
  .list(limit=50, active=False) -> [JobRecord], newest first; active = not finished
  .cancel(id, by="the user") / .resume(id) -> JobRecord              JobNotFound, JobStateError
  .wait(id, timeout) -> JobRecord
  JobRecord.to_dict() / job_summary(record): id, kind, user_ids, state, stage, step, total,
      message, created, updated, can_cancel, can_resume (+ progress, result in to_dict)
  JobHandle (what a runner sees): .record, .input_dir, .resuming, .report(**progress),
      .cancelled, .check_cancelled(), .on_cancel(action), .cancel_reason
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

FINISHED = ("done", "failed", "cancelled")
RESUMABLE = ("interrupted", "cancelled", "failed")
STATES = ("queued", "running", "interrupted", *FINISHED)
PROGRESS_WRITE_INTERVAL = 0.5  # seconds: progress is written (and cancel polled) at most this often
JOB_ID_PATTERN = re.compile(r"[0-9a-f]{12}")
WRITE_AT_ONCE = ("stage", "checkpoint_step", "trainer_pid")  # progress keys written unthrottled
DATABASE_NAME = "jobs.sqlite3"
KEEP_FINISHED = 200  # finished jobs kept (rows + log); older ones are pruned at open
COPY_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, user_ids TEXT NOT NULL, state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', progress TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}', inputs TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, updated REAL NOT NULL, queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, cancel_requested REAL, cancel_by TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, queued_at);
"""

# Owner tokens of the managers alive in this process: a `running` row owned by this pid but by
# no live manager is left over from an earlier process that had the same pid.
_LIVE_TOKENS: set[str] = set()
# One job at a time per job store in a process, whichever manager claims it: a host's "Reload
# UI" runs our script again, and the new manager's worker must not start a job on the GPU beside
# the one the old manager's worker is finishing.
_RUN_LOCKS: dict[Path, threading.Lock] = {}
_RUN_LOCKS_GUARD = threading.Lock()


def _run_lock(jobs_dir: Path) -> threading.Lock:
    with _RUN_LOCKS_GUARD:
        return _RUN_LOCKS.setdefault(jobs_dir.resolve(), threading.Lock())


class JobCancelled(Exception):
    """Raised inside a job when it stops because it was asked to."""


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such job"


class JobStateError(ValueError):
    """The job exists but cannot do that now (e.g. cancel a finished job)."""


class QueueFull(RuntimeError):
    """Too many jobs are waiting; the message says how many and what to do."""


class StoreUnavailable(RuntimeError):
    """The job store cannot be read or written; the message names the folder and the cause."""


@dataclass
class JobRecord:
    id: str
    kind: str  # "train" or "generate"
    user_ids: list[str]
    state: str = "queued"
    message: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    attempts: int = 0

    @property
    def can_cancel(self) -> bool:
        return self.state not in FINISHED

    @property
    def can_resume(self) -> bool:
        return self.state in RESUMABLE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "can_cancel": self.can_cancel, "can_resume": self.can_resume}


def job_summary(record: JobRecord) -> dict[str, Any]:
    """The short form the job list shows: one row per job."""
    progress = record.progress
    return {"id": record.id, "kind": record.kind, "user_ids": record.user_ids,
            "state": record.state, "stage": progress.get("stage"), "step": progress.get("step"),
            "total": progress.get("total"), "message": record.message,
            "created": record.created, "updated": record.updated,
            "can_cancel": record.can_cancel, "can_resume": record.can_resume}


class JobHandle:
    """What a running job sees: its record and inputs, progress reporting, cancellation."""

    def __init__(self, record: JobRecord, manager: JobManager) -> None:
        self.record, self._manager = record, manager
        self.input_dir = manager.input_dir(record.id)
        self.resuming = record.attempts > 1
        self.cancel_reason = ""
        self._cancel_event = threading.Event()
        self._on_cancel: list[Callable[[], None]] = []
        self._last_write = 0.0

    @property
    def cancelled(self) -> bool:
        if not self._cancel_event.is_set():
            self._poll(write=False)
        return self._cancel_event.is_set()

    def on_cancel(self, action: Callable[[], None]) -> None:
        """Run `action` when a cancel is requested (e.g. write the trainer's cancel file)."""
        self._on_cancel.append(action)
        if self._cancel_event.is_set():
            action()

    def request_cancel(self, by: str) -> None:
        if self._cancel_event.is_set():
            return
        self.cancel_reason = f"cancelled by {by}"
        self._cancel_event.set()
        for action in self._on_cancel:
            action()

    def report(self, **progress: Any) -> None:
        changed = any(self.record.progress.get(key) != progress[key]
                      for key in WRITE_AT_ONCE if key in progress)
        self.record.progress.update(progress)
        if changed:  # what a restart needs (the kept checkpoint) must not wait for the throttle
            self._last_write = 0.0
        self._poll(write=True)

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(self.cancel_reason or "cancelled")

    def _poll(self, *, write: bool) -> None:
        """At most every PROGRESS_WRITE_INTERVAL: write progress, and see a cancel that another
        process (the CLI, a second server) put in the store."""
        now = time.monotonic()
        if now - self._last_write < PROGRESS_WRITE_INTERVAL:
            return
        self._last_write = now
        if write:
            self._manager.save_progress(self.record)
        by = self._manager.cancel_request(self.record.id)
        if by is not None:
            self.request_cancel(by)


Runner = Callable[[JobHandle], dict[str, Any]]
FileSource = bytes | str | os.PathLike | BinaryIO


class JobManager:
    def __init__(self, jobs_dir: Path, *, max_queued: int = 16) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.max_queued = max_queued
        self._runners: dict[str, Runner] = {}
        self._handles: dict[str, JobHandle] = {}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._opened = False
        self._closed = False
        self._one_job_at_a_time = _run_lock(self.jobs_dir)
        self._token = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_TOKENS.add(self._token)

    # --- the store ------------------------------------------------------------------------

    @property
    def database(self) -> Path:
        return self.jobs_dir / DATABASE_NAME

    def input_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed on success); every failure to reach the
        store is a StoreUnavailable naming the folder."""
        try:
            self._open()
            connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise self._unavailable(error) from None
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            with suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise self._unavailable(error) from None
        except BaseException:
            with suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"The job queue in {self.jobs_dir} cannot be used: {error}. "
                                "Make that folder writable (or start with another workspace).")

    def _open(self) -> None:
        with self._lock:
            if self._opened:
                return
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
                self._recover(connection)
                self._prune(connection)
            finally:
                connection.close()
            self._opened = True

    def _recover(self, connection: sqlite3.Connection) -> None:
        """Jobs left `running` by a process that is gone become `interrupted`."""
        rows = connection.execute("SELECT id, kind, owner, progress FROM jobs "
                                  "WHERE state='running'").fetchall()
        for job_id, kind, owner, progress in rows:
            if _owner_alive(owner):
                continue
            step = json.loads(progress or "{}").get("checkpoint_step")
            detail = (f" The last checkpoint (step {step}) is kept." if step else "")
            action = "Resume continues the training." if kind == "train" else "Resume runs it again."
            connection.execute(
                "UPDATE jobs SET state='interrupted', owner=NULL, updated=?, message=? "
                "WHERE id=? AND state='running'",
                (time.time(), "The studio stopped while this job was running (a crash or a "
                 f"restart).{detail} {action}", job_id))

    def _prune(self, connection: sqlite3.Connection) -> None:
        """Keep the newest KEEP_FINISHED finished jobs; remove older rows and their folders;
        remove input folders whose submission never reached the store."""
        old = connection.execute(
            "SELECT id FROM jobs WHERE state IN ('done','failed','cancelled') "
            "ORDER BY updated DESC LIMIT -1 OFFSET ?", (KEEP_FINISHED,)).fetchall()
        for (job_id,) in old:
            connection.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            shutil.rmtree(self.input_dir(job_id), ignore_errors=True)
        for leftover in self.jobs_dir.glob(".incoming-*"):
            if time.time() - leftover.stat().st_mtime > 3600:
                shutil.rmtree(leftover, ignore_errors=True)

    # --- submitting and reading -----------------------------------------------------------

    def register(self, kind: str, runner: Runner) -> None:
        """Say how to run jobs of `kind`; queued jobs of that kind (from before a restart too)
        start running."""
        with self._lock:
            self._runners[kind] = runner
            self._open_quietly()
            if self._closed:
                return
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run_forever, daemon=True,
                                                name="easyphoto-jobs")
                self._worker.start()
            self._wake.notify_all()

    def _open_quietly(self) -> None:
        # a read-only store must not stop a host from starting; requests then get the reason
        with suppress(OSError, sqlite3.Error):
            self._open()

    def submit(self, kind: str, user_ids: list[str], *, inputs: Mapping[str, Any] | None = None,
               files: Mapping[str, FileSource] | None = None,
               max_file_bytes: int | None = None) -> JobRecord:
        """Store the inputs, then the job; return its record. `files` maps names (up to three
        levels, e.g. "photos/000/a.jpg") to bytes, a path or a binary file object, copied in
        chunks (RAM stays flat whatever their size)."""
        record = JobRecord(id=uuid.uuid4().hex[:12], kind=kind, user_ids=list(user_ids),
                           inputs=dict(inputs or {}), attempts=1)
        with self._db() as db:
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE state='queued'").fetchone()[0]
        if waiting >= self.max_queued:
            raise QueueFull(f"The queue is full ({waiting} jobs waiting, at most "
                            f"{self.max_queued}): wait for some to finish, or cancel some.")
        try:
            self._store_files(record.id, files or {}, max_file_bytes)
        except OSError as error:
            raise self._unavailable(error) from None
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, user_ids, state, message, inputs, created, updated,"
                " queued_at, attempts) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.id, kind, json.dumps(record.user_ids), "queued", "waiting in the queue",
                 json.dumps(record.inputs), record.created, record.updated, record.created, 1))
        record.message = "waiting in the queue"
        with self._lock:
            self._wake.notify_all()
        return record

    def _store_files(self, job_id: str, files: Mapping[str, FileSource],
                     max_bytes: int | None) -> None:
        final = self.input_dir(job_id)
        incoming = self.jobs_dir / f".incoming-{job_id}"
        incoming.mkdir(parents=True)
        try:
            for name, source in files.items():
                target = incoming / _safe_relative(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_source(source, target, max_bytes, name)
            os.replace(incoming, final)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise

    def get(self, job_id: str) -> JobRecord:
        if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
            raise JobNotFound(f"No job {str(job_id)[:40]!r}: job ids are 12 hex digits.")
        handle = self._handles.get(job_id)
        if handle is not None:
            # a copy, and only while it runs: the worker marks an ending job's record before
            # the store has the end, and what get() calls ended must be ended for cancel() too
            current = replace(handle.record)
            if current.state == "running":
                return current
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"No job {job_id!r} in this studio.")
        return _record(row)

    def list(self, *, limit: int = 50, active: bool = False) -> list[JobRecord]:
        """Newest first; `active` = only jobs not finished (queued, running, interrupted)."""
        where = "WHERE state NOT IN ('done','failed','cancelled')" if active else ""
        with self._db() as db:
            rows = db.execute(f"SELECT * FROM jobs {where} ORDER BY created DESC LIMIT ?",
                              (max(1, min(int(limit), 1000)),)).fetchall()
        return [self._handles[row["id"]].record if row["id"] in self._handles else _record(row)
                for row in rows]

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.get(job_id).state not in (*FINISHED, "interrupted"):
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.get(job_id)

    # --- cancel and resume ----------------------------------------------------------------

    def cancel(self, job_id: str, *, by: str = "the user") -> JobRecord:
        record = self.get(job_id)
        now = time.time()
        with self._db() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            state = row["state"]
            if state in FINISHED:
                raise JobStateError(f"Job {job_id} has already ended ({state}): nothing to "
                                    "cancel.")
            if state in ("queued", "interrupted"):
                message = (f"cancelled by {by} before it started" if state == "queued"
                           else f"cancelled by {by} after it was interrupted")
                db.execute("UPDATE jobs SET state='cancelled', message=?, updated=?, "
                           "cancel_requested=?, cancel_by=? WHERE id=?",
                           (message, now, now, by, job_id))
            else:  # running: the job stops at its next check and records why
                db.execute("UPDATE jobs SET cancel_requested=?, cancel_by=?, updated=? "
                           "WHERE id=?", (now, by, now, job_id))
        handle = self._handles.get(job_id)
        if handle is not None:
            handle.request_cancel(by)
            return handle.record
        return self.get(record.id)

    def cancel_request(self, job_id: str) -> str | None:
        """Who asked to cancel this job (None: nobody)."""
        with suppress(StoreUnavailable), self._db() as db:
            row = db.execute("SELECT cancel_requested, cancel_by FROM jobs WHERE id=?",
                             (job_id,)).fetchone()
            if row is not None and row["cancel_requested"] is not None:
                return row["cancel_by"] or "the user"
        return None

    def resume(self, job_id: str) -> JobRecord:
        """Queue an interrupted, cancelled or failed job again (a training from its last
        checkpoint); a cancel asked before the resume no longer counts."""
        self.get(job_id)
        now = time.time()
        with self._db() as db:
            state = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            if state not in RESUMABLE:
                raise JobStateError(f"Job {job_id} is {state}: only an interrupted, cancelled or "
                                    "failed job can be resumed.")
            waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE state='queued'").fetchone()[0]
            if waiting >= self.max_queued:
                raise QueueFull(f"The queue is full ({waiting} jobs waiting): resume it later.")
            db.execute("UPDATE jobs SET state='queued', message='waiting in the queue (resumed)',"
                       " updated=?, queued_at=?, attempts=attempts+1, cancel_requested=NULL,"
                       " cancel_by=NULL, owner=NULL WHERE id=?", (now, now, job_id))
        with self._lock:
            self._wake.notify_all()
        return self.get(job_id)

    # --- the worker -----------------------------------------------------------------------

    def save_progress(self, record: JobRecord) -> None:
        record.updated = time.time()
        with suppress(StoreUnavailable), self._db() as db:
            db.execute("UPDATE jobs SET progress=?, updated=? WHERE id=?",
                       (json.dumps(record.progress, default=str), record.updated, record.id))

    def _finish(self, record: JobRecord) -> None:
        record.updated = time.time()
        for attempt in range(5):  # a busy or briefly unwritable store must not lose the end
            try:
                with self._db() as db:
                    db.execute("UPDATE jobs SET state=?, message=?, progress=?, result=?, "
                               "updated=?, owner=NULL WHERE id=?",
                               (record.state, record.message,
                                json.dumps(record.progress, default=str),
                                json.dumps(record.result, default=str), record.updated,
                                record.id))
                return
            except StoreUnavailable:
                time.sleep(0.5 * (attempt + 1))

    def _claim(self) -> JobRecord | None:
        kinds = sorted(self._runners)
        if not kinds:
            return None
        marks = ",".join("?" for _ in kinds)
        with self._db() as db:
            row = db.execute(f"SELECT * FROM jobs WHERE state='queued' AND kind IN ({marks}) "
                             "ORDER BY queued_at LIMIT 1", kinds).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state='running', owner=?, updated=?, message='running' "
                       "WHERE id=?", (self._token, time.time(), row["id"]))
        record = _record(row)
        record.state, record.message = "running", "running"
        return record

    def close(self) -> None:
        """Start no more jobs (the host is reloading its UI: a new manager takes over). A job
        running now finishes and is recorded; the worker then ends."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._worker is None or not self._worker.is_alive():
            _LIVE_TOKENS.discard(self._token)

    def _run_forever(self) -> None:
        try:
            while not self._closed:
                with self._one_job_at_a_time:  # claimed only once it can run: queued till then
                    record = self._claim_quietly()
                    if record is not None:
                        self._run(record)
                        continue
                with self._lock:
                    if not self._closed:
                        self._wake.wait(timeout=2.0)  # also sees jobs other processes queue
        finally:
            _LIVE_TOKENS.discard(self._token)  # its running job is recorded: none is left

    def _claim_quietly(self) -> JobRecord | None:
        if self._closed:
            return None
        try:
            return self._claim()
        except StoreUnavailable:
            return None

    def _run(self, record: JobRecord) -> None:
        handle = JobHandle(record, self)
        self._handles[record.id] = handle
        try:
            record.result = self._runners[record.kind](handle) or {}
            record.state = "done"
            notes = record.result.get("notes") or []
            record.message = "; ".join(["done", *map(str, notes)])
            _remove_inputs(handle.input_dir)
        except JobCancelled as stop:
            record.state = "cancelled"
            record.message = _cancel_message(handle, str(stop))
        except Exception as error:  # the record says why; the worker goes on with the next job
            if handle.cancelled:
                record.state, record.message = "cancelled", _cancel_message(handle, str(error))
            else:
                record.state = "failed"
                record.message = str(error) or f"{type(error).__name__} (no message)"
        finally:
            self._finish(record)
            self._handles.pop(record.id, None)


def _cancel_message(handle: JobHandle, detail: str) -> str:
    reason = handle.cancel_reason or "cancelled"
    if detail and detail not in ("cancelled", reason):
        return f"{reason}: {detail}"
    return reason


def _remove_inputs(input_dir: Path) -> None:
    """A finished job's uploads are not needed any more; its log (if any) stays."""
    if input_dir.is_dir():
        for child in input_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            elif not child.name.endswith(".log"):
                child.unlink(missing_ok=True)


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(id=row["id"], kind=row["kind"], user_ids=json.loads(row["user_ids"]),
                     state=row["state"], message=row["message"],
                     progress=json.loads(row["progress"]), result=json.loads(row["result"]),
                     inputs=json.loads(row["inputs"]), created=row["created"],
                     updated=row["updated"], attempts=row["attempts"])


def _safe_relative(name: str) -> Path:
    parts = Path(name).parts
    if not parts or len(parts) > 3 or any(p in ("", ".", "..") or p.startswith(".")
                                          for p in parts) or Path(name).is_absolute():
        raise ValueError(f"Bad input file name {name!r}.")
    return Path(*parts)


def _copy_source(source: FileSource, target: Path, max_bytes: int | None, name: str) -> None:
    if isinstance(source, bytes):
        if max_bytes is not None and len(source) > max_bytes:
            raise _too_large(name, max_bytes)
        target.write_bytes(source)
        return
    opened = (open(source, "rb") if isinstance(source, str | os.PathLike)  # noqa: SIM115
              else nullcontext(source))
    written = 0
    with opened as handle, open(target, "wb") as out:
        while chunk := handle.read(COPY_CHUNK):
            written += len(chunk)
            if max_bytes is not None and written > max_bytes:
                raise _too_large(name, max_bytes)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _too_large(name: str, max_bytes: int) -> ValueError:
    return ValueError(f"{Path(name).name} is larger than {max_bytes // (1 << 20)} MB: use a "
                      "smaller photo.")


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a job still runs (same machine: the store lives in the
    workspace, which one machine uses)."""
    if not owner:
        return False
    pid_text, _, _token = owner.partition(":")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner in _LIVE_TOKENS
    return _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill would terminate the process on Windows
        try:
            import psutil
        except ImportError:
            return False
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
