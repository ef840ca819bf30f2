"""Talks to the playground's generation process (`python -m engine.serve RUN_DIR`).

The model lives in that subprocess, never in the TUI: this module imports no torch. One
reader task reads the JSON lines off the process's stdout and routes each reply to the
queue of the request it answers; stderr is drained into a short tail kept for messages.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any, AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
LINE_LIMIT = 16 * 1024 * 1024


class PlaygroundError(RuntimeError):
    """The generation process cannot start or has stopped; the message says why."""


class PlaygroundClient:
    def __init__(self, run_dir: str | os.PathLike, python: str = sys.executable, device: str | None = None):
        self.run_dir = Path(run_dir)
        self.python, self.device = python, device
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._queues: dict[Any, asyncio.Queue] = {}
        self._ready: asyncio.Future | None = None
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = 600) -> dict[str, Any]:
        """Spawn the process and wait until the model is loaded; returns its ready message."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        argv = [self.python, "-m", "engine.serve", str(self.run_dir)]
        if self.device:
            argv += ["--device", self.device]
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT, env=env)
        except OSError as e:
            raise PlaygroundError(f"cannot start the generation process: {e}") from None
        self._ready = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise PlaygroundError(f"the model did not load within {timeout:.0f}s") from None
        return self.info

    async def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("ready"):
                if self._ready and not self._ready.done():
                    self._ready.set_result(msg)
            elif "error" in msg and msg.get("id") is None:
                if self._ready and not self._ready.done():
                    self._ready.set_exception(PlaygroundError(msg["error"]))
                else:
                    for q in self._queues.values():
                        q.put_nowait(msg)
            elif msg.get("id") in self._queues:
                self._queues[msg["id"]].put_nowait(msg)
        await self.proc.wait()
        gone = PlaygroundError(self._exit_message())
        if self._ready and not self._ready.done():
            self._ready.set_exception(gone)
        for q in self._queues.values():
            q.put_nowait({"error": str(gone), "fatal": True})

    async def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)

    def _exit_message(self) -> str:
        rc = self.proc.returncode if self.proc else None
        last = next((l for l in reversed(self.stderr_tail) if l.strip()), "")
        return f"the generation process exited (code {rc})" + (f": {last}" if last else "")

    async def _send(self, obj: dict) -> None:
        if not self.running or self.proc.stdin is None:
            raise PlaygroundError(self._exit_message() if self.proc else "the generation process is not started")
        try:
            self.proc.stdin.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise PlaygroundError(self._exit_message()) from None

    async def generate(self, messages: list[dict], which: str = "both", temperature: float = 0.0,
                       top_p: float = 1.0, max_new_tokens: int = 256,
                       seed: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yields the process's replies for one request: {"which", "token"} pieces, then one
        {"which", "done": True, "text"} per side; an {"error"} ends the stream."""
        rid = next(self._ids)
        q: asyncio.Queue = asyncio.Queue()
        self._queues[rid] = q
        sides = 2 if which == "both" else 1
        req = {"id": rid, "messages": messages, "which": which, "temperature": temperature, "top_p": top_p,
               "max_new_tokens": max_new_tokens}
        if seed is not None:
            req["seed"] = seed
        self.last_id = rid
        try:
            await self._send(req)
            done = 0
            while done < sides:
                msg = await q.get()
                yield msg
                if "error" in msg:
                    return
                if msg.get("done"):
                    done += 1
        finally:
            self._queues.pop(rid, None)

    async def cancel(self, rid: int | None = None) -> None:
        rid = rid if rid is not None else getattr(self, "last_id", None)
        if rid is not None and self.running:
            await self._send({"cancel": rid})

    async def close(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            try:
                if proc.stdin:
                    proc.stdin.close()  # EOF: the process returns on its own
                await asyncio.wait_for(proc.wait(), timeout)
            except (asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
                proc.kill()
                await proc.wait()
        for t in self._tasks:
            t.cancel()
        self._tasks = []
