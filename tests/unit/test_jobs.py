"""The durable job queue: order, persistence across managers (= processes), cancel in every
state, recovery of a job left running by a dead process, resume, limits, read-only store."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
import time

import pytest

from easyphoto_core.jobs import (
    JobCancelled,
    JobManager,
    JobNotFound,
    JobStateError,
    QueueFull,
    StoreUnavailable,
    job_summary,
)


def manager_with(tmp_path, runner, kind="train", **kwargs):
    manager = JobManager(tmp_path, **kwargs)
    manager.register(kind, runner)
    return manager


def test_jobs_run_in_order_from_their_stored_inputs(tmp_path):
    order = []

    def runner(handle):
        order.append(handle.record.inputs["n"])
        return {"n": handle.record.inputs["n"],
                "photo": (handle.input_dir / "photos" / "a.jpg").read_bytes().decode()}

    manager = manager_with(tmp_path, runner)
    first = manager.submit("train", ["a"], inputs={"n": 1}, files={"photos/a.jpg": b"one"})
    second = manager.submit("train", ["b"], inputs={"n": 2}, files={"photos/a.jpg": b"two"})
    assert manager.wait(second.id, timeout=10).state == "done"
    assert order == [1, 2]
    assert JobManager(tmp_path).get(first.id).result == {"n": 1, "photo": "one"}
    assert not (tmp_path / first.id / "photos").exists()  # a finished job's uploads are removed


def test_a_finished_jobs_handle_is_released(tmp_path):
    """Nothing keeps a finished job's handle (its record, progress, callbacks) alive."""
    import gc
    import weakref

    seen = []
    manager = manager_with(tmp_path, lambda handle: seen.append(weakref.ref(handle)) or {})
    for _ in range(3):
        assert manager.wait(manager.submit("train", ["a"]).id, timeout=10).state == "done"
    # the worker thread drops the last handle just after the record says done (seen held there
    # for a moment on a loaded machine): released means gone within a few seconds
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(ref() is not None for ref in seen):
        gc.collect()
        time.sleep(0.05)
    assert len(seen) == 3 and all(ref() is None for ref in seen)


def test_a_job_queued_in_one_process_runs_in_the_next(tmp_path):
    queued = JobManager(tmp_path).submit("train", ["a"], inputs={"n": 7},
                                         files={"photos/x.jpg": b"x"})
    assert (tmp_path / queued.id / "photos" / "x.jpg").read_bytes() == b"x"  # on disk at once
    later = manager_with(tmp_path, lambda h: {"n": h.record.inputs["n"]})
    assert later.wait(queued.id, timeout=10).result == {"n": 7}


def test_a_running_job_of_a_dead_process_becomes_interrupted_and_resumes(tmp_path):
    record = JobManager(tmp_path).submit("train", ["a"])
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # as a killed process leaves it
        db.execute("UPDATE jobs SET state='running', owner='999999999:gone', progress=? "
                   "WHERE id=?", ('{"checkpoint_step": 100}', record.id))
    seen = []
    manager = JobManager(tmp_path)
    interrupted = manager.get(record.id)
    assert interrupted.state == "interrupted" and interrupted.can_resume
    assert "step 100" in interrupted.message and "Resume" in interrupted.message
    manager.register("train", lambda h: seen.append(h.resuming) or {})
    manager.resume(record.id)
    assert manager.wait(record.id, timeout=10).state == "done"
    assert seen == [True]


def test_a_running_job_of_a_live_process_is_left_alone(tmp_path):
    record = JobManager(tmp_path).submit("train", ["a"])
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET state='running', owner=? WHERE id=?",
                   (f"{os.getppid()}:other", record.id))
    assert JobManager(tmp_path).get(record.id).state == "running"


def test_a_failure_is_recorded_and_the_next_job_runs(tmp_path):
    def runner(handle):
        if handle.record.inputs.get("broken"):
            raise ValueError("no face in the template")
        return {"ok": True}

    manager = manager_with(tmp_path, runner, kind="generate")
    failed = manager.submit("generate", ["a"], inputs={"broken": True})
    after = manager.submit("generate", ["a"])
    assert manager.wait(failed.id, timeout=10).message == "no face in the template"
    assert manager.wait(after.id, timeout=10).state == "done"


def test_cancel_reaches_a_running_job_even_from_another_manager(tmp_path):
    started, hook_called = threading.Event(), threading.Event()

    def long_job(handle):
        handle.on_cancel(hook_called.set)
        started.set()
        while True:
            handle.report(stage="train")
            handle.check_cancelled()
            threading.Event().wait(0.01)

    manager = manager_with(tmp_path, long_job)
    record = manager.submit("train", ["a"])
    assert started.wait(10)
    JobManager(tmp_path).cancel(record.id, by="the CLI")  # another process's manager
    final = manager.wait(record.id, timeout=10)
    assert final.state == "cancelled" and final.message == "cancelled by the CLI"
    assert hook_called.is_set()
    with pytest.raises(JobStateError, match="already ended"):
        manager.cancel(record.id)


def test_queued_and_interrupted_jobs_cancel_at_once(tmp_path):
    store = JobManager(tmp_path)
    queued = store.submit("train", ["a"])
    assert store.cancel(queued.id).state == "cancelled"
    interrupted = store.submit("train", ["b"])
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET state='interrupted' WHERE id=?", (interrupted.id,))
    assert store.cancel(interrupted.id).state == "cancelled"
    ran = []
    manager_with(tmp_path, lambda h: ran.append(1) or {})
    assert store.wait(queued.id, timeout=1).state == "cancelled" and ran == []


def test_resume_ignores_the_cancel_asked_before_it(tmp_path):
    attempts = []

    def runner(handle):
        attempts.append(handle.resuming)
        if not handle.resuming:
            raise JobCancelled("stopped")
        for _ in range(3):
            handle.report(step=1)
            handle.check_cancelled()
        return {"ok": True}

    manager = manager_with(tmp_path, runner)
    record = manager.submit("train", ["a"])
    assert manager.wait(record.id, timeout=10).state == "cancelled"
    manager.resume(record.id)
    assert manager.wait(record.id, timeout=10).state == "done"
    assert attempts == [False, True]
    with pytest.raises(JobStateError, match="only an interrupted"):
        manager.resume(record.id)


def test_job_list_is_newest_first_with_progress(tmp_path):
    store = JobManager(tmp_path)
    ids = [store.submit("train", [f"u{i}"]).id for i in range(3)]
    listed = store.list()
    assert [r.id for r in listed] == ids[::-1]
    row = job_summary(listed[0])
    assert {"id", "kind", "state", "stage", "step", "total", "message", "created"} <= set(row)
    assert row["state"] == "queued" and row["can_cancel"] and not row["can_resume"]
    store.cancel(ids[0])
    assert [r.id for r in store.list(active=True)] == ids[:0:-1]


def test_queue_limit_and_bad_ids(tmp_path):
    store = JobManager(tmp_path, max_queued=2)
    store.submit("train", ["a"])
    store.submit("train", ["b"])
    with pytest.raises(QueueFull, match="at most 2"):
        store.submit("train", ["c"])
    with pytest.raises(JobNotFound, match="12 hex digits"):
        store.get("x" * 5000)
    with pytest.raises(ValueError, match="larger than"):
        store.cancel(store.list()[0].id)
        store.submit("train", ["d"], files={"photos/a.jpg": b"x" * (2 << 20)},
                     max_file_bytes=1 << 20)
    assert not list(tmp_path.glob(".incoming-*"))


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="needs POSIX permissions that apply to this user")
def test_a_read_only_store_is_a_clear_error(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(StoreUnavailable, match="cannot be used.*writable"):
            JobManager(folder).submit("train", ["a"])
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_store_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "jobs").write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailable, match="jobs cannot be used"):
        JobManager(tmp_path / "jobs").submit("train", ["a"])


def test_after_a_ui_reload_the_new_manager_waits_for_the_old_ones_job(tmp_path):
    """A host's "Reload UI" makes a second manager on the same store in the same process while
    the first one's job runs: the first is closed (starts nothing more, finishes its job), and
    the second runs the next job only after that one ends — never two jobs at once."""
    release, running, peak = threading.Event(), [], []

    def runner(handle):
        running.append(handle.record.id)
        peak.append(len(running))
        if handle.record.inputs.get("slow"):
            assert release.wait(10)
        running.remove(handle.record.id)
        return {}

    old = manager_with(tmp_path, runner)
    first = old.submit("train", ["a"], inputs={"slow": True})
    wait_for_state(old, first.id, "running")
    old.close()
    new = manager_with(tmp_path, runner)
    second = new.submit("train", ["b"])
    time.sleep(1.0)  # time enough for the new worker to start it, were it allowed
    assert new.get(second.id).state == "queued"
    release.set()
    assert new.wait(second.id, timeout=10).state == "done"
    assert new.get(first.id).state == "done"  # recorded by the closed manager's worker
    assert max(peak) == 1
    third = new.submit("train", ["c"])
    assert new.wait(third.id, timeout=10).state == "done"
    assert not old._worker.is_alive()


def wait_for_state(manager, job_id, state, timeout=10.0):
    deadline = time.monotonic() + timeout
    while manager.get(job_id).state != state:
        assert time.monotonic() < deadline, f"{job_id} never became {state}"
        time.sleep(0.02)


def test_a_job_reads_as_ended_only_once_the_store_has_its_end(tmp_path, monkeypatch):
    """The worker marks the record, then writes the store: in between, get() must not report
    the end (a cancel() then would find the job running and take a cancel that never acts)."""
    writing, release = threading.Event(), threading.Event()
    finish = JobManager._finish

    def slow_finish(self, record):
        writing.set()
        release.wait(10)
        finish(self, record)

    monkeypatch.setattr(JobManager, "_finish", slow_finish)
    manager = manager_with(tmp_path, lambda handle: {})
    record = manager.submit("train", ["a"])
    assert writing.wait(10)
    assert manager.get(record.id).state == "running"  # the worker has marked it "done"
    release.set()
    assert manager.wait(record.id, timeout=10).state == "done"
    with pytest.raises(JobStateError, match="already ended"):
        manager.cancel(record.id)
