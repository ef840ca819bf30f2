"""Signals the engine obeys: SIGTERM/SIGINT = stop after this step with a checkpoint,
SIGUSR1 = checkpoint now, SIGHUP = ignored (the engine outlives its terminal)."""
from __future__ import annotations

import signal


class Control:
    def __init__(self) -> None:
        self.stop_requested = False
        self.save_requested = False

    def install(self) -> "Control":
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_save)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def _on_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _on_save(self, signum, frame) -> None:
        self.save_requested = True
