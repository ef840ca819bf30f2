"""One run's lineage: dataset version -> run -> evaluations -> exports."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.widgets import Static


ARROW = "→ "


def _f(v, fmt: str = ".4g") -> str:
    return "-" if not isinstance(v, (int, float)) else format(v, fmt)


def _op(o: dict) -> str:
    n = len(o.get("rows") or o.get("lines") or ([o["row"]] if "row" in o else []))
    return f"{o.get('op', '?')} {n}"


def lineage_text(lin) -> Text:
    """Four stages, one line each (a second, dim line of detail where it helps)."""
    t = Text(no_wrap=False, overflow="ellipsis")
    d = lin.data
    t.append("data  ", "bold cyan")
    if d:
        src = Path(str(d.get("source", "?"))).name
        if d.get("version"):
            # A cleaned version: the file it came from, then the version and its operations.
            # The version's manifest names its source; without one, the version file itself.
            t.append(f"{Path(str(lin.origin)).name if lin.origin else src} ", "bold")
            t.append(f"{ARROW}{d['version']} ")
            ops = d.get("operations") or []
            if ops:
                t.append("(" + ", ".join(_op(o) for o in ops[:4]) + (", …" if len(ops) > 4 else "") + ") ", "dim")
        else:
            t.append(f"{src} ", "bold")
            t.append("original ")
        t.append(f"#{str(d.get('content_hash', '?'))[:10]} ", "dim")
        rows = d.get("rows_usable", d.get("rows_total"))
        splits = d.get("splits") or {}
        t.append(f"{rows} rows" + (" (" + "/".join(str(v) for v in splits.values()) + ")" if splits else ""), "")
    else:
        t.append("no data.json (the run never prepared its data)", "dim")
    s = lin.summary
    t.append("\n" + ARROW, "dim")
    t.append("run  ", "bold cyan")
    if s is not None:
        summ = (lin.done.get("summary") or {}) if lin.done else {}
        steps = summ.get("steps", s.step)
        t.append(f"{s.method} on {Path(s.model).name or s.model}, ", "")
        t.append(f"{steps} steps, best val {_f(s.best_val_loss)}", "")
        if s.world_size > 1:
            t.append(f", {s.world_size} processes ({s.strategy.upper()})", "")
        t.append(f"  {s.status}", "dim")
    r = lin.results
    t.append("\n" + ARROW, "dim")
    t.append("eval  ", "bold cyan")
    if r:
        base, tuned, delta = r.get("base") or {}, r.get("tuned") or {}, r.get("delta") or {}
        t.append(f"{r.get('split', '?')}: loss {_f(base.get('loss'))} → {_f(tuned.get('loss'))}")
        dl = delta.get("loss")
        if isinstance(dl, (int, float)) and dl:
            t.append(f" ({dl:+.3g})", "green" if dl < 0 else "red")
        for key, label in (("exact_match", "EM"), ("json_valid", "JSON")):
            if key in tuned:
                t.append(f", {label} {_f(tuned[key], '.0%')}")
    else:
        t.append("not evaluated (e)", "dim")
    t.append("\n" + ARROW, "dim")
    t.append("export  ", "bold cyan")
    if lin.exports:
        last = lin.exports[-1]
        when = time.strftime("%m-%d %H:%M", time.localtime(last.get("time", 0)))
        kind = "merged" if last.get("merged") else "adapter"
        more = f" (+{len(lin.exports) - 1} earlier)" if len(lin.exports) > 1 else ""
        t.append(f"{kind} {last.get('path', '?')} {when}{more}")
    else:
        t.append("none yet (x)", "dim")
    return t


class LineageView(Static):
    DEFAULT_CSS = "LineageView { height: auto; padding: 0 1; }"

    def show(self, lineage) -> None:
        t = lineage_text(lineage) if lineage is not None else Text("no run", "dim")
        t.no_wrap = self.app.has_class("compact")  # one line per stage where rows are scarce
        self.update(t)
