"""Start the engine as a detached subprocess: `python -m engine run RUN_DIR`.

Used by `ftwb train` and by the TUI. The engine gets its own session (so a hangup of the
terminal, SSH or tmux does not reach it), its stdout/stderr go to engine.log, and events
travel on a dedicated pipe whose write end is passed as FTWB_EVENT_FD. Plain Python.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import config as C
from engine import rundir
from engine.events import EVENT_FD_ENV


@dataclass
class Launched:
    run_dir: Path
    proc: subprocess.Popen
    event_fd: int | None  # read end of the event pipe; None when detached


def resolve_paths(cfg: C.RunConfig, base: Path | None = None) -> C.RunConfig:
    """Make local paths absolute so the run does not depend on the launcher's cwd."""
    cfg = cfg.copy()
    base = base or Path.cwd()
    for section, key in (("model", "name_or_path"), ("data", "path")):
        obj = getattr(cfg, section)
        value = getattr(obj, key)
        if value and value != "demo":
            p = Path(value).expanduser()
            cand = p if p.is_absolute() else base / p
            if cand.exists():
                setattr(obj, key, str(cand.resolve()))
    return cfg


def prepare_run(cfg: C.RunConfig, runs_dir: str | None = None, name: str | None = None) -> Path:
    """Create the run directory and write the resolved config into it."""
    cfg = resolve_paths(cfg)
    root = rundir.default_runs_dir(runs_dir, cfg.output.runs_dir if cfg.output.runs_dir != "runs" else None)
    name = name or cfg.output.name or _default_name(cfg)
    path = rundir.create(root, name)
    cfg.output.runs_dir = str(root)
    cfg.output.name = name
    C.save(cfg, path / rundir.CONFIG)
    return path


def _default_name(cfg: C.RunConfig) -> str:
    model = Path(cfg.model.name_or_path.rstrip("/")).name or "model"
    return f"{model}-{cfg.method}"


def spawn(run_dir: Path, resume: bool = False, pipe: bool = True, extra_env: dict | None = None) -> Launched:
    argv = [sys.executable, "-m", "engine", "run", str(run_dir)]
    if resume:
        argv.append("--resume")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The engine must import the same code as this process, whatever its cwd.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if extra_env:
        env.update(extra_env)
    r = w = None
    pass_fds: tuple[int, ...] = ()
    if pipe:
        r, w = os.pipe()
        os.set_inheritable(w, True)
        env[EVENT_FD_ENV] = str(w)
        pass_fds = (w,)
    else:
        env.pop(EVENT_FD_ENV, None)
    log = open(run_dir / rundir.LOG, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=pass_fds, start_new_session=True, env=env, close_fds=True)
    finally:
        log.close()
        if w is not None:
            os.close(w)
    return Launched(run_dir=run_dir, proc=proc, event_fd=r)


def start(cfg: C.RunConfig, runs_dir: str | None = None, name: str | None = None, pipe: bool = True) -> Launched:
    return spawn(prepare_run(cfg, runs_dir, name), pipe=pipe)


def resume(run_dir: str | os.PathLike, pipe: bool = True) -> Launched:
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).exists():
        raise rundir.RunDirError(f"{run_dir} is not a run directory (no {rundir.CONFIG})")
    if rundir.is_alive(run_dir):
        raise rundir.RunDirError(f"{run_dir} is still running (pid {rundir.read_pid(run_dir)}); attach instead")
    if not rundir.checkpoints(run_dir):
        raise rundir.RunDirError(f"{run_dir} has no complete checkpoint to resume from")
    return spawn(run_dir, resume=True, pipe=pipe)
