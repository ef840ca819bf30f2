"""Browse a dataset of any size without holding it. JSONL and CSV/TSV get a record-offset
index (JSONL built in big binary chunks with numpy, CSV with the csv module's quoting rules;
both readable while they grow) and rows parsed a page at a time; Parquet files, Parquet
shard directories and saved datasets are read by row group / memory-mapped Arrow file
(engine.data.paged), their row count known at once. JSON arrays and text corpora are
loaded whole (engine.data.load): a JSON array is one value.

Every source offers the same reading interface: `len`, `get(i)`, `rows(start, count)`,
`lengths()` (bytes per record, for sorting and filtering by length without the rows).

Plain Python + numpy; no widgets. The screen runs `index.build` in a thread worker.
"""
from __future__ import annotations

import csv
import io
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
_WS_TABLE = np.zeros(256, bool)  # bytes.strip()'s whitespace, by byte value
_WS_TABLE[list(b" \t\r\n\x0b\x0c")] = True


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


def is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


class _Column:
    """A growing numpy column: appends write past the visible end, so a view taken earlier
    stays valid while the build goes on; capacity grows by half, or to a size hint."""

    def __init__(self, dtype):
        self.a = np.zeros(1 << 12, dtype)
        self.n = 0

    def reserve(self, cap: int) -> None:
        if cap > len(self.a):
            new = np.zeros(cap, self.a.dtype)  # zero pages cost nothing until written
            new[: self.n] = self.a[: self.n]
            self.a = new

    def extend(self, x: np.ndarray) -> None:
        need = self.n + len(x)
        if need > len(self.a):
            self.reserve(max(need, len(self.a) * 3 // 2))
        self.a[self.n: need] = x
        self.n = need

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class LineIndex:
    """Offsets of the non-blank lines of a file (int64), their lengths and line numbers
    (int32): 16 bytes a record, never a list of rows.

    `build` appends as it scans; readers see a consistent prefix through `snapshot()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.done = False
        self.scanned = 0
        self.error: str | None = None   # why the build stopped early, if it did
        self._lock = threading.Lock()
        self._starts = _Column(np.int64)
        self._lens = _Column(np.int32)
        self._linenos = _Column(np.int32)

    def __len__(self) -> int:
        return self._starts.n

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            return self._starts.view(), self._lens.view(), self._linenos.view()

    def lengths(self) -> np.ndarray:
        return self.snapshot()[1]

    def _reserve_for(self, scanned: int) -> None:
        """After the first chunk, size the columns for the whole file (a little over)."""
        if scanned and len(self) and scanned < self.size:
            with self._lock:
                est = int(len(self) * self.size / scanned * 1.05) + 1024
                for c in (self._starts, self._lens, self._linenos):
                    c.reserve(est)

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
                if buf.endswith(b"\r"):  # a CR ends a line unless LF follows: take the next byte too
                    buf += fh.read(1)
                if first and buf.startswith(BOM):
                    line_start = 3
                nl = _line_ends(buf) + pos
                if len(nl):
                    starts = np.concatenate(([line_start], nl[:-1] + 1))
                    self._add(starts, nl - starts, np.arange(lineno, lineno + len(nl), dtype=np.int64), buf, pos)
                    lineno += len(nl)
                    line_start = int(nl[-1]) + 1
                pos += len(buf)
                self.scanned = pos
                if first:
                    self._reserve_for(pos)
                first = False
                if progress:
                    progress(pos, self.size, len(self))
            if line_start < pos:  # last line without a newline
                self._add(np.array([line_start], np.int64), np.array([pos - line_start], np.int64),
                          np.array([lineno], np.int64))
        self.done = True
        if progress:
            progress(pos, self.size, len(self))

    def _add(self, starts: np.ndarray, lens: np.ndarray, linenos: np.ndarray, buf: bytes = b"",
             pos: int = 0) -> None:
        """Append lines, leaving out blank ones: empty, or all whitespace (a lone "\\r" of a
        CRLF file, a few spaces) as engine.data.load skips them. Only lines that begin and
        end with whitespace are looked at (numpy on the chunk `buf` at file offset `pos`)."""
        keep = lens > 0
        inside = keep & (starts >= pos) & (starts + lens <= pos + len(buf))
        cand = np.flatnonzero(~inside & keep)  # the line carried over from the last chunk
        k = np.flatnonzero(inside)
        if len(k):
            arr = np.frombuffer(buf, np.uint8)
            first, last = arr[starts[k] - pos], arr[starts[k] + lens[k] - 1 - pos]
            cand = np.concatenate((cand, k[_WS_TABLE[first] & _WS_TABLE[last]]))
        if len(cand):
            with open(self.path, "rb") as fh:
                for q in cand:
                    a, n = int(starts[q]), int(lens[q])
                    if pos <= a and a + n <= pos + len(buf):
                        raw = buf[a - pos: a + n - pos]
                    else:
                        fh.seek(a)
                        raw = fh.read(n)
                    if not raw.strip():
                        keep[q] = False
        self._append(starts[keep], lens[keep], linenos[keep])

    def _append(self, starts, lens, linenos) -> None:
        with self._lock:
            self._starts.extend(starts)
            self._lens.extend(lens)
            self._linenos.extend(linenos)


def _line_ends(buf: bytes) -> np.ndarray:
    """Offsets in buf of the bytes ending lines, as bytes.splitlines (and engine.data.load)
    splits: LF, and a CR not followed by LF (old Mac endings; CRLF lines keep their CR)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10).astype(np.int64)
    if b"\r" in buf:  # memchr: LF-only files pay nothing more
        cr = np.flatnonzero(arr == 13)
        after = arr[np.minimum(cr + 1, len(arr) - 1)]
        lone = cr[(after != 10) | (cr == len(arr) - 1)]
        if len(lone):
            nl = np.union1d(nl, lone).astype(np.int64)
    return nl


class CsvIndex(LineIndex):
    """Offsets of the records of a CSV/TSV file, found with the csv module's own rules (a
    quoted field may hold newlines), blank records left out as engine.data.load leaves them.
    The header is read at once, so a file without one is refused before any scan."""

    FIRST_ROWS = 64        # published first, so the first page shows at once
    STEP = 8192            # records per later append

    def __init__(self, path: str | Path, delimiter: str | None = None):
        super().__init__(path)
        self.delimiter = delimiter or ("\t" if self.path.suffix.lower() == ".tsv" else ",")
        from engine.data.paged import csv_records

        recs = csv_records(self.path, self.delimiter, "surrogateescape")
        self.header: list[str] = next(recs)[0]
        recs.close()
        self.error_at: int | None = None   # the row standing for the unreadable rest, if any

    def build(self, progress: Callable[[int, int, int], None] | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> None:
        from engine.data.errors import DataError
        from engine.data.paged import csv_records

        linenos, nexts = [], []   # first line of each pending record, and of the one after it
        want = self.FIRST_ROWS
        feed = None

        def flush(done: int) -> None:
            if linenos:
                starts = feed.offsets(linenos)
                self._append(starts, feed.offsets(nexts) - starts, np.array(linenos, np.int64))
                linenos.clear(), nexts.clear()
            self.scanned = done
            if progress:
                progress(done, self.size, len(self))

        # undecodable bytes are kept, so only their own record is marked unreadable
        recs = csv_records(self.path, self.delimiter, "surrogateescape")
        nxt = next(recs)[2]
        done = 0
        try:
            for values, lineno, nxt, feed in recs:
                if not values or not "".join(values).strip():
                    continue
                if not linenos:
                    feed.keep_from = lineno  # offsets from here on are still to be looked up
                linenos.append(lineno)
                nexts.append(nxt)
                if len(linenos) >= want:
                    done = feed.done
                    first = want == self.FIRST_ROWS
                    want = self.STEP
                    end = int(feed.offsets([nxt])[0])
                    flush(done)
                    if first:
                        self._reserve_for(end)
                    if cancelled():
                        return
        except DataError as e:  # the records before it stay browsable; the rest is one bad row
            self.error = str(e).split(": ", 1)[-1] + "; the rest of the file was not read"
            done = feed.done if feed is not None else 0
            if feed is not None:
                start = int(feed.offsets([nxt])[0]) if not linenos else None
                flush(done)
                start = int(self._starts.view()[-1] + self._lens.view()[-1]) if start is None else start
                self.error_at = len(self)
                self._append(np.array([start], np.int64), np.array([max(0, self.size - start)], np.int64),
                             np.array([nxt], np.int64))
        self.done = True
        flush(self.size if self.error is None else done)


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


class _Paged:
    """Rows by page with an LRU page cache; a subclass reads one page (`_read_page`)."""

    def _init_pages(self) -> None:
        self._pages: OrderedDict[int, list[Row]] = OrderedDict()
        self._lock = threading.Lock()
        self._lengths: np.ndarray | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._pages.clear()

    def _complete(self) -> bool:
        return True

    def get(self, i: int, full: bool = False) -> Row:
        return self._page(i // PAGE)[i % PAGE]

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
        rows = self._read_page(p * PAGE, min((p + 1) * PAGE, len(self)))
        with self._lock:
            if len(rows) == PAGE or self._complete():  # a partial last page may still grow
                self._pages[p] = rows
                while len(self._pages) > CACHE_PAGES:
                    self._pages.popitem(last=False)
        return rows

    def _read_page(self, a: int, b: int) -> list[Row]:
        raise NotImplementedError


class LineSource(_Paged):
    """Rows of a JSONL file read by page through its LineIndex, with an LRU page cache."""

    kind = "jsonl"

    def __init__(self, index: LineIndex):
        self.index = index
        self.path = index.path
        self._init_pages()

    def __len__(self) -> int:
        return len(self.index)

    def _complete(self) -> bool:
        return self.index.done

    def lengths(self, cancelled: Callable[[], bool] = lambda: False) -> np.ndarray:
        """Bytes of each record as indexed so far (no row is read)."""
        return self.index.lengths()

    def _parse(self, raw: bytes, lineno: int) -> tuple[dict | None, str | None]:
        return _decode_line(raw)

    def get(self, i: int, full: bool = False) -> Row:
        """Row i; `full` parses even a huge line (for the row view, in a worker)."""
        if full:
            starts, lens, linenos = self.index.snapshot()
            with open(self.path, "rb") as fh:
                fh.seek(int(starts[i]))
                data, err = self._parse(fh.read(int(lens[i])), int(linenos[i]))
            return Row(i, int(linenos[i]), data, err, size=int(lens[i]))
        return self._page(i // PAGE)[i % PAGE]

    def _read_page(self, a: int, b: int) -> list[Row]:
        starts, lens, linenos = self.index.snapshot()
        b = min(b, len(starts))
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
                data, err = self._parse(raw, int(linenos[i]))
                rows.append(Row(i, int(linenos[i]), data, err, size=n))
        return rows


class CsvSource(LineSource):
    """Rows of a CSV/TSV file through its CsvIndex, each record parsed with the header."""

    kind = "csv"

    def __init__(self, index: CsvIndex):
        super().__init__(index)

    def get(self, i: int, full: bool = False) -> Row:
        if i == self.index.error_at:
            return self._page(i // PAGE)[i % PAGE]
        return super().get(i, full)

    def _read_page(self, a: int, b: int) -> list[Row]:
        rows = super()._read_page(a, b)
        k = self.index.error_at
        if k is not None and a <= k < a + len(rows):
            r = rows[k - a]
            rows[k - a] = Row(r.index, r.line, None, self.index.error, size=r.size)
        return rows

    def _parse(self, raw: bytes, lineno: int) -> tuple[dict | None, str | None]:
        from engine.data.paged import csv_row

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, (f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at col {e.start + 1}); "
                          "re-save the file as UTF-8")
        try:
            values = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.index.delimiter), [])
        except csv.Error as e:
            return None, f"not valid CSV ({e}); fix the quoting"
        data, err = csv_row(self.index.header, values, lineno)
        if err is not None:
            err = err.removeprefix(f"line {lineno}: ")
        return data, err


class ColumnarSource(_Paged):
    """Rows of a Parquet file, a Parquet shard directory or a saved dataset, read by row
    group / Arrow file (engine.data.paged); the row count comes from metadata at once."""

    def __init__(self, pages, kind: str):
        self.pages = pages
        self.kind = kind
        self.path = Path(pages.path)
        self._init_pages()

    def __len__(self) -> int:
        return len(self.pages)

    def _read_page(self, a: int, b: int) -> list[Row]:
        return [Row(i, None, d) for i, d in enumerate(self.pages.rows(a, b), start=a)]

    def sample(self, n: int) -> list[dict]:
        """Up to n rows from the first row group(s): enough to recognise the format without
        decoding the whole file before the first page is on screen."""
        return self.pages.rows(0, n)

    def lengths(self, cancelled: Callable[[], bool] = lambda: False) -> np.ndarray | None:
        """Bytes of each row's text (a column scan, once; None if cancelled)."""
        if self._lengths is None:
            self._lengths = self.pages.byte_lengths(cancelled)
        return self._lengths


class ListSource:
    """Rows already in memory (JSON arrays, text corpora, hub datasets via engine.data.load)."""

    def __init__(self, rows: list[dict], lines: list[int | None], kind: str, path: Path):
        self._rows, self._lines, self.kind, self.path = rows, lines, kind, path
        self._lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def invalidate(self) -> None:
        pass

    def get(self, i: int, full: bool = False) -> Row:
        line = self._lines[i] if i < len(self._lines) else None
        return Row(i, line, self._rows[i])

    def rows(self, start: int, count: int) -> list[Row]:
        return [self.get(i) for i in range(start, min(start + count, len(self._rows)))]

    def lengths(self, cancelled: Callable[[], bool] = lambda: False) -> np.ndarray:
        if self._lengths is None:
            self._lengths = np.array([len(json.dumps(r, ensure_ascii=False)) for r in self._rows], np.int64)
        return self._lengths
