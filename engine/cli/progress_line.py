"""One progress line on stderr, shared by the commands that scan a whole dataset: redrawn
in place at most every `every` seconds, cleared when done, silent off a terminal (so
pipes, logs and --json output never see it)."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, every: float = 0.1, on: bool | None = None):
        self.on = sys.stderr.isatty() if on is None else on
        self.every, self.last, self.width = every, 0.0, 0

    def due(self, force: bool = False) -> bool:
        """Whether a redraw is due now (callers skip building the text otherwise)."""
        return self.on and (force or time.monotonic() - self.last >= self.every)

    def show(self, text: str, fraction: float | None = None, width: int = 24) -> None:
        self.last = time.monotonic()
        if fraction is not None:
            filled = int(max(0.0, min(1.0, fraction)) * width)
            text = "[" + "#" * filled + "." * (width - filled) + "] " + text
        sys.stderr.write("\r" + text.ljust(self.width))
        self.width = len(text)
        sys.stderr.flush()

    def close(self) -> None:
        if self.on and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


class CheckBar:
    """The checks' progress (engine.data.checks_stream's progress records): % by rows when
    the total is known, else by bytes; rows and rows/s."""

    def __init__(self, label: str, on: bool | None = None):
        self.label, self.line = label, ProgressLine(0.1, on)

    def __call__(self, p) -> None:
        if not self.line.due(force=p.phase != "rows"):
            return
        frac = p.fraction
        pct = f"{100 * frac:3.0f}% " if frac is not None else ""
        what = {"rows": "", "duplicates": "  finding duplicates …", "done": ""}[p.phase]
        self.line.show(f"{self.label}: {pct}{p.records:,} rows  {p.rate:,.0f} rows/s{what}", frac)

    def close(self) -> None:
        self.line.close()
