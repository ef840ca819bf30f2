"""Dataset statistics: format and why, rows, fields, turns and roles, label balance,
token lengths against max_seq_len, truncation and packing efficiency."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.widgets.data.histogram import Histogram


def stats_text(st) -> Text:
    t = Text()
    t.append("format ", "dim")
    t.append(st.fmt, "bold")
    t.append(f"  ({st.reason})\n", "dim")
    t.append(f"{st.rows:,} rows, {st.readable:,} readable and kept\n")
    t.append("fields ", "dim")
    t.append(", ".join(f"{k} {v:,}" for k, v in list(st.fields.items())[:10]) + "\n")
    if st.turns:
        t.append("turns  ", "dim")
        t.append(", ".join(f"{k}: {v:,}" for k, v in list(st.turns.items())[:10]) + "\n")
        t.append("roles  ", "dim")
        t.append(", ".join(f"{k} {v:,}" for k, v in st.roles.items()) + "\n")
    if st.label_field:
        t.append(f"balance of {st.label_field}  ", "dim")
        total = sum(st.labels.values()) or 1
        t.append(", ".join(f"{k} {v * 100 / total:.0f}%" for k, v in st.labels.items()) + "\n")
    t.append("\n")
    if not st.sampled:
        t.append("token lengths need a tokenizer: press m to load the model's, then s\n", "dim")
        return t
    sample = f" (a sample of {st.sampled:,})" if st.sampled < st.readable else ""
    lens = sorted(st.lengths)
    t.append(f"token lengths{sample}: ", "bold")
    t.append(f"min {lens[0]}, median {lens[len(lens) // 2]}, p95 {lens[int(len(lens) * 0.95)]}, max {lens[-1]}\n")
    style = "bold red" if st.overlong else "green"
    t.append(f"{st.overlong:,} rows over max_seq_len {st.max_seq_len}", style)
    t.append(" (truncated with overlong: truncate, dropped with overlong: drop)\n", "dim")
    if st.overlong:
        t.append(f"{st.cut_assistant:,} of those truncations cut trained assistant tokens\n",
                 "bold red" if st.cut_assistant else "")
    if st.unusable:
        t.append(f"{st.unusable:,} sampled rows cannot be formatted (see the checks)\n", "yellow")
    if st.packing_efficiency is not None:
        t.append(f"estimated packing efficiency {st.packing_efficiency * 100:.1f}%\n")
    return t


class StatsPanel(VerticalScroll):
    DEFAULT_CSS = """
    StatsPanel { height: 1fr; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text("press s to compute the statistics", "dim"), id="stats-text")
        yield Histogram(id="stats-histogram")

    def show(self, st) -> None:
        self.query_one("#stats-text", Static).update(stats_text(st))
        self.query_one(Histogram).show(st.lengths, st.max_seq_len) if st.sampled else \
            self.query_one(Histogram).update("")

    def show_message(self, msg: Text | str) -> None:
        self.query_one("#stats-text", Static).update(msg)
