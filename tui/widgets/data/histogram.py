"""Token lengths as horizontal bars, one per length bucket, with max_seq_len marked.
Buckets come from engine.data.token_stats.buckets (counted with numpy), so a million
rows draw as fast as a hundred."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

BAR = 30


def histogram_text(lengths, max_seq_len: int, below: int = 8, above: int = 4, bar: int = BAR) -> Text:
    from engine.data.token_stats import buckets

    t = Text()
    rows = buckets(lengths, max_seq_len, below, above)
    if not rows:
        t.append("no token lengths yet", "dim")
        return t
    peak = max(c for _, _, c in rows) or 1
    for b, (lo, hi, c) in enumerate(rows):
        if b == below:
            t.append(f"{'─' * 6} max_seq_len {max_seq_len} {'─' * 6}\n", "bold red")
        t.append(f"{lo:>6}-{hi:<6} ", "dim")
        full = c * bar / peak
        t.append("█" * int(full) + ("▌" if full - int(full) >= 0.5 else ""), "red" if b >= below else "cyan")
        t.append(f" {c:,}\n", "dim")
    if len(rows) <= below:
        t.append(f"{'─' * 6} max_seq_len {max_seq_len}: no row is longer {'─' * 6}\n", "bold green")
    return t


class Histogram(Static):
    def show(self, lengths, max_seq_len: int) -> None:
        self.update(histogram_text(lengths, max_seq_len))
