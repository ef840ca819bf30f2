"""Past runs for the Runs screen: summaries, loss curves for overlays, config diffs.
Plain Python; callers run these in thread workers (they read whole event logs)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine import config as C
from engine import events as ev
from engine import rundir
from tui.services.alerts import as_float
from tui.services.series import Series


@dataclass
class Curves:
    name: str
    train: Series
    val: Series
    margin: Series | None = None    # preference runs: reward margin and accuracy (validation
    accuracy: Series | None = None  # when the run evaluated, else the training steps')


def load_curves(run_dir: Path) -> Curves:
    train, val = Series("train"), Series("val")
    rewards = {(t, k): Series(k) for t in ("metric", "eval") for k in ("reward_margin", "reward_accuracy")}
    for e in ev.read_all(Path(run_dir) / rundir.EVENTS):
        t = e.get("type")
        if t == "metric":
            v = as_float(e.get("loss"))
            if v is not None:
                train.append(as_float(e.get("step")) or 0, v)
        elif t == "eval":
            v = as_float(e.get("val_loss"))
            if v is not None:
                val.append(as_float(e.get("step")) or 0, v)
        if t in ("metric", "eval"):
            for k in ("reward_margin", "reward_accuracy"):
                v = as_float(e.get(k))
                if v is not None:
                    rewards[t, k].append(as_float(e.get("step")) or 0, v)
    src = "eval" if len(rewards["eval", "reward_margin"]) else "metric"
    margin, acc = rewards[src, "reward_margin"], rewards[src, "reward_accuracy"]
    return Curves(Path(run_dir).name, train, val, margin if len(margin) else None, acc if len(acc) else None)


def config_diff(a: Path, b: Path) -> list[tuple[str, object, object]]:
    """Fields that differ between two runs' configs; ConfigError names a bad file."""
    ca, cb = C.load(Path(a) / rundir.CONFIG), C.load(Path(b) / rundir.CONFIG)
    return sorted(C.diff(ca, cb))


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def summaries(runs_dir: Path) -> list[rundir.RunSummary]:
    """Newest first."""
    return list(reversed(rundir.list_runs(runs_dir)))
