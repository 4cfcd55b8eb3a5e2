"""Progress of a training run as JSON lines on stdout, and the process's exit codes.

One JSON object per line, always with "event" and "time"; the core (jobs, UI, CLI) parses them.
  start       {"total_steps", "start_step", "photos", "device", "dtype", "startup_seconds", "pid"}
  step        {"step", "total_steps", "loss", "lr", "eta_seconds", "seconds_per_step"}
  validating  {"step"}: the checkpoint of this step is being validated
  validation  {"step", "scores": [...], "mean_score", "images": [...]}
  checkpoint  {"step", "path"}: on disk (written while training goes on, so it may come after
              the step's validation and later steps)
  done        {"lora_path", "lora_copies", "selected", "score", "fusion_error", "seconds"}
  cancelled   {"step", "checkpoint"}
  error       {"kind", "message", "hint"}; kind "bad_config" (the job file: the message names
              the field), "bad_input", "environment" (a package does not import: the message
              names it and the error, the hint is the fix), "out_of_memory", or "crash"
"""

from __future__ import annotations

import json
import sys
import threading
import time
from enum import IntEnum
from typing import Any, TextIO


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # unexpected failure: the "error" event says what happened
    BAD_CONFIG = 2  # the job file or an input is invalid: nothing was trained
    CANCELLED = 3  # SIGTERM or cancel file: the last good checkpoint is kept
    OUT_OF_MEMORY = 4  # GPU out of memory: the hint says which setting to lower


class EventWriter:
    """Writes one JSON object per line and flushes, so a parent process sees progress at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO | None = stream or sys.stdout
        self._lock = threading.Lock()  # checkpoints are reported from their writer thread

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        if self.stream is None:
            return record
        try:
            with self._lock:
                self.stream.write(json.dumps(record, default=str) + "\n")
                self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            # the reader is gone (its process died): keep training to the next stop, silently
            self.stream = None
        return record


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on one line of trainer output, or None for other output (library warnings)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "event" in record else None
