"""Cancellation: SIGTERM or a cancel file, checked once per optimizer step."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType


class CancelToken:
    """Set by SIGTERM/SIGINT or by the existence of `cancel_file`; the loop polls `requested`."""

    def __init__(self, cancel_file: Path | None = None) -> None:
        self.cancel_file = cancel_file
        self._signalled = False

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    @property
    def requested(self) -> bool:
        return self._signalled or bool(self.cancel_file and self.cancel_file.exists())
