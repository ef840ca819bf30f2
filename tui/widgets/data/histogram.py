"""Token lengths as horizontal bars, one per length bucket, with max_seq_len marked."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

BAR = 30


def histogram_text(lengths: list[int], max_seq_len: int, below: int = 8, above: int = 4, bar: int = BAR) -> Text:
    t = Text()
    if not lengths:
        t.append("no token lengths yet", "dim")
        return t
    # Buckets that end exactly at max_seq_len, so the marker sits on a boundary.
    width = max(1, -(-max_seq_len // below))
    over_n = min(above, max(0, -(-(max(lengths) - max_seq_len) // width)))
    counts = [0] * (below + over_n)
    for n in lengths:
        counts[min(len(counts) - 1, n // width)] += 1
    peak = max(counts) or 1
    for b, c in enumerate(counts):
        lo = b * width
        hi = (b + 1) * width - 1 if b < len(counts) - 1 or b < below else max(lengths)
        if b == below:
            t.append(f"{'─' * 6} max_seq_len {max_seq_len} {'─' * 6}\n", "bold red")
        t.append(f"{lo:>6}-{hi:<6} ", "dim")
        full = c * bar / peak
        t.append("█" * int(full) + ("▌" if full - int(full) >= 0.5 else ""), "red" if b >= below else "cyan")
        t.append(f" {c}\n", "dim")
    if not over_n:
        t.append(f"{'─' * 6} max_seq_len {max_seq_len}: no row is longer {'─' * 6}\n", "bold green")
    return t


class Histogram(Static):
    def show(self, lengths: list[int], max_seq_len: int) -> None:
        self.update(histogram_text(lengths, max_seq_len))
