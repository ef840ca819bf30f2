"""Run directories: creation (never reused), liveness (pid + lock), and summaries.

runs/<yyyymmdd-hhmmss>-<slug>/ holds config.yaml, data.json, events.jsonl, engine.log,
engine.pid (+ engine.lock held while alive), checkpoints/, adapter/, eval/.
Plain Python; shared with the TUI.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import events as ev

RUNS_DIR_ENV = "FTWB_RUNS_DIR"

CONFIG = "config.yaml"
DATA = "data.json"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"  # kept up to date by the engine; events.jsonl stays the truth
LOG = "engine.log"
PID = "engine.pid"
LOCK = "engine.lock"
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"  # written last into a checkpoint: its presence marks it complete
ADAPTER = "adapter"
EVAL = "eval"


class RunDirError(RuntimeError):
    """A run directory cannot be created, locked or resumed; the message says why."""


def default_runs_dir(cli_value: str | None = None, cfg_value: str | None = None) -> Path:
    """Flag beats environment beats config beats ./runs."""
    return Path(cli_value or os.environ.get(RUNS_DIR_ENV) or cfg_value or "runs")


def slugify(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-._").lower()
    return s[:48] or "run"


def create(runs_dir: str | os.PathLike, name: str) -> Path:
    """Make a fresh run directory. mkdir is atomic, so two runs started in the same second
    get different directories and an existing one is never reused."""
    root = Path(runs_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create the runs directory {root}: {e.strerror}; "
                          "pass --runs-dir DIR or set FTWB_RUNS_DIR to a writable place") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunDirError(f"the runs directory {root} is not writable; "
                          "pass --runs-dir DIR or set FTWB_RUNS_DIR to a writable place")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(name)}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot create a run directory in {root}: {e.strerror}") from None
    raise RunDirError(f"too many runs named {base} in {root}")


# ---------------------------------------------------------------- liveness

class RunLock:
    """Held by the engine for its whole life: an exclusive flock on engine.lock plus
    engine.pid. A crashed engine's lock is released by the kernel, so a stale pid file
    never makes a dead run look alive."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        path = self.run_dir / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirError(f"{self.run_dir} is already being trained by another engine "
                                  f"(pid {read_pid(self.run_dir)}); attach to it instead") from None
            # A finished engine unlinks the lock file while it holds it (a finished run
            # leaves no lock behind); whoever locked that unlinked file opens the new one.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._fd = fd
        (self.run_dir / PID).write_text(str(os.getpid()))

    def release(self) -> None:
        (self.run_dir / PID).unlink(missing_ok=True)
        if self._fd is not None:
            (self.run_dir / LOCK).unlink(missing_ok=True)  # still locked: see acquire()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def read_pid(run_dir: str | os.PathLike) -> int | None:
    try:
        return int((Path(run_dir) / PID).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(run_dir: str | os.PathLike) -> bool:
    """True while an engine holds this run's lock (and its pid exists)."""
    run_dir = Path(run_dir)
    lock = run_dir / LOCK
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = read_pid(run_dir)
        if pid is None:
            return True
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------- summaries

@dataclass
class RunSummary:
    path: Path
    name: str
    status: str  # running | completed | stopped | failed | crashed | created
    method: str = "?"
    model: str = "?"
    dataset: str = "?"
    dataset_version: str = "?"
    step: int = 0
    total_steps: int = 0
    best_val_loss: float | None = None
    last_loss: float | None = None
    started: float | None = None
    ended: float | None = None
    world_size: int = 1          # processes of the latest session (a resume may use another number)
    strategy: str = "single"     # single | ddp | fsdp2
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (time.time() if self.status == "running" else None)
        return None if end is None else end - self.started

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "status": self.status, "method": self.method,
                "model": self.model, "dataset": self.dataset, "dataset_version": self.dataset_version,
                "step": self.step, "total_steps": self.total_steps, "best_val_loss": self.best_val_loss,
                "last_loss": self.last_loss, "started": self.started, "ended": self.ended,
                "duration_s": self.duration_s, "world_size": self.world_size, "strategy": self.strategy}


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if v == v else None


def _int(x: Any) -> int:
    """An event's step count; anything else (a string, a list) is a malformed event."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or abs(x) > 2**62:
        raise ValueError(f"not a step count: {x!r}")
    return int(x)


# The fold of events into a summary: what it keeps besides the RunSummary fields.
_FOLD_KEYS = ("started", "ended", "step", "total_steps", "best_val_loss", "last_loss", "world_size", "strategy")


def _fold(s: RunSummary, e: dict[str, Any], st: dict[str, Any]) -> None:
    """Apply one event; raises ValueError/TypeError for a malformed one (the caller skips it)."""
    t = e.get("type")
    if t == "hello":
        if s.started is None:
            s.started = _num(e.get("ts"))
        st["done"] = None  # a resumed run: a later hello supersedes an earlier done
        s.ended = None
        n = e.get("world_size", 1)
        s.world_size = max(1, _int(n)) if n is not None else 1
        s.strategy = str(e.get("strategy") or ("single" if s.world_size == 1 else "ddp"))
    elif t == "progress":
        step, total = _int(e.get("step") or 0), _int(e.get("total_steps") or 0)
        s.step, s.total_steps = step or s.step, total or s.total_steps
    elif t == "metric":
        s.step = max(s.step, _int(e.get("step") or 0))
        s.last_loss = _num(e.get("loss"))
    elif t == "eval":
        v = _num(e.get("val_loss"))
        if v is not None and (s.best_val_loss is None or v < s.best_val_loss):
            s.best_val_loss = v
    elif t == "done":
        status = e.get("status")
        if not isinstance(status, str):
            raise ValueError(f"done without a status: {status!r}")
        st["done"] = status
        s.ended = _num(e.get("ts"))


_TYPE = re.compile(rb'"type"\s*:\s*"(hello|progress|metric|eval|done)"')


def _fold_log(s: RunSummary, st: dict[str, Any], path: Path, offset: int) -> int:
    """Fold the events of events.jsonl from byte `offset` on, streaming (a 200 MB log never
    sits in memory). Only the last progress/metric line matters for the step, so those are
    decoded once at the end; malformed events are counted and skipped. Returns the offset
    of the first byte not folded (a partial last line waits for its newline)."""
    last_progress = last_metric = None
    try:
        f = open(path, "rb")
    except OSError:
        return offset
    with f:
        f.seek(offset)
        pos = offset
        for line in f:
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            m = _TYPE.search(line)
            if m is None:
                continue
            kind = m.group(1)
            if kind == b"progress":
                last_progress = (pos, line)
                continue
            if kind == b"metric":
                last_metric = (pos, line)
                continue
            _fold_line(s, st, line)
    for _, line in sorted(x for x in (last_metric, last_progress) if x is not None):  # in log order
        _fold_line(s, st, line)
    return pos


def _fold_line(s: RunSummary, st: dict[str, Any], line: bytes) -> None:
    e = ev.decode(line)
    if e is None:
        st["malformed"] = st.get("malformed", 0) + 1
        return
    try:
        _fold(s, e, st)
    except (ValueError, TypeError):
        st["malformed"] = st.get("malformed", 0) + 1


def _read_summary_file(run_dir: Path) -> tuple[RunSummary | None, dict[str, Any], int]:
    try:
        data = json.loads((run_dir / SUMMARY).read_text())
        offset = int(data["events_offset"])
        if offset > (run_dir / EVENTS).stat().st_size:
            raise ValueError("events.jsonl is shorter than the summary says")  # replaced or truncated
        s = RunSummary(path=run_dir, name=run_dir.name, status="created")
        for k in _FOLD_KEYS:
            setattr(s, k, data.get(k, getattr(s, k)))
        s.step, s.total_steps, s.world_size = _int(s.step), _int(s.total_steps), _int(s.world_size)
        return s, {"done": data.get("done"), "malformed": int(data.get("malformed", 0))}, offset
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}, 0


def summarize(run_dir: str | os.PathLike) -> RunSummary:
    """The run's summary: summary.json (kept up to date by the engine) plus whatever
    events.jsonl holds beyond it; the whole log when there is no summary file."""
    run_dir = Path(run_dir)
    s, st, offset = _read_summary_file(run_dir)
    if s is None:
        s, st, offset = RunSummary(path=run_dir, name=run_dir.name, status="created"), {}, 0
    try:
        import yaml

        cfg = yaml.safe_load((run_dir / CONFIG).read_text()) or {}
        s.method = str(cfg.get("method", "?"))
        s.model = str((cfg.get("model") or {}).get("name_or_path", "?"))
        s.dataset = str((cfg.get("data") or {}).get("path", "?"))
    except Exception:  # a damaged config.yaml still lists the run, with "?" fields
        cfg = None
    try:
        data = json.loads((run_dir / DATA).read_text())
        s.dataset_version = str(data.get("version") or data.get("content_hash", "?"))[:16]
    except Exception:  # no data.json yet (the engine is still preparing data)
        data = None
    _fold_log(s, st, run_dir / EVENTS, offset)
    if st.get("malformed"):
        s.extra["malformed_events"] = st["malformed"]
    _judge(s, st.get("done"))
    return s


def _judge(s: RunSummary, done: str | None) -> None:
    if is_alive(s.path):
        s.status = "running"
        s.ended = None
    elif done is not None:
        s.status = done
    elif s.started is not None:
        s.status = "crashed"


class SummaryKeeper:
    """The engine's side of summary.json: folds every event it emits and rewrites the file
    (atomically) on the events that change what a listing shows, or every few seconds, so
    `ftwb runs` and attach read a few hundred bytes instead of the whole log."""

    EVERY_S = 2.0
    NOW = ("hello", "eval", "checkpoint", "error", "done")

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        s, st, offset = _read_summary_file(self.run_dir)
        if s is None:
            s, st, offset = RunSummary(path=self.run_dir, name=self.run_dir.name, status="created"), {}, 0
        self.offset = _fold_log(s, st, self.run_dir / EVENTS, offset)
        self.s, self.st = s, st
        self._written = 0.0

    def update(self, event: dict[str, Any], log_offset: int) -> None:
        try:
            _fold(self.s, event, self.st)
        except (ValueError, TypeError):
            self.st["malformed"] = self.st.get("malformed", 0) + 1
        self.offset = log_offset
        now = time.monotonic()
        if event.get("type") in self.NOW or now - self._written >= self.EVERY_S:
            self.write()
            self._written = now

    def write(self) -> None:
        data = {k: getattr(self.s, k) for k in _FOLD_KEYS}
        data.update(done=self.st.get("done"), malformed=self.st.get("malformed", 0), events_offset=self.offset)
        try:
            from engine.config import atomic_write_text

            atomic_write_text(self.run_dir / SUMMARY, json.dumps(data))
        except OSError:
            pass  # a full disk: the listing falls back to events.jsonl


def list_runs(runs_dir: str | os.PathLike) -> list[RunSummary]:
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = [summarize(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / CONFIG).exists()]
    return out


def latest_run(runs_dir: str | os.PathLike) -> Path | None:
    runs = [p for p in Path(runs_dir).iterdir() if (p / CONFIG).exists()] if Path(runs_dir).is_dir() else []
    return max(runs, key=lambda p: (p / CONFIG).stat().st_mtime) if runs else None


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (those with their manifest), oldest step first. Whether each is
    intact (sizes, finite weights) is engine.train.checkpoint.verify's job."""
    d = Path(run_dir) / CHECKPOINTS
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and (p / MANIFEST).exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]
