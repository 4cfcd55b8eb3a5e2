"""Cancellation: SIGTERM, a cancel file, or the parent going away; checked once per step."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

# After the parent is gone, the step in progress may finish and the run stops at the next check;
# a run stuck longer than this (a hung kernel, a long validation) exits anyway.
PARENT_GONE_GRACE_SECONDS = 120.0


class CancelToken:
    """Set by SIGTERM/SIGINT, by `cancel_file` (one older than `not_before` is a stale request
    from an earlier run and is ignored), or by `watch_parent` when our stdin closes."""

    def __init__(self, cancel_file: Path | None = None, *, not_before: float | None = None
                 ) -> None:
        self.cancel_file = cancel_file
        self.not_before = not_before
        self.reason = ""
        self._signalled = False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True
        self.reason = self.reason or f"signal {signal.Signals(signum).name}"
        _log(f"{self.reason}: stopping at the next step")

    def watch_parent(self, exit_code: int) -> None:
        """Stop when the process that started us dies: it holds our stdin's other end, which
        the OS closes however it dies. Then exit for good after PARENT_GONE_GRACE_SECONDS."""

        def watch() -> None:
            # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside the
            # buffered reader aborts the interpreter at exit (it cannot take the reader's lock)
            fd = sys.stdin.fileno() if sys.stdin is not None else None
            try:
                while fd is not None and os.read(fd, 1):
                    pass  # the parent writes nothing; EOF (b"") means it is gone
            except OSError:
                pass
            self._signalled = True
            self.reason = self.reason or "the process that started the training is gone"
            _log("the process that started the training is gone: stopping at the next step")
            timer = threading.Timer(PARENT_GONE_GRACE_SECONDS, os._exit, args=(exit_code,))
            timer.daemon = True
            timer.start()

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()

    @property
    def requested(self) -> bool:
        if self._signalled:
            return True
        if self.cancel_file is None:
            return False
        try:
            modified = self.cancel_file.stat().st_mtime
        except OSError:
            return False
        if self.not_before is not None and modified < self.not_before - 1.0:
            return False  # left over from before this run (1 s: coarse file-system clocks)
        self.reason = self.reason or "a cancel request"
        return True


def _log(message: str) -> None:
    """A line for the job's log (our stderr), so it tells why a run stopped."""
    try:
        sys.stderr.write(f"[easyphoto_train] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
