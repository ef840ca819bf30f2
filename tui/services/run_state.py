"""RunState: everything known about one run, folded from its events.

Fed from a reader thread (in bulk for a replay) and read by the UI on a timer; one
lock guards it. `version` changes on every applied batch so the UI redraws only when
something changed. Log entries and alerts queue in outboxes the UI drains.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tui.services.alerts import Alert, OverfitDetector, PreferenceDetector, SpikeDetector, as_float, crash_alert
from tui.services.series import Series

LOG_KEEP = 5000
SPIKE_GAP = 50
STRATEGY_NAMES = {"single": "", "ddp": "DDP", "fsdp2": "FSDP2"}


@dataclass(frozen=True)
class LogEntry:
    elapsed: float | None  # seconds since the run's first hello
    kind: str              # event type, or the alert kind
    severity: str          # information | warning | error
    text: str


class RunState:
    def __init__(self, run_dir: Path | None = None):
        self.run_dir = Path(run_dir) if run_dir else None
        self.lock = threading.RLock()
        self.version = 0
        self.loss = Series("train")
        self.val_loss = Series("val")
        self.lr = Series("lr")
        self.grad_norm = Series("grad_norm")
        self.tokens_per_s = Series("tokens/s")
        # Preference runs (metric events with reward keys): train and validation series.
        self.reward_margin = Series("margin")
        self.reward_accuracy = Series("accuracy")
        self.val_reward_margin = Series("val margin")
        self.val_reward_accuracy = Series("val accuracy")
        self.preference = False
        self.status = "waiting"  # waiting | running | completed | stopped | failed | crashed
        self.phase = ""
        self.step = 0
        self.total_steps = 0
        self.epoch: float | None = None
        self.tokens_seen = 0
        self.eta_s: float | None = None
        self.eta_ts: float | None = None  # event time the eta was given at
        self.best: tuple[int, float] | None = None  # (step, val_loss)
        self.checkpoints: list[tuple[int, str, bool]] = []
        self.memory: list[dict[str, Any]] = []
        self.devices: list[Any] = []
        # Several processes (torchrun): from hello, memory's `ranks` and metric's per-rank tokens/s.
        self.world_size = 1
        self.strategy = "single"   # single | ddp | fsdp2
        self.ranks: list[dict[str, Any]] = []          # hello: {rank, host, device}
        self.rank_memory: list[dict[str, Any]] = []    # memory: {rank, host, devices, process_rss}
        self.ranks_tokens_per_s: list[float] = []
        self.pid: int | None = None
        self.resumed_from: int | None = None
        self.data_info: dict[str, Any] = {}
        self.base_samples: list[dict[str, Any]] = []   # the base model's answers (samples event, base true)
        self.samples: list[dict[str, Any]] = []        # the latest answers of the model in training
        self.samples_step: int | None = None
        self.summary: dict[str, Any] = {}
        self.events_seen = 0
        self.t0: float | None = None
        self.last_ts: float | None = None
        self._spikes = SpikeDetector()
        self._overfit = OverfitDetector()
        self._preference = PreferenceDetector()
        self._log: list[LogEntry] = []
        self._new_log: list[LogEntry] = []
        self._new_alerts: list[Alert] = []
        self._alerted_at: dict[str, int] = {}

    # ------------------------------------------------------------ feeding
    def apply_many(self, events: Iterable[dict[str, Any]]) -> int:
        n = 0
        with self.lock:
            for e in events:
                self._apply(e)
                n += 1
            if n:
                self.version += 1
        return n

    def apply(self, event: dict[str, Any]) -> None:
        self.apply_many((event,))

    def mark_crashed(self) -> None:
        """The engine is gone and never said done."""
        with self.lock:
            if self.status in ("completed", "stopped", "failed", "crashed"):
                return
            self.status = "crashed"
            log = (self.run_dir / "engine.log") if self.run_dir else Path("engine.log")
            self._alert(crash_alert(log))
            self.version += 1

    def _elapsed(self, e: dict[str, Any]) -> float | None:
        ts = as_float(e.get("ts"))
        if ts is None:
            return None
        if self.t0 is None:
            self.t0 = ts
        self.last_ts = ts
        return ts - self.t0

    def _log_entry(self, elapsed, kind: str, severity: str, text: str) -> None:
        entry = LogEntry(elapsed, kind, severity, text)
        self._log.append(entry)
        self._new_log.append(entry)
        if len(self._log) > LOG_KEEP:
            del self._log[: len(self._log) - LOG_KEEP]
        if len(self._new_log) > LOG_KEEP:
            del self._new_log[: len(self._new_log) - LOG_KEEP]

    def _alert(self, alert: Alert, elapsed: float | None = None) -> None:
        """Log every alert; notify unless the same kind was just notified (NaN once per
        run session, spikes at most once per SPIKE_GAP steps)."""
        last = self._alerted_at.get(alert.kind)
        quiet = last is not None and (alert.kind == "nan" or
                                      (alert.kind == "spike" and self.step - last < SPIKE_GAP))
        if not quiet:
            self._alerted_at[alert.kind] = self.step
            self._new_alerts.append(alert)
        self._log_entry(elapsed, alert.kind, alert.severity, f"{alert.title}: {alert.message}")

    def _apply(self, e: dict[str, Any]) -> None:
        self.events_seen += 1
        t = e.get("type")
        el = self._elapsed(e)
        if t == "metric":
            step = int(as_float(e.get("step")) or 0)
            loss = as_float(e.get("loss"))
            self.step = max(self.step, step)
            if loss is not None:
                self.loss.append(step, loss)
                self._overfit.feed_train(loss)
                a = self._spikes.feed(step, loss)
                if a:
                    self._alert(a, el)
            for key, series in (("lr", self.lr), ("grad_norm", self.grad_norm), ("tokens_per_s", self.tokens_per_s)):
                v = as_float(e.get(key))
                if v is not None:
                    series.append(step, v)
            per_rank = e.get("ranks_tokens_per_s")
            if isinstance(per_rank, list):
                self.ranks_tokens_per_s = [v if v is not None else float("nan") for v in map(as_float, per_rank)]
            if e.get("epoch") is not None:
                self.epoch = as_float(e.get("epoch"))
            margin, acc = as_float(e.get("reward_margin")), as_float(e.get("reward_accuracy"))
            if margin is not None:
                self.preference = True
                self.reward_margin.append(step, margin)
                if acc is not None:
                    self.reward_accuracy.append(step, acc)
                a = self._preference.feed(step, margin, acc)
                if a:
                    self._alert(a, el)
        elif t == "progress":
            self.step = int(as_float(e.get("step")) or self.step)
            self.total_steps = int(as_float(e.get("total_steps")) or self.total_steps)
            self.epoch = as_float(e.get("epoch")) if e.get("epoch") is not None else self.epoch
            self.tokens_seen = int(as_float(e.get("tokens_seen")) or self.tokens_seen)
            self.eta_s = as_float(e.get("eta_s"))
            self.eta_ts = as_float(e.get("ts"))
        elif t == "eval":
            step = int(as_float(e.get("step")) or 0)
            val = as_float(e.get("val_loss"))
            if val is not None:
                self.val_loss.append(step, val)
                if math.isfinite(val) and (self.best is None or val < self.best[1]):
                    self.best = (step, val)
                ppl = as_float(e.get("perplexity"))
                extra = f", perplexity {ppl:.4g}" if ppl is not None else ""
                self._log_entry(el, "eval", "information", f"eval at step {step}: val loss {val:.4g}{extra}")
                a = self._overfit.feed_eval(step, val)
                if a:
                    self._alert(a, el)
            for key, series in (("reward_margin", self.val_reward_margin),
                                ("reward_accuracy", self.val_reward_accuracy)):
                v = as_float(e.get(key))
                if v is not None:
                    series.append(step, v)
        elif t == "phase":
            self.phase = str(e.get("phase", ""))
            self._log_entry(el, "phase", "information", f"phase: {self.phase.replace('_', ' ')}")
        elif t == "hello":
            self.status = "running"
            self.pid = int(as_float(e.get("pid")) or 0) or None
            self.devices = list(e.get("devices") or [])
            self.world_size = max(1, int(as_float(e.get("world_size")) or 1))
            self.strategy = str(e.get("strategy") or ("single" if self.world_size == 1 else "ddp"))
            self.ranks = [r for r in (e.get("ranks") or []) if isinstance(r, dict)]
            self.rank_memory, self.ranks_tokens_per_s = [], []  # a resume may change the world size
            self.resumed_from = int(as_float(e.get("resumed_from_step")) or 0) or None
            self._alerted_at.clear()
            self.summary = {}
            what = f"resumed from step {self.resumed_from}" if self.resumed_from else "started"
            devs = ", ".join(str(d.get("name", d) if isinstance(d, dict) else d) for d in self.devices) or "?"
            if self.world_size > 1:
                devs = f"{self.processes_label}: " + (", ".join(
                    f"rank {r.get('rank', '?')} {r.get('host', '?')} {r.get('device', '?')}" for r in self.ranks) or devs)
            self._log_entry(el, "hello", "information", f"engine {what} (pid {self.pid}) on {devs}")
        elif t == "memory":
            self.memory = [d for d in (e.get("devices") or []) if isinstance(d, dict)]
            ranks = e.get("ranks")
            if isinstance(ranks, list):
                self.rank_memory = [r for r in ranks if isinstance(r, dict)]
        elif t == "checkpoint":
            step = int(as_float(e.get("step")) or 0)
            best = bool(e.get("is_best"))
            self.checkpoints.append((step, str(e.get("path", "")), best))
            self._log_entry(el, "checkpoint", "information",
                            f"checkpoint at step {step}" + (" (best so far)" if best else ""))
        elif t == "data":
            self.data_info = {k: v for k, v in e.items() if k not in ("v", "type", "ts")}
            self._log_entry(el, "data", "information",
                            f"data: {e.get('rows', '?')} rows ({e.get('format', '?')}), "
                            f"{e.get('truncated', 0)} truncated, {e.get('dropped', 0)} dropped")
        elif t == "warning":
            kind = str(e.get("kind", "warning"))
            msg = str(e.get("message", ""))
            sev = "error" if kind == "nan" else "warning"
            title = {"nan": "Loss is NaN", "spike": "Loss spike", "overfit": "Overfitting",
                     "regression": "Regression on an eval set",
                     "world_size_changed": "Resumed on another number of processes"}.get(kind, f"Warning ({kind})")
            if kind == "nan":
                self._spikes.nan_reported = True
            if kind == "overfit":
                self._overfit.reported = True
            self._alert(Alert(kind, sev, title, msg), el)
        elif t == "error":
            kind = str(e.get("kind", "error"))
            msg = str(e.get("message", ""))
            hint = str(e.get("hint") or "")
            title = {"oom": "Out of GPU memory", "data": "Data error", "config": "Config error",
                     "crash": "Engine error"}.get(kind, "Error")
            if self.world_size > 1 and e.get("rank") is not None:
                title += f" on rank {e.get('rank')}"
            text = msg + (f"\nHint: {hint}" if hint else "")
            tb = e.get("traceback_tail")
            self._alert(Alert(kind if kind == "oom" else "error", "error", title, text), el)
            if tb:
                self._log_entry(el, "traceback", "error", str(tb).rstrip())
        elif t == "done":
            status = str(e.get("status", "completed"))
            self.status = status if status in ("completed", "stopped", "failed") else "completed"
            self.summary = dict(e.get("summary") or {})
            self.eta_s = 0.0 if self.status == "completed" else None
            self.phase = ""  # no phase is current once the engine is done
            best = f"; best val loss {self.best[1]:.4g} at step {self.best[0]}" if self.best else ""
            if self.status == "completed":
                self._alert(Alert("completed", "information", "Run completed",
                                  f"{self.step} steps{best}"), el)
            elif self.status == "stopped":
                self._alert(Alert("stopped", "information", "Run stopped",
                                  f"stopped at step {self.step}{best}; press u to resume it (here or on the Runs screen)"), el)
            else:
                self._alert(Alert("failed", "error", "Run failed", f"failed at step {self.step}{best}"), el)
        elif t == "log":
            self._log_entry(el, "log", "information", str(e.get("message", "")))
        elif t == "samples":
            got = [x for x in (e.get("samples") or []) if isinstance(x, dict)]
            if e.get("base"):
                self.base_samples = got
            else:
                self.samples, self.samples_step = got, int(as_float(e.get("step")) or 0)

    # ------------------------------------------------------------ reading
    def drain(self) -> tuple[list[LogEntry], list[Alert]]:
        """New log entries and alerts since the last drain."""
        with self.lock:
            log, alerts = self._new_log, self._new_alerts
            self._new_log, self._new_alerts = [], []
            return log, alerts

    def log_history(self) -> list[LogEntry]:
        with self.lock:
            return list(self._log)

    @property
    def processes_label(self) -> str:
        """`2 processes · DDP` for a run on several processes, "" for one."""
        if self.world_size <= 1:
            return ""
        name = STRATEGY_NAMES.get(self.strategy, self.strategy)
        return f"{self.world_size} processes" + (f" · {name}" if name else "")

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "stopped", "failed", "crashed")
