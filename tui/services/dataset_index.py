"""Browse a dataset of any size without holding it: a line-offset index for JSONL (built
in big binary chunks with numpy, readable while it grows) and paged row reads; other
sources (JSON arrays, CSV, Parquet, saved datasets) go through engine.data.load.

Plain Python + numpy; no widgets. The screen runs `LineIndex.build` in a thread worker.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

CHUNK = 16 << 20            # bytes scanned per step of the index build
FIRST_CHUNK = 1 << 20       # scanned first, so the first page shows before the index is done
PAGE = 64                   # rows per cached page
CACHE_PAGES = 64            # pages kept (LRU): memory follows what is shown, not the file
BIG_LINE = 4 << 20          # table cells of longer lines show a byte preview; the row view parses them
BOM = b"\xef\xbb\xbf"
LINE_KINDS = {".jsonl", ".ndjson"}


@dataclass
class Row:
    """One record as the browser sees it: the parsed object, or why it could not be read."""
    index: int                  # position in the source (0-based, blank lines not counted)
    line: int | None            # 1-based line in the file, where the source has lines
    data: dict | None
    error: str | None = None
    preview: str | None = None  # raw text shown instead of `data` for huge lines
    size: int = 0               # bytes of the line (0 when unknown)


class BadSource(ValueError):
    """The whole source is unusable (binary, UTF-16, empty); the message says what to do."""


def sniff(path: Path) -> None:
    """Raise BadSource for files no row can come from."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadSource(f"{path}: file is UTF-16 encoded; re-save the file as UTF-8")
    body = head[3:] if head.startswith(BOM) else head
    if b"\0" in body:
        raise BadSource(f"{path}: looks like a binary file, not text; use JSONL, JSON, CSV or Parquet")
    if not body.strip() and path.stat().st_size <= len(head):
        raise BadSource(f"{path}: file is empty; point the Data screen at a file with rows")


def is_line_source(path: Path) -> bool:
    if path.is_dir():
        return False
    if path.suffix.lower() in LINE_KINDS:
        return True
    if path.suffix.lower() in {".json", ".csv", ".tsv", ".parquet", ".pq"}:
        return False
    with open(path, "rb") as fh:  # no known suffix: a leading '{' means one object per line
        return fh.read(64).lstrip(BOM + b" \t\r\n")[:1] == b"{"


class LineIndex:
    """Offsets of the non-blank lines of a file (int64), their line numbers and lengths.

    `build` appends as it scans; readers see a consistent prefix through `snapshot()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.done = False
        self.scanned = 0
        self._lock = threading.Lock()
        self._starts: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []
        self._linenos: list[np.ndarray] = []
        self._flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.snapshot()[0])

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._flat is None:
                cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
                self._flat = (cat(self._starts, np.int64), cat(self._lens, np.int64), cat(self._linenos, np.int64))
                self._starts, self._lens, self._linenos = ([self._flat[0]], [self._flat[1]], [self._flat[2]])
            return self._flat

    def build(self, progress: Callable[[int, int, int], None] | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> None:
        """Scan the file; `progress(bytes_scanned, total_bytes, rows_so_far)` after each chunk."""
        line_start = 0        # file offset where the current (unfinished) line began
        lineno = 1            # 1-based number of that line
        pos = 0
        with open(self.path, "rb") as fh:
            first = True
            while True:
                if cancelled():
                    return
                buf = fh.read(FIRST_CHUNK if first else CHUNK)
                if not buf:
                    break
                if first and buf.startswith(BOM):
                    line_start = 3
                first = False
                nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10).astype(np.int64) + pos
                if len(nl):
                    starts = np.concatenate(([line_start], nl[:-1] + 1))
                    self._add(starts, nl - starts, np.arange(lineno, lineno + len(nl), dtype=np.int64))
                    lineno += len(nl)
                    line_start = int(nl[-1]) + 1
                pos += len(buf)
                self.scanned = pos
                if progress:
                    progress(pos, self.size, len(self))
            if line_start < pos:  # last line without a newline
                self._add(np.array([line_start], np.int64), np.array([pos - line_start], np.int64),
                          np.array([lineno], np.int64))
        self.done = True
        if progress:
            progress(pos, self.size, len(self))

    def _add(self, starts: np.ndarray, lens: np.ndarray, linenos: np.ndarray) -> None:
        keep = lens > 0
        ones = np.flatnonzero(lens == 1)
        if len(ones):  # a lone "\r" (blank line of a CRLF file) is blank too; such lines are few
            with open(self.path, "rb") as fh:
                for k in ones:
                    fh.seek(int(starts[k]))
                    if fh.read(1) in (b"\r", b" ", b"\t"):
                        keep[k] = False
        with self._lock:
            self._starts.append(starts[keep])
            self._lens.append(lens[keep])
            self._linenos.append(linenos[keep])
            self._flat = None


def _decode_line(raw: bytes) -> tuple[dict | None, str | None]:
    raw = raw.rstrip(b"\r")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, (f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at col {e.start + 1}); "
                      "re-save the file as UTF-8")
    if not s.strip():
        return None, "blank line"
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg}, col {e.colno})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


class LineSource:
    """Rows of a JSONL file read by page through its LineIndex, with an LRU page cache."""

    kind = "jsonl"

    def __init__(self, index: LineIndex):
        self.index = index
        self.path = index.path
        self._pages: OrderedDict[int, list[Row]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.index)

    def invalidate(self) -> None:
        with self._lock:
            self._pages.clear()

    def get(self, i: int, full: bool = False) -> Row:
        """Row i; `full` parses even a huge line (for the row view, in a worker)."""
        if full:
            starts, lens, linenos = self.index.snapshot()
            with open(self.path, "rb") as fh:
                fh.seek(int(starts[i]))
                data, err = _decode_line(fh.read(int(lens[i])))
            return Row(i, int(linenos[i]), data, err, size=int(lens[i]))
        page = self._page(i // PAGE)
        return page[i % PAGE]

    def rows(self, start: int, count: int) -> list[Row]:
        out, i, n = [], start, len(self)
        while i < min(start + count, n):
            page = self._page(i // PAGE)
            k = i % PAGE
            take = page[k: k + (start + count - i)]
            out += take
            i += len(take)
            if not take:
                break
        return out

    def _page(self, p: int) -> list[Row]:
        with self._lock:
            if p in self._pages:
                self._pages.move_to_end(p)
                return self._pages[p]
        starts, lens, linenos = self.index.snapshot()
        a, b = p * PAGE, min((p + 1) * PAGE, len(starts))
        rows: list[Row] = []
        if a < b:
            with open(self.path, "rb") as fh:
                fh.seek(int(starts[a]))
                blob = fh.read(int(starts[b - 1] + lens[b - 1] - starts[a]))
            base = int(starts[a])
            for i in range(a, b):
                s, n = int(starts[i]) - base, int(lens[i])
                raw = blob[s: s + n]
                if n > BIG_LINE:
                    rows.append(Row(i, int(linenos[i]), None, None,
                                    preview=raw[:400].decode("utf-8", "replace") + "…", size=n))
                    continue
                data, err = _decode_line(raw)
                rows.append(Row(i, int(linenos[i]), data, err, size=n))
        with self._lock:
            if len(rows) == PAGE or self.index.done:  # a partial last page may still grow
                self._pages[p] = rows
                while len(self._pages) > CACHE_PAGES:
                    self._pages.popitem(last=False)
        return rows


class ListSource:
    """Rows already in memory (JSON, CSV, Parquet, saved datasets via engine.data.load)."""

    def __init__(self, rows: list[dict], lines: list[int | None], kind: str, path: Path):
        self._rows, self._lines, self.kind, self.path = rows, lines, kind, path

    def __len__(self) -> int:
        return len(self._rows)

    def invalidate(self) -> None:
        pass

    def get(self, i: int, full: bool = False) -> Row:
        line = self._lines[i] if i < len(self._lines) else None
        return Row(i, line, self._rows[i])

    def rows(self, start: int, count: int) -> list[Row]:
        return [self.get(i) for i in range(start, min(start + count, len(self._rows)))]
