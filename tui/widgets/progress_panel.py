"""ProgressPanel: step of total, epoch, phase, trained tokens/s, ETA and status."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tui.widgets.gauge import bar

STATUS_STYLE = {"running": "bold green", "completed": "bold cyan", "stopped": "bold yellow",
                "failed": "bold red", "crashed": "bold red", "waiting": "dim"}


def fmt_duration(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "--"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class ProgressPanel(Widget):
    DEFAULT_CSS = """
    ProgressPanel { height: 2; }
    """

    def __init__(self, ascii_mode: bool = False, **kw):
        super().__init__(**kw)
        self.ascii_mode = ascii_mode
        self.values: dict = {"status": "waiting"}

    def update_values(self, **values) -> None:
        if values != self.values:
            self.values = values
            self.refresh()

    def render(self) -> Text:
        v = self.values
        step, total = v.get("step", 0), v.get("total_steps", 0)
        status = v.get("status", "waiting")
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {status.upper()} ", STATUS_STYLE.get(status, "") + " reverse")
        t.append(f"  step {step:,}" + (f"/{total:,}" if total else ""), "bold")
        frac = step / total if total else None
        width = max(self.content_size.width - len(t.plain) - 8, 4)
        t.append("  ")
        t.append(bar(frac, min(width, 40), self.ascii_mode), "green")
        if frac is not None:
            t.append(f" {100 * frac:.0f}%")
        t.append("\n")
        parts = []
        if v.get("epoch") is not None:
            parts.append(("epoch ", f"{v['epoch']:.2f}"))
        parts.append(("phase ", (v.get("phase") or "-").replace("_", " ")))
        tps = v.get("tokens_per_s")
        parts.append(("tok/s ", f"{tps:,.0f}" if tps is not None else "--"))
        parts.append(("ETA ", fmt_duration(v.get("eta_s"))))
        if v.get("loss") is not None:
            parts.append(("loss ", f"{v['loss']:.4g}"))
        if v.get("best") is not None:
            bstep, bval = v["best"]
            parts.append(("best val ", f"{bval:.4g} @{bstep}"))
        for i, (k, val) in enumerate(parts):
            t.append(" " if i == 0 else "  ")
            t.append(k, "dim")
            t.append(val)
        return t
