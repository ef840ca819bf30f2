"""The engine client: start, attach to, follow and control one run.

A RunSession owns a reader thread that feeds a RunState:
- a run started here is read off its event pipe (chunks, applied in bulk);
- an attached run is replayed from events.jsonl in one batch, then followed with
  LogFollower about four times a second.
When the engine is gone without a `done` event the state is marked crashed.
Control is by signal: SIGTERM stops after the current step with a checkpoint, SIGUSR1
saves a checkpoint now. Plain Python: the UI polls the state on its own timer.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from engine import events as ev
from engine import rundir
from tui.services.run_state import RunState

POLL_S = 0.25


class ControlError(RuntimeError):
    """A control action that cannot be done; the message says why."""


class RunSession:
    def __init__(self, run_dir: Path, proc=None, event_fd: int | None = None, replay_until: int | None = None):
        self.run_dir = Path(run_dir)
        self.state = RunState(self.run_dir)
        self.proc = proc
        self._fd = event_fd
        self._replay_until = replay_until
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"ftwb-reader-{self.run_dir.name}", daemon=True)

    # ------------------------------------------------------------ constructors
    @classmethod
    def attach(cls, run_dir: str | os.PathLike) -> "RunSession":
        run_dir = Path(run_dir)
        if not (run_dir / rundir.CONFIG).exists():
            raise ControlError(f"{run_dir} is not a run directory (no {rundir.CONFIG})")
        s = cls(run_dir)
        s.thread.start()
        return s

    @classmethod
    def launch(cls, cfg, runs_dir: str | None = None, name: str | None = None) -> "RunSession":
        from engine import launch

        try:
            launched = launch.start(cfg, runs_dir, name)
        except (rundir.RunDirError, OSError) as e:
            raise ControlError(str(e)) from None
        s = cls(launched.run_dir, proc=launched.proc, event_fd=launched.event_fd, replay_until=0)
        s.thread.start()
        return s

    @classmethod
    def resume(cls, run_dir: str | os.PathLike) -> "RunSession":
        from engine import launch

        run_dir = Path(run_dir)
        try:
            size = (run_dir / rundir.EVENTS).stat().st_size
        except FileNotFoundError:
            size = 0
        try:
            launched = launch.resume(run_dir)
        except (rundir.RunDirError, OSError) as e:
            raise ControlError(str(e)) from None
        # History up to the spawn comes from the log, everything after from the pipe.
        s = cls(run_dir, proc=launched.proc, event_fd=launched.event_fd, replay_until=size)
        s.thread.start()
        return s

    # ------------------------------------------------------------ reading
    def _run(self) -> None:
        try:
            if self._fd is not None:
                self._read_pipe()
            else:
                self._follow_log()
        except Exception as e:  # the reader must never take the UI down
            self.state.apply(ev.make("warning", kind="reader", message=f"event reader stopped: {e}"))

    def _read_pipe(self) -> None:
        follower = ev.LogFollower(self.run_dir / rundir.EVENTS)
        if self._replay_until:
            self.state.apply_many(follower.poll(max_bytes=self._replay_until))
        # Events the engine dropped from the pipe while this reader lagged come from the log.
        pipe = ev.PipeFollower(self.run_dir / rundir.EVENTS, self._replay_until or 0)
        fd = self._fd
        while not self._stop.is_set():
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.state.apply_many(pipe.feed(chunk))
        self._close_fd()
        if self._stop.is_set():
            return
        # Pipe closed: the engine exited (or closed it). Take anything the log has that
        # the pipe missed, then judge how it ended.
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except Exception:
                pass
        if not self.state.finished:
            self.state.apply_many(pipe.finish())
        if not self.state.finished and not rundir.is_alive(self.run_dir):
            self.state.mark_crashed()

    def _follow_log(self) -> None:
        follower = ev.LogFollower(self.run_dir / rundir.EVENTS)
        # The whole history in one batch (drain: a log over 64 MB is more than one poll), so a
        # finished run never shows as crashed half-way through its replay.
        self.state.apply_many(follower.drain())
        while True:
            if not self._alive():
                self.state.apply_many(follower.drain())
                if self.state.events_seen and not self.state.finished:
                    self.state.mark_crashed()
                # Keep watching slowly: a resume by another ftwb appends to this log.
                if self._stop.wait(2.0):
                    return
            elif self._stop.wait(POLL_S):
                return
            self.state.apply_many(follower.poll())

    def _alive(self) -> bool:
        if self.proc is not None:  # started here: the child process is the truth
            return self.proc.poll() is None
        return rundir.is_alive(self.run_dir)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------ control
    def is_live(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return rundir.is_alive(self.run_dir)

    def pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return rundir.read_pid(self.run_dir) if rundir.is_alive(self.run_dir) else None

    def _signal(self, sig: int, what: str) -> int:
        pid = self.pid()
        if pid is None:
            raise ControlError(f"cannot {what}: the run in {self.run_dir.name} is not running")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            raise ControlError(f"cannot {what}: engine pid {pid} has already exited") from None
        except PermissionError:
            raise ControlError(f"cannot {what}: no permission to signal pid {pid}") from None
        return pid

    def stop(self) -> int:
        """Graceful stop: the engine finishes the step, saves a checkpoint and says done."""
        return self._signal(signal.SIGTERM, "stop")

    def save_now(self) -> int:
        return self._signal(signal.SIGUSR1, "save a checkpoint")

    def detach(self) -> None:
        """Stop reading; the engine keeps running and keeps writing events.jsonl."""
        self._stop.set()
        self._close_fd()
