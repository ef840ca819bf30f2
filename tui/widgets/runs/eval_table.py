"""Base vs fine-tuned scores side by side with coloured deltas, and the sample generations."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable, Static

from engine.evaluate.evaluate import improved

LABELS = (("loss", "loss"), ("perplexity", "perplexity"), ("exact_match", "exact match"),
          ("json_valid", "valid JSON"), ("field_accuracy", "field accuracy"), ("rouge_l", "ROUGE-L"))
CELL = 60   # characters of a generation shown in the samples table


def _num(v) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.4f}"


def delta_text(key: str, d) -> Text:
    if not isinstance(d, (int, float)):
        return Text("-", "dim")
    if d == 0:
        return Text(f"{d:+.4f}", "dim")
    return Text(f"{d:+.4f}", "bold green" if improved(key, d) else "bold red")


def scores_table(res: dict) -> Table:
    """metric | base | fine-tuned | delta for every score the evaluation has."""
    t = Table(box=None, header_style="bold", padding=(0, 1), expand=False)
    for col in ("metric", "base", "fine-tuned", "delta"):
        t.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
    base, tuned, delta = res.get("base") or {}, res.get("tuned") or {}, res.get("delta") or {}
    for key, label in LABELS:
        if key in base or key in tuned:
            t.add_row(label, _num(base.get(key)), _num(tuned.get(key)), delta_text(key, delta.get(key)))
    return t


def headline(res: dict) -> Text:
    t = Text()
    t.append(f"{res.get('split', '?')} split", "bold")
    t.append(f", {res.get('examples', '?')} examples, {res.get('generated', 0)} generated")
    if res.get("time_s") is not None:
        t.append(f", {res['time_s']:.0f} s", "dim")
    if res.get("note"):
        t.append(f"\nnote: {res['note']}", "yellow")
    return t


class EvalScores(Static):
    """The results table, or a line saying why there is none (yet)."""

    DEFAULT_CSS = "EvalScores { height: auto; padding: 0 1; }"
    shown = None  # the last renderable, for plain-text readers

    def show(self, res: dict | None, state: str = "") -> None:
        from rich.console import Group

        parts: list = []
        if state:
            parts.append(Text(state, "bold red" if state.startswith("the last") else "bold yellow"))
        if res:
            parts += [headline(res), scores_table(res)]
        elif not state:
            parts.append(Text("Not evaluated yet: press e to run `ftwb eval` on this run.", "dim"))
        self.shown = Group(*parts)
        self.update(self.shown)


def _cell(text, n: int = CELL) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


class SamplesTable(DataTable):
    """prompt | reference | base | fine-tuned, one row per generated sample."""

    DEFAULT_CSS = "SamplesTable { height: 1fr; }"

    COLUMNS = ("#", "prompt", "reference", "base", "fine-tuned")
    samples: list[dict] = []
    _width = 0

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*self.COLUMNS)

    def show(self, samples: list[dict]) -> None:
        from tui.services.run_actions import prompt_text

        self.clear(columns=True)  # column widths follow this run's samples, not the last one's
        self.add_columns(*self.COLUMNS)
        self.samples, self._width = samples, self.size.width or self.app.size.width
        n = max(16, (self._width - 20) // 4 - 3)  # four text columns (and their padding) share the width
        for i, s in enumerate(samples):
            ts, bs = s.get("tuned_scores") or {}, s.get("base_scores") or {}
            mark = lambda sc: "✓ " if sc.get("exact_match") else ""  # noqa: E731 - an exact hit stands out
            self.add_row(str(s.get("index", i)), _cell(prompt_text(s), n), _cell(s.get("reference"), n),
                         Text(mark(bs) + _cell(s.get("base"), n)), Text(mark(ts) + _cell(s.get("tuned"), n)),
                         key=str(i))

    def on_resize(self, event) -> None:
        if self.samples and event.size.width != self._width:
            self.show(self.samples)
