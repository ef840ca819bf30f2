"""The memory estimate as a stacked bar (weights, LoRA/trainable, activations, logits,
CUDA context) against the GPU's memory, with a headroom mark, a legend, a clear
"will not fit" verdict, and the measured peak when there is one."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.memory import fmt_params
from tui.services.config_estimate import GB, Measured, MemoryView

COLORS = {"weights": "#5fafd7", "trainable": "#af87d7", "activations": "#ffaf5f",
          "logits": "#87d787", "overhead": "#8a8a8a"}


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GB:.2f} GiB" if n < 10 * GB else f"{n / GB:.1f} GiB"


class MemoryBar(Static):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.view: MemoryView | None = None
        self.measured: Measured | None = None
        self.measuring = False

    def show(self, view: MemoryView | None = None, measured: Measured | None | bool = False) -> None:
        if view is not None:
            self.view = view
        if measured is not False:
            self.measured = measured  # type: ignore[assignment]
        self.refresh(layout=True)  # the height follows the text

    def on_resize(self) -> None:
        self.refresh()

    @property
    def verdict(self) -> str:
        """'fits', 'will not fit', 'error' or 'pending': what the bar says, for tests and the status."""
        v = self.view
        if v is None:
            return "pending"
        if v.error:
            return "error"
        return "fits" if v.fits else "will not fit"

    def _one_line(self, v) -> Text:
        """At 80x24 the estimate is one line; ctrl+e opens the whole panel."""
        t = Text(no_wrap=True, overflow="ellipsis")
        if v.fits:
            t.append("memory fits ", "bold green")
            t.append(f"{gib(v.total)} of {gib(v.gpu_total) if v.gpu_total else '?'}")
        else:
            t.append("WILL NOT FIT ", "bold white on red")
            t.append(f" needs {gib(v.total)}, limit {gib(v.limit)}", "bold red")
        t.append("  ctrl+e: details", "dim")
        return t

    def render(self) -> Text:
        v = self.view
        t = Text()
        if v is None:
            return Text("memory: estimating ...", style="dim")
        if v.error:
            t.append("memory estimate unavailable\n", style="bold")
            t.append(v.error, style="yellow")
            return t
        compact = self.app.has_class("compact")
        if compact and not (self.parent is not None and self.parent.has_class("-open")):
            return self._one_line(v)
        width = max(10, self.size.width - 2)
        scale = max(v.gpu_total, v.total)
        mark = min(width - 1, int(v.limit / scale * width))
        cells: list[tuple[str, str]] = []
        for key, _, nbytes in v.segments:
            n = round(nbytes / scale * width)
            cells += [("█", COLORS[key])] * n
        cells = cells[:width]
        cells += [("░", "#4e4e4e")] * (width - len(cells))
        if v.gpu_total:
            ch, style = cells[mark]
            cells[mark] = ("┃", "bold red" if not v.fits else "bold")
        for ch, style in cells:
            t.append(ch, style=style)
        t.append("\n")
        gpu = f"{v.gpu_total / GB:.0f} GiB {'GPU' if v.gpu_detected else 'target'}"
        if v.fits:
            t.append("fits ", style="bold green")
            t.append(f"{gib(v.total)} of {gpu} (limit {v.headroom:.0%} = {gib(v.limit)})")
        else:
            t.append("WILL NOT FIT ", style="bold white on red")
            t.append(f" needs {gib(v.total)}, limit {gib(v.limit)} on {gpu}", style="bold red")
        t.append("\n")
        if not compact:
            for key, label, nbytes in v.segments:
                t.append("■ ", style=COLORS[key])
                t.append(f"{label:<20}{gib(nbytes):>11}\n")
            t.append(f"{fmt_params(v.n_params)} params, {fmt_params(v.trainable)} trainable\n", style="dim")
            if v.model_note:
                t.append(v.model_note + "\n", style="dim")
        m = self.measured
        if self.measuring:
            t.append("measuring a few real steps (F5) ...", style="italic")
        elif m is not None:
            if m.error:
                t.append("measured: ", style="bold")
                t.append(m.error, style="yellow")
            elif m.oom:
                t.append("measured: out of memory on the GPU", style="bold red")
            else:
                t.append("measured peak ", style="bold")
                t.append(f"{gib(m.peak_allocated)} (estimate {gib(v.total)})")
        t.rstrip()
        return t
