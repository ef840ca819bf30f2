"""Helpers for tests that run the real engine through the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine import config as C
from engine import events as ev
from engine import rundir

ROOT = Path(__file__).resolve().parents[1]
# The project's shared material (real datasets and configs) lies beside the checkout.
SHARED = next((p for p in (ROOT.parent / "shared", Path("/work/shared")) if p.is_dir()), ROOT.parent / "shared")


def small_demo_config(**train) -> C.RunConfig:
    """The demo task, cut down so an engine test takes seconds on 2 CPU cores."""
    from engine.demo import demo_config

    cfg = demo_config()
    cfg.train.max_steps = 20
    cfg.train.eval_every = 5
    cfg.train.save_every = 5
    cfg.train.keep_checkpoints = 2
    cfg.eval.at_end = False
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def write_config(cfg: C.RunConfig, path: Path) -> Path:
    C.save(cfg, path)
    return path


def ftwb(*args: str, env: dict | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tui.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=kw.pop("cwd", ROOT), **kw)


def follow_in_background(cfg_path: Path, runs_dir: Path, **popen) -> tuple[subprocess.Popen, Path]:
    """`ftwb train CONFIG` following its run, as a background process; returns it and the
    run directory once the engine has logged two steps."""
    cli = subprocess.Popen([sys.executable, "-m", "tui.main", "train", str(cfg_path), "--runs-dir", str(runs_dir)],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)
    run = wait_for(lambda: next(iter(runs_dir.glob("*")), None) if runs_dir.exists() else None)
    wait_for(lambda: last_metric_step(run) >= 2)
    return cli, run


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def events_of(run_dir: Path) -> list[dict]:
    return ev.read_all(run_dir / rundir.EVENTS)


def wait_for(pred, timeout: float = 300, every: float = 0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def pid_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan may wait to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, timeout: float = 120) -> None:
    wait_for(lambda: not pid_running(pid), timeout)


def last_metric_step(run_dir: Path) -> int:
    steps = [e["step"] for e in events_of(run_dir) if e.get("type") == "metric"]
    return max(steps, default=0)
