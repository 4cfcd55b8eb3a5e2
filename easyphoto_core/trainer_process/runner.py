"""Runs `python -m easyphoto_train` as a subprocess and turns its output into events.

The trainer runs in its own process so that a crash, an out-of-memory error or a cancel never
takes the host down, and so that its GPU memory is returned in full when it exits.

It never outlives us: its stdin is a pipe we hold, and `--parent-watch` makes it stop at the next
step (keeping its last checkpoint) when that pipe closes, which the OS does when we die however
we die (kill -9 included, Windows included); on Linux a parent-death signal (SIGTERM) does the
same. Its stderr goes to a log file (the job's `trainer.log`), named in every error message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyphoto_core import PROJECT_ROOT
from easyphoto_core.trainer_process.config import TrainerConfig
from easyphoto_core.trainer_process.events import ExitCode, parse_event

EventCallback = Callable[[dict[str, Any]], None]
LOG_TAIL_BYTES = 4000


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
    log_file: Path | None = None

    @property
    def done(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["event"] == "done"), None)

    @property
    def cancelled(self) -> bool:
        return self.exit_code == ExitCode.CANCELLED


def trainer_command(job_file: Path, *, resume: bool = False, python: str | None = None,
                    parent_watch: bool = True) -> list[str]:
    command = [python or sys.executable, "-m", "easyphoto_train", "--config", str(job_file)]
    return command + (["--resume"] if resume else []) + (["--parent-watch"] if parent_watch
                                                          else [])


def run_trainer(job: TrainerConfig, job_file: Path, *, on_event: EventCallback | None = None,
                python: str | None = None, log_file: Path | None = None) -> TrainingOutcome:
    """Write the job file, run the trainer to its end, report each event; never raises on a
    trainer failure (the outcome carries the exit code, the error event and the log's path)."""
    job.save(job_file)
    log_file = log_file or job_file.with_suffix(".log")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            trainer_command(job_file, resume=job.resume, python=python), cwd=PROJECT_ROOT,
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            bufsize=1, **_die_with_parent())
    events: list[dict[str, Any]] = []
    try:
        for line in process.stdout:
            event = parse_event(line)
            if event is None:
                continue
            events.append(event)
            if on_event is not None:
                on_event(event)
        code = process.wait()
    except BaseException:  # our side failed: the trainer must not go on alone
        process.terminate()
        process.wait()
        raise
    finally:
        with suppress(OSError):
            process.stdin.close()
    return TrainingOutcome(code, events, _tail(log_file), log_file)


def _die_with_parent() -> dict[str, Any]:
    """Popen arguments that make the child receive SIGTERM when we die (Linux only; the stdin
    watch covers every system)."""
    if not sys.platform.startswith("linux"):
        return {}
    import ctypes

    # looked up here, not in the child: between fork and exec only this call runs there
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG

    # The signal fires when the *thread* that started the child ends; our callers start it from
    # the long-lived job worker thread or the CLI's main thread.
    return {"preexec_fn": set_parent_death_signal}


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def raise_for_outcome(outcome: TrainingOutcome) -> dict[str, Any]:
    """The 'done' event, or TrainingFailed with the trainer's error message, its fix, and the
    log file that holds the trainer's full output."""
    if outcome.exit_code == ExitCode.OK and outcome.done:
        return outcome.done
    error = next((e for e in reversed(outcome.events) if e["event"] == "error"), None)
    log_note = f" The trainer's full output is in {outcome.log_file}." if outcome.log_file else ""
    if outcome.cancelled:
        message = "Training was cancelled; the last good checkpoint is kept (--resume continues)."
    elif error:
        message = f"Training failed: {error.get('message')}"
        if error.get("hint"):
            message += f" — {error['hint']}"
        message += log_note
    else:
        message = (f"The trainer stopped ({_exit_words(outcome.exit_code)}) without saying why; "
                   f"the last checkpoint is kept (Resume continues).{log_note}\n"
                   f"Last lines of its output:\n{outcome.stderr_tail[-1500:]}")
    raise TrainingFailed(message, exit_code=outcome.exit_code, events=outcome.events)


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
