"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, and stop (every trainer shares this)."""

from __future__ import annotations

import contextlib
import signal


class StopFlag:
    """Set by SIGINT or SIGTERM while installed; the trainer checks it after each step."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in previous:
                signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
