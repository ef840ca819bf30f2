"""Trackers: mirror the engine's event stream into TensorBoard, Weights & Biases or MLflow.

`train.report_to` picks them; each is an optional extra (`pip install ftwb[tensorboard]`,
`[wandb]`, `[mlflow]`). A missing package is reported before the run starts
(`missing_packages`, called by `ftwb train`'s pre-flight); a tracker that fails during a
run is switched off with one warning event, never stopping the training.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

NAMES = ("tensorboard", "wandb", "mlflow")
PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def selected(cfg) -> list[str]:
    rt = cfg.train.report_to
    if rt in (None, "none"):
        return []
    return [rt] if isinstance(rt, str) else list(rt)


def missing_packages(cfg) -> str | None:
    """A message naming the tracker whose package is not installed, with the install command."""
    for name in selected(cfg):
        if importlib.util.find_spec(PACKAGE[name]) is None:
            return (f"train.report_to: {name} is not installed in this Python ({sys.executable}); "
                    f"install it with `pip install 'ftwb[{name}]'` (or `pip install {PACKAGE[name]}`), "
                    f"or remove {name} from train.report_to")
    return None


def _open(name: str, cfg, run_dir: Path):
    if name == "tensorboard":
        from engine.trackers.tb import TensorBoardTracker

        return TensorBoardTracker(cfg, run_dir)
    if name == "wandb":
        from engine.trackers.wandb_tracker import WandbTracker

        return WandbTracker(cfg, run_dir)
    from engine.trackers.mlflow_tracker import MlflowTracker

    return MlflowTracker(cfg, run_dir)


class Mirror:
    """Feeds every emitted event to the open trackers; a failing tracker is closed and named once."""

    def __init__(self, trackers: dict[str, Any], emit: Callable[..., Any]):
        self.trackers, self._emit = trackers, emit

    def wrap(self, emit: Callable[..., Any]) -> Callable[..., Any]:
        def emit_and_mirror(type_: str, **fields: Any):
            event = emit(type_, **fields)
            self.feed(event if isinstance(event, dict) else {"type": type_, **fields})
            return event

        return emit_and_mirror

    def feed(self, event: dict) -> None:
        for name, t in list(self.trackers.items()):
            try:
                t.on_event(event)
            except Exception as e:  # noqa: BLE001 - a tracker never stops training
                self._fail(name, e)

    def _fail(self, name: str, e: Exception) -> None:
        print(traceback.format_exc(), file=sys.stderr)
        t = self.trackers.pop(name, None)
        try:
            if t is not None:
                t.close()
        except Exception:  # noqa: BLE001
            pass
        self._emit("warning", kind="tracker", message=f"{name} stopped mirroring this run: {type(e).__name__}: {e} "
                                                      "(training goes on; events.jsonl has everything)")

    def close(self) -> None:
        for name, t in list(self.trackers.items()):
            try:
                t.close()
            except Exception as e:  # noqa: BLE001
                print(f"{name}: close failed: {e}", file=sys.stderr)
        self.trackers.clear()


def open_mirror(cfg, run_dir: Path, emit: Callable[..., Any]) -> Mirror | None:
    """The trackers of train.report_to, opened; None when there are none."""
    names = selected(cfg)
    if not names:
        return None
    mirror = Mirror({}, emit)
    for name in names:
        try:
            mirror.trackers[name] = _open(name, cfg, Path(run_dir))
        except Exception as e:  # noqa: BLE001 - the run goes on without this tracker
            print(traceback.format_exc(), file=sys.stderr)
            emit("warning", kind="tracker", message=f"{name} could not start: {type(e).__name__}: {e}; "
                                                    "the run goes on without it")
    for name, t in mirror.trackers.items():
        emit("log", message=f"mirroring metrics to {name}: {t.where}")
    return mirror


def scalars(event: dict) -> tuple[int | None, dict[str, float]]:
    """(step, {tag: value}) of the numbers an event carries that trackers chart."""
    typ = event.get("type")
    out: dict[str, float] = {}

    def put(tag: str, v: Any) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[tag] = float(v)

    if typ == "metric":
        for k in ("loss", "lr", "grad_norm", "tokens_per_s"):
            put(f"train/{k}", event.get(k))
        for k, v in event.items():  # objective-specific numbers (rewards, margins) ride along
            if k.startswith(("reward", "margin", "logps")):
                put(f"train/{k}", v)
    elif typ == "eval":
        put("val/loss", event.get("val_loss"))
        put("val/perplexity", event.get("perplexity"))
    elif typ == "eval_result":
        for name, entry in (event.get("sets") or {}).items():
            for side in ("base", "prompted", "tuned"):
                for k, v in (entry.get(side) or {}).items():
                    if k != "tokens":
                        put(f"eval/{name}/{k}/{side}", v)
        j = event.get("judge") or {}
        put("eval/judge/win_rate", j.get("win_rate"))
    return event.get("step"), out


class Tracker:
    """Shared step bookkeeping: eval results at the end of a run land on the last step."""

    where = ""

    def __init__(self) -> None:
        self.step = 0

    def on_event(self, event: dict) -> None:
        step, values = scalars(event)
        if isinstance(step, int):
            self.step = max(self.step, step)
        if values:
            self.log(values, step if isinstance(step, int) else self.step)
        if event.get("type") == "warning" and event.get("kind") in ("regression", "nan", "spike", "overfit"):
            self.note(f"warning/{event.get('kind')}", str(event.get("message", "")), self.step)
        if event.get("type") == "done":
            self.note("done", f"status: {event.get('status')}", self.step)

    def log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def note(self, tag: str, text: str, step: int) -> None:
        pass

    def close(self) -> None:
        pass
