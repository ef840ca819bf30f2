"""The Data screen's model of one dataset: a browsable source (paged, see dataset_index)
plus, once cleaning starts, an engine.data.versions.Session. Rows keep their source
numbering throughout: session rows are mapped onto source rows by line number, so bad
lines stay visible next to the rows being cleaned.

Everything here is plain Python, run from thread workers; heavy libraries are imported
inside the functions that need them. The source file is only ever read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tui.services.dataset_index import (BadSource, ColumnarSource, CsvIndex, CsvSource, LineIndex, LineSource,
                                        ListSource, Row, is_parquet, sniff)

CHECK_BATCH = 20_000       # rows per batch of the streamed checks (findings shown as each finishes)
STATS_SAMPLE = 20_000      # rows tokenised when a sample is asked for (every row otherwise)
FORMAT_SAMPLE = 400


class WorkbenchError(ValueError):
    """A user-facing one-line message (bad filter, nothing to split, ...)."""


def open_source(path: str | Path):
    """(source, banner notes). JSONL and CSV/TSV are paged via an index the caller builds
    in a worker (`source.index.build`); Parquet (files or shard directories) and saved
    datasets are paged by row group / Arrow file with their length known at once; JSON
    arrays and text corpora are loaded whole. Raises BadSource for unusable sources."""
    from engine.data.errors import DataError
    from engine.data.load import load_rows, resolve_path
    from engine.data.paged import ArrowPages, ParquetPages, source_kind

    p = Path(resolve_path(str(path)))
    if not p.exists():
        raise BadSource(f"{p}: file not found; check the path")
    try:
        if p.is_file() and not is_parquet(p):
            sniff(p)
        kind, q = source_kind(p)
        if kind == "jsonl":
            return LineSource(LineIndex(q)), []
        if kind == "csv":
            return CsvSource(CsvIndex(q)), []
        if kind in ("parquet", "hf_saved"):
            pages = ParquetPages(q) if kind == "parquet" else ArrowPages(q)
            return ColumnarSource(pages, kind), list(pages.notes)
        res = load_rows(p)
    except BadSource:
        raise
    except DataError as e:
        raise BadSource(str(e)) from None
    except Exception as e:  # a reader library failed on a corrupt file
        raise BadSource(f"{p}: could not be read ({type(e).__name__}: {str(e)[:160]})") from None
    notes = list(res.notes) + [pr.message for pr in res.problems]  # messages name their line
    return ListSource(res.rows, res.lines, res.kind, p), notes


def detect(source) -> tuple[str, str]:
    from engine.data.detect import detect_format
    from engine.data.errors import DataError

    n = len(source)
    if hasattr(source, "sample"):  # columnar: the first rows, not a decode of every row group
        rows = source.sample(FORMAT_SAMPLE)
    else:
        step = max(1, n // FORMAT_SAMPLE)
        rows = [r.data for r in (source.get(i) for i in range(0, n, step)) if r.data is not None][:FORMAT_SAMPLE]
    try:
        return detect_format(rows)
    except DataError as e:
        return "unknown", str(e)


@dataclass
class Workbench:
    source: object                       # LineSource | CsvSource | ColumnarSource | ListSource
    fmt: str = "chat"
    reason: str = ""
    session: object | None = None        # engine.data.versions.Session, once cleaning starts
    sid_of: np.ndarray | None = None     # source row -> session row (-1: unreadable)
    edited: set[int] = field(default_factory=set)   # session rows changed by an op
    findings: list = field(default_factory=list)    # engine.data.checks.Finding, rows = source rows
    saved_ops: list = field(default_factory=list)   # the session's ops as of the last save
    bad: np.ndarray | None = None                   # source indices of unreadable rows (sorted), once scanned

    @property
    def path(self) -> Path:
        return Path(self.source.path)

    def __len__(self) -> int:
        return len(self.source)

    # ------------------------------------------------------------ rows
    def row(self, i: int, full: bool = False) -> Row:
        r = self.source.get(i, full=full)
        s = self._sid(i)
        if s >= 0:
            r = Row(r.index, r.line, self.session._rows[s], None, None, r.size)
        return r

    def rows(self, start: int, count: int) -> list[Row]:
        out = self.source.rows(start, count)
        if self.session is None:
            return out
        return [Row(r.index, r.line, self.session._rows[s], None, None, r.size) if (s := self._sid(r.index)) >= 0
                else r for r in out]

    def _sid(self, i: int) -> int:
        if self.session is None or self.sid_of is None or i >= len(self.sid_of):
            return -1
        return int(self.sid_of[i])

    def deleted(self, i: int) -> bool:
        s = self._sid(i)
        if s < 0 and self.session is not None:
            line = self.source.get(i).line
            return line is not None and line in self.session.unreadable_deleted
        return s >= 0 and not self.session._alive[s]

    # ------------------------------------------------------------ row identity
    def parsed_index(self, i: int) -> int | None:
        """0-based index among the parsed rows (what `ftwb data check` and the manifest call
        `row`); None for an unreadable record."""
        if self.session is not None and self.sid_of is not None and i < len(self.sid_of):
            s = int(self.sid_of[i])
            return s if s >= 0 else None
        if self.bad is None:
            return i
        k = int(np.searchsorted(self.bad, i))
        return None if k < len(self.bad) and int(self.bad[k]) == i else i - k

    def label(self, i: int) -> str:
        """'line 16 (row 14)': the 1-based source line first, the parsed-row index after."""
        line = self.source.get(i).line
        p = self.parsed_index(i)
        row = "unreadable" if p is None else f"row {p}"
        return f"line {line} ({row})" if line is not None else row

    def unsaved(self) -> int:
        """Operations since the last save (an undo past a save counts too)."""
        if self.session is None:
            return 0
        ops, saved = self.session.ops, self.saved_ops
        k = 0
        while k < min(len(ops), len(saved)) and ops[k] is saved[k]:
            k += 1
        return (len(ops) - k) + (len(saved) - k)

    def is_edited(self, i: int) -> bool:
        return self._sid(i) in self.edited

    # ------------------------------------------------------------ cleaning (engine Session)
    def start_session(self) -> None:
        """Load every row into an engine Session (in a worker: it reads the whole file)."""
        if self.session is not None:
            return
        from engine.data.versions import Session

        fmt = self.fmt if self.fmt != "unknown" else None
        sess = Session(self.path, fmt=fmt)
        sid_of = np.full(len(self.source), -1, np.int64)
        if isinstance(self.source, LineSource):
            _, _, linenos = self.source.index.snapshot()
            lines = np.array([ln if ln is not None else -1 for ln in sess.lines], np.int64)
            pos = np.searchsorted(linenos, lines)
            ok = (pos < len(linenos)) & (linenos[np.minimum(pos, len(linenos) - 1)] == lines)
            sid_of[pos[ok]] = np.flatnonzero(ok)
        else:
            sid_of[: len(sess.original)] = np.arange(min(len(sess.original), len(sid_of)))
        self.session, self.sid_of = sess, sid_of

    def _sids(self, idxs) -> list[int]:
        return [s for s in (self._sid(int(i)) for i in idxs) if s >= 0]

    def _bad_lines(self, idxs) -> list[int]:
        return [r.line for r in (self.source.get(int(i)) for i in idxs)
                if r.error and r.line is not None and self._sid(r.index) < 0]

    def delete(self, idxs) -> int:
        n = len(self.session.delete_rows(self._sids(idxs))["rows"])
        bad = self._bad_lines(idxs)
        return n + (len(self.session.delete_unreadable(bad)["lines"]) if bad else 0)

    def restore(self, idxs) -> int:
        n = len(self.session.restore_rows(self._sids(idxs))["rows"])
        bad = self._bad_lines(idxs)
        return n + (len(self.session.restore_unreadable(bad)["lines"]) if bad else 0)

    def edit(self, i: int, json_path: str, value) -> None:
        s = self._sid(i)
        if s < 0:
            raise WorkbenchError(f"row {i} could not be read, so it cannot be edited; fix the file")
        self.session.edit_field(s, json_path, value)
        self._refresh_edited()

    def drop_duplicates(self) -> int:
        return len(self.session.drop_exact_duplicates()["rows"])

    def redact(self, idxs=None) -> int:
        n = len(self.session.redact_pii(None if idxs is None else self._sids(idxs))["rows"])
        self._refresh_edited()
        return n

    def drop_failing(self, check_id: str, idxs=None) -> int:
        """Drop rows failing a check: among `idxs` (the current filter) when given."""
        from engine.data.checks import CHECKS

        if check_id not in CHECKS:
            raise WorkbenchError(f"unknown check {check_id!r}; known: {', '.join(CHECKS)}")
        if idxs is None:
            return len(self.session.drop_failing(check_id)["rows"])
        failing = {f.row for f in self.findings if f.check == check_id}
        return self.delete([i for i in idxs if int(i) in failing])

    def undo(self) -> dict | None:
        op = self.session.undo() if self.session else None
        self._refresh_edited()
        return op

    def redo(self) -> dict | None:
        op = self.session.redo() if self.session else None
        self._refresh_edited()
        return op

    def _refresh_edited(self) -> None:
        out: set[int] = set()
        for op in self.session.ops:
            if op["op"] == "edit_field":
                out.add(op["row"])
            elif op["op"] == "redact_pii":
                out.update(op["rows"])
        self.edited = out

    def save(self):
        from engine.data.versions import save_version

        info = save_version(self.session)
        self.saved_ops = list(self.session.ops)
        return info

    def versions(self) -> list:
        from engine.data.versions import list_versions

        return list_versions(self.path)

    # ------------------------------------------------------------ rows for engine helpers
    def live_rows(self, limit: int | None = None) -> tuple[list[dict], list[int]]:
        """(readable, not deleted rows, their source indices), in source order."""
        rows, idx = [], []
        n = len(self)
        for start in range(0, n, 4096):
            for r in self.rows(start, 4096):
                if r.data is None and r.preview is not None:
                    r = self.row(r.index, full=True)
                if r.data is not None and not self.deleted(r.index):
                    rows.append(r.data)
                    idx.append(r.index)
                    if limit is not None and len(rows) >= limit:
                        return rows, idx
        return rows, idx

    def unreadable(self) -> list[Row]:
        out = []
        for start in range(0, len(self), 4096):
            out += [r for r in self.rows(start, 4096) if r.error]
        self.bad = np.array([r.index for r in out], np.int64)
        return out


# ---------------------------------------------------------------- checks

def run_all_checks(wb: Workbench, tokenizer=None, max_seq_len: int | None = None,
                   progress: Callable[[str], None] = lambda s: None, cancelled: Callable[[], bool] = lambda: False,
                   on_findings: Callable[[list], None] | None = None, sample: int | None = None) -> tuple[list, str]:
    """Findings over every live row (rows renumbered to source rows), streamed a batch at a
    time (engine.data.checks_stream), and a note on coverage. `on_findings` gets each
    batch's findings as they are found; `cancelled` stops the scan between batches (the
    findings so far come back, the note says partial); `sample`: the first N live rows."""
    from array import array

    from engine.data.checks_stream import ListBatch, check_stream

    idx = array("q")   # live row -> source row
    bad: list[int] = []
    n = len(wb)

    def batches():
        for start in range(0, n, CHECK_BATCH):
            rows, errors = [], []
            for r in wb.rows(start, min(CHECK_BATCH, n - start)):
                if r.error:
                    bad.append(r.index)
                    errors.append((r.index, r.line, f"line {r.line}: {r.error}"))
                    continue
                if r.data is None and r.preview is not None:
                    r = wb.row(r.index, full=True)
                if r.data is not None and not wb.deleted(r.index):
                    rows.append(r.data)
                    idx.append(r.index)
            yield ListBatch(start, rows, [None] * len(rows), errors, None, min(n, start + CHECK_BATCH), n)

    def renumber(found: list) -> None:
        for f in found:
            if f.row >= 0 and f.check != "invalid_json":
                f.row = idx[f.row]
                f.line = wb.source.get(f.row).line

    def tell(p) -> None:
        if p.phase == "rows":
            pct = f"{100 * p.fraction:.0f}% · " if p.fraction is not None else ""
            progress(f"checking {pct}{p.rows:,} rows · {p.rate:,.0f} rows/s")
        elif p.phase == "duplicates":
            progress(f"finding duplicates among {p.rows:,} rows …")

    def found(batch: list) -> None:
        renumber(batch)
        if on_findings is not None:
            on_findings(batch)

    progress("reading rows")
    res = check_stream(batches(), wb.fmt if wb.fmt != "unknown" else "completion", tokenizer=tokenizer,
                       max_seq_len=max_seq_len, sample=sample, progress=tell, on_findings=found,
                       cancelled=cancelled)
    if not res.partial and not res.sampled:
        wb.bad = np.array(bad, np.int64)
    if res.partial:
        note = f"stopped: checked {res.rows:,} rows (partial" + (
            f"; not checked: {', '.join(res.skipped)})" if res.skipped else ")")
    elif res.sampled:
        note = f"sample: checked the first {res.rows:,} rows"
    else:
        note = f"checked {res.rows:,} rows"
    return res.findings, note


# ---------------------------------------------------------------- filters and sorting

FILTER_HELP = ("regex over the row's JSON · check:ID · FIELD=VALUE · has:FIELD · len>N / len<N (bytes) · "
               "deleted · edited · sort:len / sort:-len / sort:FIELD; join terms with ' & '")
_LEN = re.compile(r"^len\s*([<>]=?)\s*(\d+)$")


def _row_bytes(wb: Workbench, r: Row, lens: np.ndarray | None = None) -> int:
    """Bytes of a row: the source's own count (line bytes, Arrow text bytes) unless edited."""
    if lens is not None and r.index < len(lens) and not wb.is_edited(r.index):
        return int(lens[r.index])
    return r.size or len(json.dumps(r.data, ensure_ascii=False)) if r.data is not None else r.size


_CMP = {"<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}


def _index_mask(wb: Workbench, t: str, n: int, lens: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    """The term as a mask over the first n source rows when no row has to be read for it
    (findings, lengths from the source's index or column scan, known unreadable rows); None
    when it needs the rows' contents."""
    if t.startswith("check:"):
        if not wb.findings:
            raise WorkbenchError("no check results yet: run the checks (c) first, then filter by check")
        cid = t[6:].strip()
        ids = np.array(sorted({f.row for f in wb.findings if f.check == cid}), np.int64)
        mask = np.zeros(n, bool)
        mask[ids[(ids >= 0) & (ids < n)]] = True
        return mask
    if wb.session is not None:  # edits and deletions live in the session's rows
        return None
    m = _LEN.match(t)
    if m:
        ls = lens()
        return None if ls is None else _CMP[m.group(1)](ls[:n], int(m.group(2)))
    if t in ("deleted", "edited"):
        return np.zeros(n, bool)
    if t in ("error", "unreadable") and wb.bad is not None:
        mask = np.zeros(n, bool)
        mask[wb.bad[wb.bad < n]] = True
        return mask
    return None


def apply_filter(wb: Workbench, spec: str, cancelled: Callable[[], bool] = lambda: False) -> np.ndarray | None:
    """Source row indices matching `spec` (see FILTER_HELP), in display order; None = all rows.
    Terms on lengths and findings are answered from the source's lengths() and the findings
    alone, so sorting or filtering a big file by length reads no rows."""
    terms = [t.strip() for t in spec.split(" & ") if t.strip()]
    if not terms:
        return None
    n = len(wb)
    cached: list = []

    def lens() -> np.ndarray | None:
        if not cached:
            ls = wb.source.lengths(cancelled) if hasattr(wb.source, "lengths") else None
            cached.append(None if ls is None else np.asarray(ls)[:n])
        return cached[0]

    sort_key = None
    tests, masks = [], []
    for t in terms:
        if t.startswith("sort:"):
            sort_key = t[5:].strip()
            continue
        m = _index_mask(wb, t, n, lens)
        if m is not None:
            masks.append(m)
        else:
            tests.append(_term(wb, t))
    if cancelled():
        return np.zeros(0, np.int64)
    mask = np.logical_and.reduce(masks) if masks else None
    by_len = sort_key is not None and sort_key.lstrip("-") == "len"
    rev = bool(sort_key) and sort_key.startswith("-")
    if not tests and (sort_key is None or by_len):
        out = np.flatnonzero(mask) if mask is not None else None
        if by_len:  # no copies of the whole index beyond the key and the order (big files)
            ls = lens()
            if ls is None:
                return np.zeros(0, np.int64)
            key = ls if out is None else ls[out]
            order = np.argsort(-key if rev else key, kind="stable")
            out = order if out is None else out[order]
        return (np.arange(n, dtype=np.int64) if out is None else out).astype(np.int64, copy=False)
    ls = lens() if (by_len or any(_LEN.match(t) for t in terms)) else None
    keep, keys = [], []
    for start in range(0, n, 4096):
        if cancelled():
            return np.zeros(0, np.int64)
        if mask is not None and not mask[start:start + 4096].any():
            continue
        for r in wb.rows(start, 4096):
            if (mask is None or mask[r.index]) and all(test(r, ls) for test in tests):
                keep.append(r.index)
                if sort_key:
                    keys.append(_sort_value(wb, r, sort_key, ls))
    out = np.array(keep, np.int64)
    if sort_key:
        order = sorted(range(len(keep)), key=lambda k: keys[k], reverse=rev)
        out = out[np.array(order, np.int64)] if order else out
    return out


def _sort_value(wb: Workbench, r: Row, key: str, lens: np.ndarray | None = None):
    key = key.lstrip("-")
    if key == "len":
        return (0, _row_bytes(wb, r, lens))
    v = r.data.get(key) if r.data else None
    return (0, v) if isinstance(v, (int, float)) else (1, "" if v is None else str(v))


def _term(wb: Workbench, t: str) -> Callable[[Row, np.ndarray | None], bool]:
    """A test of one row (and the source's lengths, when they were needed)."""
    if t.startswith("check:"):
        cid = t[6:].strip()
        rows = {f.row for f in wb.findings if f.check == cid}
        if not wb.findings:
            raise WorkbenchError("no check results yet: run the checks (c) first, then filter by check")
        return lambda r, ls=None: r.index in rows
    if t.startswith("has:"):
        name = t[4:].strip()
        return lambda r, ls=None: r.data is not None and name in r.data
    if t == "deleted":
        return lambda r, ls=None: wb.deleted(r.index)
    if t == "edited":
        return lambda r, ls=None: wb.is_edited(r.index)
    if t in ("error", "unreadable"):
        return lambda r, ls=None: r.error is not None
    m = _LEN.match(t)
    if m:
        op, num = m.group(1), int(m.group(2))
        cmp = {"<": lambda a: a < num, ">": lambda a: a > num, "<=": lambda a: a <= num, ">=": lambda a: a >= num}[op]
        return lambda r, ls=None: cmp(_row_bytes(wb, r, ls))
    fm = re.match(r"^([A-Za-z_][\w.-]*)\s*=\s*(.*)$", t)
    if fm:
        name, want = fm.group(1), fm.group(2).strip().strip("'\"")
        return lambda r, ls=None: r.data is not None and name in r.data and str(r.data[name]) == want
    try:
        rx = re.compile(t, re.IGNORECASE)
    except re.error as e:
        raise WorkbenchError(f"bad regex {t!r} ({e}); escape special characters with \\") from None

    def match(r: Row, ls=None) -> bool:
        if r.data is not None:
            return rx.search(json.dumps(r.data, ensure_ascii=False)) is not None
        return rx.search(r.preview or r.error or "") is not None
    return match


# ---------------------------------------------------------------- tokenizer and token view

def load_tokenizer(model_path: str):
    """AutoTokenizer from a local model dir ('demo': the bundled recipe's model, built once)."""
    from engine.data.template import ensure_chat_template

    path = model_path
    if model_path == "demo":
        from engine.demo import ensure_demo_model

        path = str(ensure_demo_model())
    if not Path(path).is_dir():
        raise WorkbenchError(f"model {model_path!r}: not a local model directory; give a directory with "
                             "tokenizer files, or 'demo'")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise WorkbenchError(f"model {model_path!r}: cannot load a tokenizer ({str(e).splitlines()[0][:160]})") from None
    ensure_chat_template(tok)
    return tok


@dataclass
class TokenView:
    pieces: list[str]          # each token's text
    trained: list[bool]
    total: int
    trainable: int
    max_seq_len: int
    note: str = ""
    rejected: "TokenView | None" = None  # preference rows: the rejected side, masked the same way
    policy: str = ""           # the turn policy that made this example (data.turn_policy)
    turn: int | None = None    # the trained assistant turn of a per-turn example
    lint: list[str] = field(default_factory=list)  # template flags: end-of-turn not trained, ...
    more: list["TokenView"] = field(default_factory=list)  # the row's other examples (per_turn)


def token_view(tokenizer, row: dict, fmt: str, max_seq_len: int, train_on: str = "assistant",
               turn_policy: str = "auto") -> TokenView:
    """The row through the model's chat template, exactly as the engine trains it (the same
    plan_row/tokenize_row path): every token, whether it is trained, and every training
    example the row gives (several under the per_turn policy)."""
    from engine.data.errors import DataError, RowError
    from engine.data.normalize import normalize_row
    from engine.data.template import tokenize_row

    def views(example) -> TokenView:
        first, *rest = [_view(tokenizer, t, max_seq_len) for t in tokenize_row(tokenizer, example, train_on,
                                                                                turn_policy)]
        first.more = rest
        return first

    try:
        example = normalize_row(row, fmt)
        rejected = None
        if "rejected" in example:  # a preference pair: both sides, as DPO/ORPO train them
            from engine.data.preference import sides

            example, other = sides(example)
            rejected = views(other)
        view = views(example)
    except (RowError, DataError) as e:
        raise WorkbenchError(f"this row cannot be tokenised: {e}") from None
    view.rejected = rejected
    return view


def _view(tokenizer, tokenized, max_seq_len: int) -> TokenView:
    from engine.data.template import IGNORE

    ids, plan = tokenized.input_ids, tokenized.plan
    pieces = [tokenizer.decode([t]) for t in ids]
    trained = [lab != IGNORE for lab in tokenized.labels]
    note = "" if any(trained) else "no token of this row is trained (empty loss mask)"
    return TokenView(pieces, trained, len(ids), sum(trained), max_seq_len, note,
                     policy=plan.policy, turn=plan.turn, lint=list(plan.notes))


# ---------------------------------------------------------------- stats

@dataclass
class Stats:
    fmt: str
    reason: str
    rows: int
    readable: int
    fields: dict[str, int]
    turns: dict[int, int]
    roles: dict[str, int]
    label_field: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    sampled: int = 0                       # rows tokenised so far (0: no tokenizer)
    lengths: object = field(default_factory=list)   # token length per tokenised row (numpy array)
    max_seq_len: int = 0
    overlong: int = 0
    cut_assistant: int = 0
    unusable: int = 0                      # rows that fail to read, normalise or tokenise
    packing_efficiency: float | None = None
    tokens: object | None = None           # engine.data.token_stats.TokenStats, once tokenising starts
    token_total: int | None = None         # rows to tokenise
    sample: bool = False                   # a sample was asked for, not every row
    complete: bool = True                  # False while rows are still being tokenised


def compute_stats(wb: Workbench, tokenizer, max_seq_len: int, label_field: str | None = None,
                  sample: int | None = None, progress: Callable[[str], None] = lambda s: None,
                  cancelled: Callable[[], bool] = lambda: False, partial: Callable[[Stats], None] | None = None,
                  train_on: str = "assistant", turn_policy: str = "auto") -> Stats:
    """Fields, turns and labels over every live row, then token statistics over every row
    (or an even sample of `sample` rows) through engine.data.token_stats: cached per file
    version and tokenizer while the file is unedited. `partial(stats)` shows the figures
    as they fill in; raises engine.data.token_stats.StatsCancelled once `cancelled()`."""
    from collections import Counter

    from engine.data.checks_chat import to_messages
    from engine.data.token_stats import StatsCancelled

    n = len(wb)
    fields, turns, roles, labels = Counter(), Counter(), Counter(), Counter()
    readable = 0
    for start in range(0, n, 4096):
        if cancelled():
            raise StatsCancelled()
        for r in wb.rows(start, 4096):
            if r.data is None or wb.deleted(r.index):
                continue
            readable += 1
            fields.update(r.data.keys())
            msgs = to_messages(r.data, wb.fmt)
            if msgs is not None:
                turns[len(msgs)] += 1
                roles.update(m["role"] for m in msgs)
            if label_field:
                v = r.data.get(label_field)
                labels[json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v] += 1
    st = Stats(wb.fmt, wb.reason, n, readable, dict(fields.most_common()), dict(sorted(turns.items())),
               dict(roles.most_common()), label_field, dict(labels.most_common(20)), max_seq_len=max_seq_len)
    if tokenizer is None:
        return st
    st.sample, st.token_total, st.complete = bool(sample), min(n, sample) if sample else n, False
    progress(f"tokenising {st.token_total:,} rows")
    _token_stats(st, wb, tokenizer, max_seq_len, sample, cancelled, partial, train_on, turn_policy)
    return st


def _token_stats(st: Stats, wb: Workbench, tokenizer, max_seq_len: int, sample: int | None, cancelled,
                 partial, train_on: str, turn_policy: str) -> None:
    import time

    from engine.data import token_stats as T

    settings = T.Settings(st.fmt, max_seq_len, train_on, turn_policy)
    shown = [time.monotonic()]

    def fill(ts) -> None:
        _fill(st, ts)
        if partial is not None and not ts.complete and time.monotonic() - shown[0] >= 1.0:
            shown[0] = time.monotonic()
            partial(st)

    if wb.session is None or not wb.session.ops:  # the file as it is on disk: cached per version
        ts = T.file_stats(wb.path, tokenizer, settings, sample=sample, total=len(wb) if sample else None,
                          progress=fill, cancelled=cancelled)
    else:  # edited in this session: the live rows, not cached
        src = _live_batches(wb, cancelled)
        if sample:
            src = T.sampled(src, len(wb), sample)
        ts = T.compute(src, tokenizer, settings, total=st.token_total, sample=sample, progress=fill,
                       cancelled=cancelled)
    st.complete = True
    _fill(st, ts)


def _fill(st: Stats, ts) -> None:
    st.tokens = ts
    st.sampled = ts.usable
    st.lengths = ts.lengths
    st.overlong, st.cut_assistant, st.unusable = ts.overlong, ts.cut_assistant, ts.unusable_rows
    st.packing_efficiency = ts.packing_efficiency if ts.complete else None
    if ts.total is not None:
        st.token_total = ts.total


def _live_batches(wb: Workbench, cancelled):
    """(rows, source indices) of the rows not deleted, None for an unreadable one."""
    for start in range(0, len(wb), 4096):
        if cancelled():
            return
        rows, idx = [], []
        for r in wb.rows(start, 4096):
            if wb.deleted(r.index):
                continue
            if r.data is None and r.preview is not None:
                r = wb.row(r.index, full=True)
            rows.append(r.data)
            idx.append(r.index)
        yield rows, idx


# ---------------------------------------------------------------- split

@dataclass
class SplitResult:
    out: Path
    rows: dict[str, int]
    files: dict[str, str]
    leaks: dict[str, int]


def write_split(wb: Workbench, val: float, test: float, seed: int, stratify: str | None,
                out: Path | None = None) -> SplitResult:
    """Split the live rows (deleted ones left out) into train/val/test JSONL next to the source."""
    from engine.config import atomic_write_text
    from engine.data.checks_chat import row_text
    from engine.data.dedup import find_leaks
    from engine.data.split import split_indices

    for name, v in (("val", val), ("test", test)):
        if not 0 <= v < 1:
            raise WorkbenchError(f"{name} {v}: must be a fraction in [0, 1), e.g. 0.1")
    if val + test >= 1:
        raise WorkbenchError(f"val {val} + test {test} leave nothing to train on; keep the sum below 1")
    rows, _ = wb.live_rows()
    if not rows:
        raise WorkbenchError("no readable rows to split")
    labels = None
    if stratify:
        labels = [json.dumps(r.get(stratify), sort_keys=True) for r in rows]
        if all(lab == "null" for lab in labels):
            raise WorkbenchError(f"stratify {stratify!r}: no row has that field; leave it empty or name a field")
    parts = split_indices(len(rows), val, test, seed, labels)
    out = out or wb.path.parent / f"{wb.path.stem}-split"
    files = {}
    for name in ("train", "val", "test"):
        if name != "train" and not parts[name]:
            continue
        p = out / f"{name}.jsonl"
        atomic_write_text(p, "".join(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in parts[name]))
        files[name] = str(p)
    fmt = wb.fmt if wb.fmt != "unknown" else "completion"
    texts = {k: [row_text(rows[i], fmt) for i in v] for k, v in parts.items()}
    leaks = {k: len(find_leaks(texts["train"], texts[k])) for k in ("val", "test") if texts[k]}
    return SplitResult(out, {k: len(v) for k, v in parts.items()}, files, leaks)
