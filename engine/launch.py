"""Start the engine as a detached subprocess: `python -m engine run RUN_DIR`.

Used by `ftwb train` and by the TUI. The engine gets its own session (so a hangup of the
terminal, SSH or tmux does not reach it), its stdout/stderr go to engine.log, and events
travel on a dedicated pipe whose write end is passed as FTWB_EVENT_FD. Plain Python.

On several devices (train.devices or --devices) the same detached start runs torchrun
instead, through `python -m engine.distributed` (torchrun in-process with the engine's
signal handling): one engine per device, the event pipe reaching rank 0, torchrun's
per-rank logs in RUN_DIR/ranks and, with --tee, every rank's lines in engine.log. The pid
the run records is that of the torchrun agent, and a signal to it reaches every rank.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine import config as C
from engine import rundir
from engine.events import EVENT_FD_ENV


@dataclass
class Launched:
    run_dir: Path
    proc: subprocess.Popen
    event_fd: int | None  # read end of the event pipe; None when detached
    log_offset: int = 0   # size of events.jsonl before this engine started: older events are history


@dataclass
class DistOptions:
    """How many processes, on how many machines: --devices and the torchrun flags."""
    devices: int | str | list[int] | None = None  # None: the run's train.devices
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None  # HOST:PORT of the rendezvous (the first node) for several nodes
    rdzv_id: str | None = None
    master_port: int | None = None    # one machine: a free port unless given
    extra: list[str] = field(default_factory=list)


def parse_devices(text: str) -> int | str | list[int]:
    """--devices: a count, 'all', or GPU indices '0,2' (as train.devices)."""
    t = text.strip().lower()
    if t == "all":
        return "all"
    try:
        if "," in t:
            return [int(x) for x in t.split(",") if x.strip()]
        return int(t)
    except ValueError:
        raise C.ConfigError(f"--devices: {text!r} is not allowed; give a count (2), 'all', or GPU indices "
                            "such as 0,2") from None


def plan_processes(devices, gpus: int | None = None) -> tuple[int, str | None]:
    """(processes on this machine, CUDA_VISIBLE_DEVICES to set or None) for train.devices.
    Without GPUs a count means that many CPU processes (gloo)."""
    from engine import distributed

    gpus = distributed.gpu_count() if gpus is None else gpus
    if devices == "all":
        return max(1, gpus), None
    if isinstance(devices, list):
        if not gpus:
            raise C.ConfigError(f"train.devices: {devices!r} names GPUs and this machine has none; give a count "
                                "(such as 2) to train on that many CPU processes")
        if max(devices) >= gpus:
            raise C.ConfigError(f"train.devices: GPU {max(devices)} does not exist; this machine has {gpus} "
                                f"visible GPU(s), numbered 0 to {gpus - 1}")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [v.strip() for v in visible.split(",") if v.strip()] if visible.strip() else None
        return len(devices), ",".join(ids[i] if ids else str(i) for i in devices)
    n = int(devices)
    if gpus and n > gpus:
        raise C.ConfigError(f"train.devices: {n} is more than the {gpus} GPU(s) this machine has; give at most "
                            f"{gpus}, or 'all'")
    return n, None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_argv(run_dir: Path, nproc: int, dist: DistOptions) -> list[str]:
    """`python -m engine.distributed` + torchrun's own flags, ending in `-m engine run RUN_DIR`."""
    argv = [sys.executable, "-m", "engine.distributed", "--nproc-per-node", str(nproc),
            "--nnodes", str(dist.nnodes)]
    if dist.rdzv_endpoint:
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", dist.rdzv_endpoint,
                 "--rdzv-id", dist.rdzv_id or "ftwb"]
        if dist.node_rank is not None:
            argv += ["--node-rank", str(dist.node_rank)]
    elif dist.nnodes > 1:
        raise C.ConfigError("--nnodes: several machines need --rdzv-endpoint HOST:PORT (an address of the first "
                            "machine that all of them reach), the same on every machine")
    else:
        argv += ["--master-addr", "127.0.0.1", "--master-port", str(dist.master_port or _free_port())]
    argv += ["--log-dir", str(run_dir / "ranks"), "--redirects", "3", "--tee", "3", *dist.extra]
    return argv + ["-m", "engine", "run", str(run_dir)]


def resolve_paths(cfg: C.RunConfig, base: Path | None = None) -> C.RunConfig:
    """Make local paths absolute so the run does not depend on the launcher's cwd."""
    cfg = cfg.copy()
    base = base or Path.cwd()
    def absolute(value):
        if isinstance(value, dict):  # one of several data sources
            return {**value, "path": absolute(value.get("path"))}
        if not isinstance(value, str) or not value or value == "demo":
            return value
        p = Path(value).expanduser()
        cand = p if p.is_absolute() else base / p
        return str(cand.resolve()) if cand.exists() else value

    for section, key in (("model", "name_or_path"), ("data", "path")):
        obj = getattr(cfg, section)
        value = getattr(obj, key)
        setattr(obj, key, [absolute(v) for v in value] if isinstance(value, list) else absolute(value))
    from engine.evaluate.sets import resolve_paths as resolve_set_paths

    cfg.eval.sets = resolve_set_paths(cfg.eval.sets, base)
    return cfg


def prepare_run(cfg: C.RunConfig, runs_dir: str | None = None, name: str | None = None) -> Path:
    """Create the run directory and write the resolved config into it."""
    cfg = resolve_paths(cfg)
    root = rundir.default_runs_dir(runs_dir, cfg.output.runs_dir if cfg.output.runs_dir != "runs" else None)
    name = name or cfg.output.name or _default_name(cfg)
    path = rundir.create(root, name)
    cfg.output.runs_dir = str(root)
    cfg.output.name = name
    try:
        C.save(cfg, path / rundir.CONFIG)
    except OSError as e:  # a full disk: leave no empty run directory behind
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        free = shutil.disk_usage(root).free if root.exists() else 0
        raise rundir.RunDirError(f"cannot write the run directory in {root}: {e.strerror} "
                                 f"({free / 2**20:.1f} MiB free); free some space or pass --runs-dir DIR") from None
    return path


def _default_name(cfg: C.RunConfig) -> str:
    model = Path(cfg.model.name_or_path.rstrip("/")).name or "model"
    return f"{model}-{cfg.method}"


def spawn(run_dir: Path, resume: bool = False, pipe: bool = True, extra_env: dict | None = None,
          dist: DistOptions | None = None) -> Launched:
    dist = dist or DistOptions()
    devices = dist.devices
    if devices is None:
        devices = C.load(run_dir / rundir.CONFIG).train.devices
    nproc, visible = plan_processes(devices) if devices != 1 else (1, None)
    if nproc > 1 or dist.nnodes > 1:
        problem = C.preference_parallel_problem(C.load(run_dir / rundir.CONFIG), nproc * dist.nnodes)
        if problem:
            raise C.ConfigError(problem)
        argv = torchrun_argv(run_dir, nproc, dist)
    else:
        argv = [sys.executable, "-m", "engine", "run", str(run_dir)]
    if resume:
        argv.append("--resume")
    env = dict(os.environ)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
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
    try:
        log_offset = (run_dir / rundir.EVENTS).stat().st_size
    except FileNotFoundError:
        log_offset = 0
    log = open(run_dir / rundir.LOG, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=pass_fds, start_new_session=True, env=env, close_fds=True)
    finally:
        log.close()
        if w is not None:
            os.close(w)
    return Launched(run_dir=run_dir, proc=proc, event_fd=r, log_offset=log_offset)


ENGINE_REFUSED = 3  # the engine's exit code when another engine holds the run's lock


def wait_started(launched: Launched, timeout: float = 60.0) -> str | None:
    """Wait until this engine holds the run's lock (None) or has exited (why, as text):
    a detached start must not report success for an engine that refused to run."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        code = launched.proc.poll()
        if code is not None:
            return exit_reason(launched.run_dir, code)
        if rundir.read_pid(launched.run_dir) == launched.proc.pid:
            return None
        time.sleep(0.05)
    return None  # still starting (a slow import): it is running, not refused


def exit_reason(run_dir: Path, code: int) -> str:
    """The engine's own last words from engine.log, for an engine that exited early."""
    try:
        lines = [ln for ln in (run_dir / rundir.LOG).read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        lines = []
    own = [ln.split("ftwb engine: ", 1)[1] for ln in lines if "ftwb engine: " in ln]  # [defaultN]: under torchrun
    last = own[-1] if own else lines[-1] if lines else ""
    return last or f"the engine exited with code {code} before starting"


def start(cfg: C.RunConfig, runs_dir: str | None = None, name: str | None = None, pipe: bool = True,
          dist: DistOptions | None = None) -> Launched:
    path = prepare_run(cfg, runs_dir, name)
    try:
        return spawn(path, pipe=pipe, dist=dist)
    except C.ConfigError:  # refused before any process started: leave no empty run behind
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        raise


def config_changes(run_dir: Path, ckpt: Path) -> list[tuple[str, object, object]]:
    """Changes from the config checkpoint `ckpt` was trained with to the run's config.yaml
    now (an edit before resuming). Fields that cannot change mid-run raise ConfigError
    naming each one; the rest are returned to be applied from the resume step."""
    old_path = ckpt / "config.yaml"
    if not old_path.exists():  # a checkpoint from before configs were kept with them
        return []
    old, new = C.load(old_path), C.load(run_dir / rundir.CONFIG)
    allowed, refused = C.resume_changes(old, new)
    if refused:
        raise C.ConfigError(f"{run_dir / rundir.CONFIG}: these fields cannot change in the middle of a run: "
                            f"{C.describe_changes(refused)}; put them back to resume {ckpt.name}, or start "
                            "a new run with the edited config")
    return allowed


def resume(run_dir: str | os.PathLike, pipe: bool = True, dist: DistOptions | None = None) -> Launched:
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).exists():
        raise rundir.RunDirError(f"{run_dir} is not a run directory (no {rundir.CONFIG})")
    if rundir.is_alive(run_dir):
        raise rundir.RunDirError(f"{run_dir} is still running (pid {rundir.read_pid(run_dir)}); attach instead")
    ckpts = rundir.checkpoints(run_dir)
    if not ckpts:
        raise rundir.RunDirError(f"{run_dir} has no complete checkpoint to resume from")
    config_changes(run_dir, ckpts[-1])  # refused before any process starts
    return spawn(run_dir, resume=True, pipe=pipe, dist=dist)
