"""Turn the event stream into alerts a user must see: NaN or spike, overfitting,
OOM with the engine's hint, a crash with the tail of engine.log, completion.

Plain Python: RunState calls these as events arrive; the UI shows each alert as a
notification and keeps it in the event log.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Alert:
    kind: str       # nan, spike, overfit, oom, error, crash, completed, stopped, failed, warning
    severity: str   # information | warning | error (Textual's notification severities)
    title: str
    message: str


def as_float(v) -> float | None:
    """Numbers in events may be strings ("nan", "inf") or missing."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class SpikeDetector:
    """A loss far above its recent median (3x, and at least 1.0 above) is a spike;
    a non-finite loss is NaN. Each is reported once per burst."""

    def __init__(self, history: int = 50, factor: float = 3.0):
        self.recent: list[float] = []
        self.history = history
        self.factor = factor
        self.nan_reported = False
        self.last_spike_step = -10**9

    def feed(self, step: int, loss: float | None) -> Alert | None:
        if loss is None:
            return None
        if not math.isfinite(loss):
            if self.nan_reported:
                return None
            self.nan_reported = True
            return Alert("nan", "error", "Loss is NaN",
                         f"step {step}: the loss is {loss}; lower the learning rate or check the data")
        alert = None
        if len(self.recent) >= 10:
            med = sorted(self.recent)[len(self.recent) // 2]
            if loss > med * self.factor and loss - med > 1.0 and step - self.last_spike_step > self.history:
                self.last_spike_step = step
                alert = Alert("spike", "warning", "Loss spike",
                              f"step {step}: loss {loss:.4g} vs recent median {med:.4g}")
        self.recent.append(loss)
        if len(self.recent) > self.history:
            del self.recent[0]
        return alert


class OverfitDetector:
    """Validation loss rising for `patience` evals in a row while the train loss (mean
    over each eval interval) falls: reported once until the val loss improves again."""

    def __init__(self, patience: int = 3):
        self.patience = patience
        self.evals: list[tuple[int, float, float | None]] = []  # step, val, mean train loss
        self._train_sum = 0.0
        self._train_n = 0
        self.reported = False

    def feed_train(self, loss: float | None) -> None:
        if loss is not None and math.isfinite(loss):
            self._train_sum += loss
            self._train_n += 1

    def feed_eval(self, step: int, val: float | None) -> Alert | None:
        if val is None or not math.isfinite(val):
            return None
        train = self._train_sum / self._train_n if self._train_n else None
        self._train_sum, self._train_n = 0.0, 0
        self.evals.append((step, val, train))
        tail = self.evals[-(self.patience + 1):]
        if len(tail) <= self.patience:
            return None
        vals = [v for _, v, _ in tail]
        trains = [t for _, _, t in tail]
        val_rising = all(b > a for a, b in zip(vals, vals[1:]))
        train_falling = None not in trains and trains[-1] < trains[0]
        if val_rising and train_falling:
            if self.reported:
                return None
            self.reported = True
            return Alert("overfit", "warning", "Overfitting",
                         f"validation loss rose for {self.patience} evals ({vals[0]:.4g} -> {vals[-1]:.4g}) "
                         f"while train loss fell; the best checkpoint is kept, consider stopping")
        if not val_rising and vals[-1] <= min(v for _, v, _ in self.evals):
            self.reported = False
        return None


class PreferenceDetector:
    """Preference runs: a reward margin that collapses (its recent mean falls below a
    quarter of its best recent mean, after that was clearly positive), or a reward accuracy
    stuck at 0.5 with a margin near 0 (the policy does not separate chosen from rejected).
    Each is reported once until the run recovers."""

    def __init__(self, window: int = 10, stuck_steps: int = 25):
        self.window, self.stuck_steps = window, stuck_steps
        self.margins: list[float] = []
        self.accuracies: list[float] = []
        self.peak: float | None = None
        self.collapse_reported = False
        self.stuck_reported = False

    def feed(self, step: int, margin: float | None, accuracy: float | None) -> Alert | None:
        if margin is None or accuracy is None or not (math.isfinite(margin) and math.isfinite(accuracy)):
            return None
        self.margins.append(margin)
        self.accuracies.append(accuracy)
        alert = None
        if len(self.margins) >= self.window:
            mean = sum(self.margins[-self.window:]) / self.window
            self.peak = mean if self.peak is None else max(self.peak, mean)
            if self.peak > 0.5 and mean < 0.25 * self.peak:
                if not self.collapse_reported:
                    self.collapse_reported = True
                    alert = Alert("margin_collapse", "warning", "Reward margin collapsed",
                                  f"step {step}: the reward margin fell to {mean:.3g} (recent mean) from "
                                  f"{self.peak:.3g}; lower train.learning_rate or raise preference.beta, "
                                  "and check the best checkpoint")
            elif mean >= 0.5 * self.peak:
                self.collapse_reported = False
        n = self.stuck_steps
        if len(self.accuracies) >= n:
            acc = sum(self.accuracies[-n:]) / n
            margin = sum(abs(m) for m in self.margins[-n:]) / n
            if 0.4 <= acc <= 0.6 and margin < 0.05:
                if not self.stuck_reported and alert is None:
                    self.stuck_reported = True
                    alert = Alert("accuracy_stuck", "warning", "Preference accuracy stuck at 0.5",
                                  f"step {step}: reward accuracy {acc:.2f} and margin {margin:.3g} over the last "
                                  f"{n} steps: chosen and rejected are not being separated; raise "
                                  "train.learning_rate, check that the pairs differ (ftwb data check)")
            elif acc > 0.65:
                self.stuck_reported = False
        return alert


def tail_lines(path: Path, n: int = 8) -> list[str]:
    """Last n non-empty lines of a text file (engine.log), read from the end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in data.splitlines() if ln.strip()][-n:]


def crash_alert(log_path: Path) -> Alert:
    lines = tail_lines(log_path)
    body = "\n".join(lines) if lines else f"(no output in {log_path})"
    return Alert("crash", "error", "Engine crashed", f"the engine died without finishing; {log_path.name} ends:\n{body}")
