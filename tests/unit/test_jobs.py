"""The job queue: one job at a time, records persisted, cancel, failures recorded."""

from __future__ import annotations

import json
import threading

from easyphoto_core.jobs import JobCancelled, JobManager


def test_jobs_run_in_order_and_records_are_persisted(tmp_path):
    manager = JobManager(tmp_path)
    order = []
    first = manager.submit("train", ["a"], lambda h: order.append(1) or {"n": 1})
    second = manager.submit("train", ["b"], lambda h: order.append(2) or {"n": 2})
    assert manager.wait(second.id, timeout=10).state == "done"
    assert order == [1, 2]
    saved = json.loads((tmp_path / f"{first.id}.json").read_text())
    assert saved["state"] == "done" and saved["result"] == {"n": 1}
    assert JobManager(tmp_path).get(first.id).result == {"n": 1}  # another process reads it


def test_a_failure_is_recorded_and_the_next_job_runs(tmp_path):
    manager = JobManager(tmp_path)

    def broken(handle):
        raise ValueError("no face in the template")

    failed = manager.submit("generate", ["a"], broken)
    after = manager.submit("generate", ["a"], lambda h: {"ok": True})
    assert manager.wait(failed.id, timeout=10).state == "failed"
    assert "no face in the template" in manager.get(failed.id).message
    assert manager.wait(after.id, timeout=10).state == "done"


def test_cancel_reaches_a_running_job(tmp_path):
    manager = JobManager(tmp_path)
    started, hook_called = threading.Event(), threading.Event()

    def long_job(handle):
        handle.on_cancel(hook_called.set)
        started.set()
        while True:
            handle.report(stage="train")
            handle.check_cancelled()
            threading.Event().wait(0.01)

    record = manager.submit("train", ["a"], long_job)
    assert started.wait(10)
    manager.cancel(record.id)
    assert manager.wait(record.id, timeout=10).state == "cancelled"
    assert hook_called.is_set()


def test_a_queued_job_cancelled_never_runs(tmp_path):
    manager = JobManager(tmp_path)
    gate = threading.Event()
    ran = []
    blocker = manager.submit("train", ["a"], lambda h: gate.wait(10) and {})
    queued = manager.submit("train", ["b"], lambda h: ran.append(1) or {})
    manager.cancel(queued.id)
    gate.set()
    assert manager.wait(queued.id, timeout=10).state == "cancelled"
    assert manager.wait(blocker.id, timeout=10).state == "done"
    assert ran == []


def test_job_cancelled_exception_marks_the_job_cancelled(tmp_path):
    manager = JobManager(tmp_path)

    def stop(handle):
        raise JobCancelled("training cancelled; the last checkpoint is kept")

    record = manager.submit("train", ["a"], stop)
    assert manager.wait(record.id, timeout=10).state == "cancelled"
