"""The event protocol between the engine and whoever watches it.

One JSON object per line: {"v": 1, "type": ..., "ts": <unix seconds>, ...}. Plain Python,
cheap to import, shared with the TUI. Readers ignore unknown fields and types.

Types: hello, phase, progress, metric, eval, memory, checkpoint, warning, error, done,
data (dataset statistics: rows, truncated, dropped, ...), log (a line for the
human log) and eval_result (base vs fine-tuned scores at the end of a run).
"""
from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

VERSION = 1

TYPES = ("hello", "phase", "progress", "metric", "eval", "memory", "checkpoint",
         "warning", "error", "done", "data", "log", "eval_result")
PHASES = ("loading_model", "preparing_data", "training", "evaluating", "saving", "exporting")
DONE_STATUSES = ("completed", "stopped", "failed")
ERROR_KINDS = ("oom", "data", "config", "crash")

EVENT_FD_ENV = "FTWB_EVENT_FD"


def make(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": type_, "ts": round(time.time(), 3), **fields}


def encode(event: dict[str, Any]) -> str:
    # allow_nan=False would raise on a NaN loss; encode non-finite numbers as strings instead.
    return json.dumps(_finite(event), separators=(",", ":"), ensure_ascii=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def decode(line: str | bytes) -> dict[str, Any] | None:
    """Parse one line; None for blank, partial or foreign lines (never raises)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or "type" not in obj:
        return None
    return obj


class EventWriter:
    """Writes each event to events.jsonl (always) and to the event pipe (while it is open).

    A broken pipe (the TUI went away) is not an error: the log keeps growing and any
    later `ftwb attach` replays it.
    """

    def __init__(self, log_path: str | os.PathLike, pipe_fd: int | None = None):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)
        self._pipe_fd = pipe_fd
        self.last: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_env(cls, log_path: str | os.PathLike) -> "EventWriter":
        fd = os.environ.get(EVENT_FD_ENV)
        return cls(log_path, int(fd) if fd and fd.isdigit() else None)

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = make(type_, **fields)
        line = encode(event) + "\n"
        self._log.write(line)
        self._log.flush()
        if self._pipe_fd is not None:
            self._write_pipe(line.encode("utf-8"))
        self.last[type_] = event
        return event

    def _write_pipe(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._pipe_fd, view)
                view = view[n:]
        except OSError as e:
            # A stalled reader (EAGAIN) only misses this event, which the log has; any
            # other failure (EPIPE: the TUI went away) ends the pipe for good.
            if e.errno != errno.EAGAIN:
                self._close_pipe()

    def _close_pipe(self) -> None:
        fd, self._pipe_fd = self._pipe_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self._close_pipe()
        self._log.close()


def read_all(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every parseable event in an events.jsonl file."""
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                ev = decode(line)
                if ev is not None:
                    out.append(ev)
    except FileNotFoundError:
        pass
    return out


class LogFollower:
    """Incrementally reads complete lines appended to events.jsonl (for attach / replay).

    `poll()` returns the events written since the last call; a partial last line is kept
    until its newline arrives.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._pos = 0
        self._buf = b""

    def poll(self, max_bytes: int = 64 * 1024 * 1024) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._pos += len(chunk)
        data = self._buf + chunk
        lines = data.split(b"\n")
        self._buf = lines.pop()
        events = []
        for line in lines:
            ev = decode(line)
            if ev is not None:
                events.append(ev)
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.poll()
