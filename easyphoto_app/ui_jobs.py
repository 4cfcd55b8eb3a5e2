"""The job list: recent and running jobs with state and progress, the same in every browser tab
(it reads the studio's job store, not the page's memory)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from easyphoto_app import compat, views
from easyphoto_app.labels import text
from easyphoto_app.widgets import ENDED, next_frame_wanted
from easyphoto_core.context import StudioContext

JOBS_SHOWN = 20


def recent_jobs(context: StudioContext, limit: int = JOBS_SHOWN) -> list[Any]:
    return list(context.jobs.list(limit=limit))


def newest_job(context: StudioContext, kind: str) -> Any | None:
    """The running (or queued) job of `kind`, else the newest one: what a reload shows."""
    jobs = [job for job in recent_jobs(context) if job.kind == kind]
    active = [job for job in jobs if job.state not in ENDED]
    return (active or jobs or [None])[0]


def jobs_table(context: StudioContext) -> str:
    return views.jobs_html(recent_jobs(context))


def build_jobs_panel(context: StudioContext) -> tuple[Any, Any]:
    with gr.Accordion(text("jobs"), open=True, elem_id="easyphoto_jobs_panel"):
        table = gr.HTML(jobs_table(context), elem_id="easyphoto_jobs")
        refresh = gr.Button(text("refresh_jobs"), size="sm", elem_id="easyphoto_refresh_jobs")
    refresh.click(lambda: jobs_table(context), inputs=[], outputs=[table], **compat.quick())
    return table, refresh


def follow_jobs(context: StudioContext) -> Iterator[str]:
    """The table every POLL_SECONDS while any job is queued or running; ends when none is, or
    when the page closes."""
    while True:
        jobs = recent_jobs(context)
        yield views.jobs_html(jobs)
        if all(job.state in ENDED for job in jobs):
            return
        if not next_frame_wanted(context.ui_closing):
            return
