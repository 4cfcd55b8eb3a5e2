"""The tab's streams (a job's progress, the job list, a Generate click's results) end when the
page closes, though the job goes on: a host's "Reload UI" waits for every open stream."""

from __future__ import annotations

from types import SimpleNamespace

from easyphoto_app import ui_generate, ui_jobs, widgets


def _running(job_id: str) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, state="running", progress={"stage": "train"}, message="",
                           result={}, kind="train", user_ids=["u"], created=0.0, updated=0.0,
                           queued_at=0.0)


class _Closing:
    """False for the first `after` calls, then True (the page closes meanwhile)."""

    def __init__(self, after: int) -> None:
        self.calls, self.after = 0, after

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.after


def test_a_jobs_progress_stream_ends_when_the_page_closes(monkeypatch):
    monkeypatch.setattr(widgets, "POLL_SECONDS", 0.01)
    record = _running("a")
    closing = _Closing(after=2)
    frames = list(widgets.follow(lambda job_id: record, record, lambda rec, state: (rec.state,),
                                 closing=closing))
    # asked just before each next frame: nothing is sent once the page is closing
    assert frames == [("running",)] * 3 and closing.calls == 3


def test_a_jobs_progress_stream_without_a_closing_page_follows_the_job_to_its_end(monkeypatch):
    monkeypatch.setattr(widgets, "POLL_SECONDS", 0.01)
    states = iter(["running", "running", "done"])
    get = lambda job_id: SimpleNamespace(**{**vars(_running(job_id)), "state": next(states)})  # noqa: E731
    frames = list(widgets.follow(get, _running("a"), lambda rec, state: (rec.state,)))
    assert frames == [("running",), ("running",), ("running",), ("done",)]


def _context(closing) -> SimpleNamespace:
    job = _running("a")
    jobs = SimpleNamespace(get=lambda job_id: job, list=lambda **kwargs: [job])
    return SimpleNamespace(jobs=jobs, ui_closing=closing)


def test_the_job_list_and_a_generate_clicks_stream_end_when_the_page_closes(monkeypatch):
    monkeypatch.setattr(widgets, "POLL_SECONDS", 0.01)  # the wait between frames of all three
    closing = _Closing(after=1)
    assert len(list(ui_jobs.follow_jobs(_context(closing)))) == 2
    closing = _Closing(after=1)
    assert len(list(ui_generate.follow_batch(_context(closing), ["a"]))) == 2


def test_no_frame_is_sent_once_the_page_began_closing_during_the_wait(monkeypatch):
    """The host stops its queue while the stream waits between frames: the stream ends without
    another frame (one sent to the closed websocket leaves gradio 3.41's event open forever,
    and the host's close waits for it)."""
    closed = []
    monkeypatch.setattr(widgets.time, "sleep", lambda seconds: closed.append(True))
    record = _running("a")
    frames = list(widgets.follow(lambda job_id: record, record, lambda rec, state: (rec.state,),
                                 closing=lambda: bool(closed)))
    assert frames == [("running",)]
