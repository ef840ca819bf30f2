"""What `ftwb [PATH]` opens: a run directory, a config YAML or a dataset, else the demo.

Plain Python; returns a Target or raises OpenError with a one-line message.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine import config as C


class OpenError(ValueError):
    pass


@dataclass
class Target:
    config: C.RunConfig
    config_path: Path | None = None
    run_dir: Path | None = None
    dataset: Path | None = None
    mode: str = "train"  # the screen to open on
    # The bundled demo config's checks across fields (engine.config.check) are still to run:
    # they import the data and eval modules, so the app runs them right after its first frame.
    checks_pending: bool = False


def demo_config(cross_checks: bool = True) -> C.RunConfig:
    """The bundled demo's config (engine.demo), or the schema defaults (which point at
    the demo model and data) when that module is not there."""
    try:
        from engine.demo import demo_config as make
    except ImportError:
        return C.RunConfig()
    try:
        return make(cross_checks=cross_checks)
    except Exception:
        return C.RunConfig()


def resolve(path: str | None, runs_dir: str | None = None, attach: str | None = None,
            attach_latest: bool = False) -> Target:
    if not (path or attach or attach_latest):
        return Target(config=demo_config(cross_checks=False), checks_pending=True)
    from engine import rundir  # not for the demo: the first frame of `ftwb` does without it

    if attach_latest and not attach:
        latest = rundir.latest_run(rundir.default_runs_dir(runs_dir))
        if latest is None:
            raise OpenError(f"no runs in {rundir.default_runs_dir(runs_dir)}; start one first")
        attach = str(latest)
    if attach:
        return _run_dir(Path(attach))
    p = Path(path).expanduser()
    if not p.exists():
        raise OpenError(f"{path}: no such file or directory; pass a dataset, a config YAML or a run directory")
    if p.is_dir() and (p / rundir.CONFIG).exists():
        return _run_dir(p)
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            cfg = C.load(p)
        except C.ConfigError as e:
            raise OpenError(str(e)) from None
        return Target(config=cfg, config_path=p, mode="config")
    if p.is_dir() and not _is_dataset_dir(p):
        raise OpenError(f"{path}: a directory that is neither a run (no {rundir.CONFIG}) nor a saved dataset")
    cfg = demo_config(cross_checks=False)
    cfg.data.path = str(p.resolve())
    return Target(config=cfg, dataset=p, mode="data", checks_pending=True)


def _is_dataset_dir(p: Path) -> bool:
    names = set(os.listdir(p))
    return bool(names & {"dataset_info.json", "dataset_dict.json", "state.json"}) or any(
        n.endswith((".arrow", ".parquet", ".jsonl", ".json", ".csv")) for n in names)


def _run_dir(p: Path) -> Target:
    from engine import rundir

    if not (p / rundir.CONFIG).exists():
        raise OpenError(f"{p} is not a run directory (no {rundir.CONFIG})")
    try:
        cfg = C.load(p / rundir.CONFIG)
    except C.ConfigError:
        cfg = demo_config()
    return Target(config=cfg, run_dir=p, mode="train")
