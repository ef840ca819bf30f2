"""Dataset statistics: format and why, rows, fields, turns and roles, label balance,
token lengths against max_seq_len over every row (filling in while tokenising), trained
tokens, truncation, unusable rows and packing efficiency."""
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
    ts = st.tokens
    running = not st.complete
    if running:
        done = ts.rows if ts is not None else 0
        total = st.token_total or 0
        t.append(f"tokenising {done:,} / {total:,} rows", "bold yellow")
        t.append("  escape stops\n", "dim")
    if not st.sampled:
        if not running:
            t.append("token lengths need a tokenizer: press m to load the model's, then s\n" if ts is None
                     else f"no row could be tokenised ({st.unusable:,} unusable)\n", "dim")
        return t
    seen = ts.usable + ts.unusable_rows if ts is not None else st.sampled
    if st.sample:
        scope = f"a sample of {seen:,} rows"
    elif running:
        scope = f"{seen:,} of {st.token_total or seen:,} rows so far"
    else:
        scope = f"all {seen:,} rows"
    p = ts.percentiles() if ts is not None else {}
    t.append(f"token lengths over {scope}: ", "bold")
    if p:
        t.append(f"min {p['min']:,}, median {p['median']:,}, p95 {p['p95']:,}, max {p['max']:,}\n")
    style = "bold red" if st.overlong else "green"
    t.append(f"{st.overlong:,} rows over max_seq_len {st.max_seq_len}", style)
    t.append(" (truncated with overlong: truncate, dropped with overlong: drop)\n", "dim")
    if st.overlong:
        t.append(f"{st.cut_assistant:,} of those truncations cut trained assistant tokens\n",
                 "bold red" if st.cut_assistant else "")
    if ts is not None:
        t.append(f"{ts.trained_tokens:,} trained tokens of {ts.tokens:,} "
                 f"({ts.trained_tokens_kept:,} within max_seq_len)\n")
    if st.unusable:
        word = "sampled rows" if st.sample else "rows"
        t.append(f"{st.unusable:,} {word} cannot be formatted (see the checks)\n", "yellow")
        if ts is not None:
            for why, n in sorted(ts.unusable.items(), key=lambda kv: -kv[1])[:3]:
                t.append(f"  {n:,}  {why}\n", "yellow")
    if st.packing_efficiency is not None:
        t.append(f"estimated packing efficiency {st.packing_efficiency * 100:.1f}%\n")
    if ts is not None and ts.cache == "hit" and st.complete:
        t.append("from the cache (same file version, tokenizer and settings)\n", "dim")
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
        hist = self.query_one(Histogram)
        hist.show(st.lengths, st.max_seq_len) if st.sampled else hist.update("")

    def show_message(self, msg: Text | str) -> None:
        self.query_one("#stats-text", Static).update(msg)
