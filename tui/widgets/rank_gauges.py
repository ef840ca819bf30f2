"""The lines of a run on several processes: tokens/s per rank beside the global number,
then one memory gauge per GPU of every rank (`rank r · host · cuda:i`), or one RSS line
per rank on CPU. Folds to fit the pane: the label over its bar when narrow, short labels
when short of lines too, two gauges a line when there are more GPUs than lines, and a closing `+N more` line naming the fullest of the
ones left out. Plain functions of the `memory` event's `ranks`, for the GPU pane.
"""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from tui.widgets.gauge import bar, human_bytes

GIB = 1 << 30
MIN_BAR = 6


@dataclass
class Gauge:
    rank: int
    host: str
    device: str          # "cuda:i" or "cpu"
    used: int | None     # reserved (else allocated) bytes on a GPU; RSS on CPU
    total: int | None    # the GPU's memory; RAM total for CPU, when known

    @property
    def frac(self) -> float | None:
        return self.used / self.total if self.used is not None and self.total else None

    def label(self, form: str) -> str:
        if form == "full":
            return f"rank {self.rank} · {self.host} · {self.device}"
        if form == "short":
            return f"r{self.rank} {self.device}"
        return f"r{self.rank}" + (":" + self.device.split(":", 1)[1] if ":" in self.device else "")

    def amount(self, form: str) -> str:
        if self.device == "cpu":
            return ("RSS " if form != "tiny" else "") + human_bytes(self.used)
        if form == "tiny":
            return f"{self.frac:.0%}" if self.frac is not None else "N/A"
        if self.used is None:
            return "N/A"
        total = f"/{self.total / GIB:.1f}" if self.total else ""
        return f"{self.used / GIB:.1f}{total} GiB"


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def gauges(rank_memory: list[dict], ram_total: int | None = None) -> list[Gauge]:
    """One gauge per GPU of every rank; one RSS gauge for a rank without GPUs."""
    out: list[Gauge] = []
    for r in rank_memory:
        rank, host = _int(r.get("rank")), str(r.get("host") or "?")
        rank = rank if rank is not None else len(out)
        devs = [d for d in (r.get("devices") or []) if isinstance(d, dict)]
        if not devs:
            out.append(Gauge(rank, host, "cpu", _int(r.get("process_rss")), ram_total))
        for d in devs:
            used = _int(d.get("reserved"))
            used = used if used is not None else _int(d.get("allocated"))
            out.append(Gauge(rank, host, f"cuda:{d.get('index', '?')}", used, _int(d.get("total"))))
    return out


def throughput_line(per_rank: list[float], total: float | None, width: int) -> Text:
    """`tok/s 3,012 = r0 1,506 + r1 1,506`, or the spread and the slowest rank when the
    ranks do not fit the width (the slowest sets the pace of every step)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("tok/s ", "dim")
    t.append(f"{total:,.0f}" if total is not None else "--", "bold")
    ok = [(i, v) for i, v in enumerate(per_rank) if v == v]
    if not ok:
        return t
    listed = " = " + " + ".join(f"r{i} {v:,.0f}" for i, v in ok)
    if len(t.plain) + len(listed) <= width:
        t.append(listed)
        return t
    slow = min(ok, key=lambda x: x[1])
    hi = max(v for _, v in ok)
    for tail in (f" · per rank {slow[1]:,.0f}-{hi:,.0f}, slowest r{slow[0]}",
                 f" · {slow[1]:,.0f}-{hi:,.0f}/rank, slowest r{slow[0]}",
                 f" · slowest r{slow[0]} {slow[1]:,.0f}"):
        if len(t.plain) + len(tail) <= width:
            break
    t.append(tail)
    return t


def _gauge_text(g: Gauge, form: str, width: int, ascii_mode: bool) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(g.label(form) + " ", "bold")
    num = " " + g.amount(form)
    n = max(width - len(t.plain) - len(num), 0)
    if g.total and n >= 2:
        t.append(bar(g.frac, n, ascii_mode), "green")
    elif n:
        t.append(" " * n)
    t.append(num)
    return t


def _stacked(g: Gauge, width: int, ascii_mode: bool) -> list[Text]:
    """A narrow pane with lines to spare: the full label and the amount, the bar under them."""
    head = Text(g.label("full"), style="bold", no_wrap=True, overflow="ellipsis")
    num = " " + g.amount("full")
    body = Text(" ", no_wrap=True, overflow="ellipsis")
    body.append(bar(g.frac, max(width - 1 - len(num), 2), ascii_mode) if g.total else "", "green")
    body.append(num)
    return [head, body]


def _fits(gs: list[Gauge], form: str, width: int) -> bool:
    return all(len(g.label(form)) + 1 + (MIN_BAR if g.total else 0) + 1 + len(g.amount(form)) <= width for g in gs)


def _more_line(left: list[Gauge]) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"+{len(left)} more", "bold")
    known = [g for g in left if g.frac is not None]
    if known:
        top = max(known, key=lambda g: g.frac)
        t.append(f" · fullest {top.label('tiny')} {top.frac:.0%}", "dim")
    return t


def gauge_lines(gs: list[Gauge], width: int, height: int | None, ascii_mode: bool = False) -> list[Text]:
    """The gauges in at most `height` lines (None: as many as they need) of `width` cells."""
    if not gs or (height is not None and height <= 0):
        return []
    if _fits(gs, "full", width) and (height is None or len(gs) <= height):
        return [_gauge_text(g, "full", width, ascii_mode) for g in gs]
    if height is None or 2 * len(gs) <= height:
        return [line for g in gs for line in _stacked(g, width, ascii_mode)]
    if len(gs) <= height:
        form = "short" if _fits(gs, "short", width) else "tiny"
        return [_gauge_text(g, form, width, ascii_mode) for g in gs]
    # More gauges than lines: two a line, tiny labels.
    half = (width - 1) // 2
    pairs = [gs[i:i + 2] for i in range(0, len(gs), 2)]
    shown = pairs if len(pairs) <= height else pairs[:height - 1]
    out = []
    for pair in shown:
        t = Text(no_wrap=True, overflow="ellipsis")
        for j, g in enumerate(pair):
            if j:
                t.append(" ")
            t.append_text(_gauge_text(g, "tiny", half, ascii_mode))
        out.append(t)
    if len(shown) < len(pairs):
        out.append(_more_line([g for p in pairs[len(shown):] for g in p]))
    return out
