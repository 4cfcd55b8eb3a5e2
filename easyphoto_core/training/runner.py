"""Runs `python -m easyphoto_train` as a subprocess and turns its output into events.

The trainer runs in its own process so that a crash, an out-of-memory error or a cancel never
takes the host down, and so that its GPU memory is returned in full when it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core import PROJECT_ROOT
from easyphoto_core.training.events import ExitCode, parse_event
from easyphoto_core.training.job import TrainJob

EventCallback = Callable[[dict[str, Any]], None]


class TrainingFailed(RuntimeError):
    """The trainer stopped with an error; the message is the trainer's own explanation."""

    def __init__(self, message: str, *, exit_code: int, events: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.exit_code, self.events = exit_code, events


@dataclass
class TrainingOutcome:
    exit_code: int
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def done(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["event"] == "done"), None)

    @property
    def cancelled(self) -> bool:
        return self.exit_code == ExitCode.CANCELLED


def trainer_command(job_file: Path, *, resume: bool = False, python: str | None = None
                    ) -> list[str]:
    command = [python or sys.executable, "-m", "easyphoto_train", "--config", str(job_file)]
    return command + (["--resume"] if resume else [])


def run_trainer(job: TrainJob, job_file: Path, *, on_event: EventCallback | None = None,
                python: str | None = None) -> TrainingOutcome:
    """Write the job file, run the trainer to its end, report each event; never raises on a
    trainer failure (the outcome carries the exit code and the error event)."""
    job.save(job_file)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    process = subprocess.Popen(
        trainer_command(job_file, resume=job.resume, python=python), cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    stderr_tail: deque[str] = deque(maxlen=40)
    events: list[dict[str, Any]] = []
    _drain(process, events, stderr_tail, on_event)
    return TrainingOutcome(process.wait(), events, "".join(stderr_tail))


def _drain(process: subprocess.Popen[str], events: list[dict[str, Any]],
           stderr_tail: deque[str], on_event: EventCallback | None) -> None:
    import threading

    # stderr is read on a thread so a chatty library cannot block the trainer on a full pipe
    reader = threading.Thread(target=lambda: stderr_tail.extend(process.stderr), daemon=True)
    reader.start()
    for line in process.stdout:
        event = parse_event(line)
        if event is None:
            continue
        events.append(event)
        if on_event is not None:
            on_event(event)
    reader.join(timeout=5)


def raise_for_outcome(outcome: TrainingOutcome) -> dict[str, Any]:
    """The 'done' event, or TrainingFailed with the trainer's error message and hint."""
    if outcome.exit_code == ExitCode.OK and outcome.done:
        return outcome.done
    error = next((e for e in reversed(outcome.events) if e["event"] == "error"), None)
    if outcome.cancelled:
        message = "Training was cancelled; the last good checkpoint is kept (--resume continues)."
    elif error:
        message = f"Training failed ({error.get('kind')}): {error.get('message')}"
        if error.get("hint"):
            message += f" — {error['hint']}"
    else:
        message = (f"The trainer exited with code {outcome.exit_code} without saying why:\n"
                   f"{outcome.stderr_tail[-2000:]}")
    raise TrainingFailed(message, exit_code=outcome.exit_code, events=outcome.events)
