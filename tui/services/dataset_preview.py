"""A bounded preview of a dataset for the Data screen, via engine.data (imported lazily:
it may be absent or still loading heavy readers). Only the first records are read
(engine.data.paged streams every format), so a preview of a huge file is as quick as a
small one. Plain Python, run in a thread."""
from __future__ import annotations

from dataclasses import dataclass, field

PREVIEW_ROWS = 500
CELL_CHARS = 80


@dataclass
class Preview:
    source: str
    kind: str = "?"
    format: str = "?"
    format_reason: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


def cell(value) -> str:
    """One line for a table cell: chat turns as 'role: text | ...'."""
    if isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
        parts = []
        for t in value:
            who = t.get("role") or t.get("from") or "?"
            text = t.get("content") if "content" in t else t.get("value", "")
            parts.append(f"{who}: {text}")
        s = " | ".join(parts)
    else:
        s = "" if value is None else str(value)
    s = " ".join(s.split())
    return s if len(s) <= CELL_CHARS else s[: CELL_CHARS - 1] + "…"


def load_preview(path: str, limit: int = PREVIEW_ROWS) -> Preview:
    pv = Preview(source=path)
    try:
        from engine.data.errors import DataError
        from engine.data.paged import iter_batches, source_kind
    except ImportError as e:
        pv.error = f"the dataset loader is not available in this install ({e}); reinstall ftwb"
        return pv
    rows: list[dict] = []
    problems: list[tuple[int, int | None, str]] = []
    try:
        kind, p = source_kind(path)
        for batch in iter_batches(path, batch_rows=max(1, limit)):
            problems += batch.errors
            rows += [r for r in batch.rows if r is not None]
            if len(rows) >= limit:
                break
    except DataError as e:
        pv.error = str(e)
        return pv
    except Exception as e:  # a reader library failed: say so in one line
        pv.error = f"{path}: could not be read ({type(e).__name__}: {e})"
        return pv
    rows = rows[:limit]
    pv.source, pv.kind = str(p or path), kind
    pv.problems = [msg for _, _, msg in problems[:50]]  # each names its line or row
    try:
        from engine.data.detect import detect_format

        pv.format, pv.format_reason = detect_format(rows)
    except ImportError:
        pass
    except DataError as e:
        pv.format, pv.format_reason = "unknown", str(e)
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    pv.columns = cols
    pv.rows = [[cell(r.get(c)) for c in cols] for r in rows]
    return pv
