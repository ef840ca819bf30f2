"""Read any dataset source a batch at a time, with bounded memory, and read pages of
columnar sources (Parquet, saved datasets) without loading them.

`iter_batches` yields the same rows and the same row problems as engine.data.load.load_rows,
a batch of records at a time: JSONL and CSV/TSV are read in binary chunks, Parquet by
record batches, saved datasets through their memory-mapped Arrow files, text corpora a
file at a time. JSON arrays and hub datasets are read whole (a JSON array is one value:
the element walk in load needs the whole text, and such files are rarely large).

Plain Python; numpy and pyarrow are imported inside the functions that need them.
"""
from __future__ import annotations

import csv
import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from engine.data import load as L
from engine.data.errors import DataError

BATCH_ROWS = 20_000
CHUNK = 8 << 20            # bytes read per step from line-based files
CSV_CHUNK = 1 << 20        # CSV: decoded text and its StringIO cost several times the bytes


@dataclass
class Batch:
    start: int                          # source index of rows[0] (unreadable records counted)
    rows: list[dict | None]             # None: the record could not be read (see errors)
    lines: list[int | None]             # 1-based source line per row, where the source has lines
    errors: list[tuple[int, int | None, str]] = field(default_factory=list)  # (row, line, message)
    total: int | None = None            # rows in the source, when known up front
    done_bytes: int = 0
    total_bytes: int = 0


def iter_batches(path: str | Path, *, batch_rows: int = BATCH_ROWS, start: int = 0,
                 cancelled: Callable[[], bool] = lambda: False,
                 text_documents: str = "file") -> Iterator[Batch]:
    """Batches of the source's records in order, from record `start` on. Concatenated, the
    non-None rows are load_rows(path).rows and the errors are its problems. Raises DataError
    for a source that cannot be used at all (possibly after some batches, where the fault is
    found mid-file). Stops quietly once `cancelled()` is true."""
    batch_rows = max(1, int(batch_rows))
    kind, p = source_kind(path)
    if kind == "jsonl":
        gen = _jsonl_records(p)
    elif kind == "csv":
        gen = _csv_records(p, "\t" if p.suffix.lower() == ".tsv" else ",")
    elif kind == "parquet":
        yield from _columnar_batches(ParquetPages(p), batch_rows, start, cancelled)
        return
    elif kind == "hf_saved":
        yield from _columnar_batches(ArrowPages(p), batch_rows, start, cancelled)
        return
    elif kind == "text_dir":
        gen = _text_dir_records(p, text_documents)
    else:  # json, text, hub: one value each, read whole
        gen = _whole_records(p if p is not None else path, text_documents)
    yield from _batched(gen, batch_rows, start, cancelled)


def source_kind(path: str | Path) -> tuple[str, Path | None]:
    """('jsonl' | 'json' | 'csv' | 'parquet' | 'text' | 'text_dir' | 'hf_saved' | 'hub', path),
    decided as load_rows decides; DataError for a missing or unusable source."""
    p = L.resolve_path(path)
    if not p.exists():
        if L._HUB_ID.match(str(path)) and Path(str(path)).suffix.lower() not in L._EXT_KIND:
            return "hub", None
        raise DataError(f"{p}: file not found; check the path (or give a hub id like owner/name)")
    p = p.resolve()
    if p.is_dir():
        if L._has_text_files(p) and not L._is_saved_dataset(p):
            return "text_dir", p
        if not L._is_saved_dataset(p) and L.parquet_shards(p):
            return "parquet", p
        return "hf_saved", p
    head = _head(p)
    kind = L._EXT_KIND.get(p.suffix.lower()) or L._sniff_kind(p, head)
    if kind == "parquet":
        return kind, p
    L._check_bytes(p, head) if p.stat().st_size <= len(head) else _check_head(p, head)
    if kind == "jsonl" and head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"[":
        return "json", p  # one array under a .jsonl name: load reads it as JSON, and says so
    return kind, p


def _head(p: Path, n: int = 1 << 16) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(n)
    except OSError as e:
        raise DataError(f"{p}: cannot read the file ({e.strerror}); check its permissions") from None


def _check_head(p: Path, head: bytes) -> None:
    """load's whole-file checks, from the first bytes of a big file (it is not empty)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{p}: file is UTF-16 encoded; {L._FIX_UTF8}")
    if b"\0" in head.removeprefix(b"\xef\xbb\xbf")[:8192]:
        raise DataError(f"{p}: looks like a binary file, not text; use JSONL, JSON, CSV or Parquet")


# ---------------------------------------------------------------- batching of record streams

# A record stream yields (row | None, line | None, message | None, done_bytes, total_bytes).

def _batched(gen, batch_rows: int, start: int, cancelled, total: int | None = None) -> Iterator[Batch]:
    rows, lines, errors = [], [], []
    first = start
    record = 0
    done = size = 0
    for row, line, msg, done, size in gen:
        if record < start:
            record += 1
            continue
        if not rows and cancelled():
            return
        rows.append(row)
        lines.append(line)
        if msg is not None:
            errors.append((record, line, msg))
        record += 1
        if len(rows) >= batch_rows:
            yield Batch(first, rows, lines, errors, total, done, size)
            first, rows, lines, errors = record, [], [], []
    if rows and not cancelled():
        yield Batch(first, rows, lines, errors, total, done, size)


def _whole_records(path, text_documents: str):
    """JSON arrays, single text files and hub datasets: load_rows, then its rows and problems
    merged back into record order (a problem's row is the record it replaced)."""
    res = L.load_rows(path, text_documents=text_documents)
    probs = sorted(res.problems, key=lambda pr: pr.row)
    k = j = 0
    out = 0
    while k < len(res.rows) or j < len(probs):
        if j < len(probs) and (probs[j].row <= out or k >= len(res.rows)):
            yield None, probs[j].line, probs[j].message, 0, 0
            j += 1
        else:
            yield res.rows[k], res.lines[k] if k < len(res.lines) else None, None, 0, 0
            k += 1
        out += 1


def _text_dir_records(p: Path, documents: str):
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in L.TEXT_SUFFIXES)
    total = sum(f.stat().st_size for f in files)
    done = 0
    for f in files:
        one = L.LoadResult([], [], [], str(p), "text_dir")
        try:
            raw = f.read_bytes().removeprefix(b"\xef\xbb\xbf")
            text = raw.decode("utf-8")
        except OSError as e:
            yield None, None, f"{f.relative_to(p)}: cannot read ({e.strerror})", done, total
            continue
        except UnicodeDecodeError as e:
            yield None, None, (f"{f.relative_to(p)}: not valid UTF-8 at byte {e.start} "
                               f"({L._guess_encoding(raw)}); {L._FIX_UTF8}"), done, total
            continue
        done += len(raw)
        L._text_rows(one, text, documents)
        for r in one.rows:
            yield r, None, None, done, total


# ---------------------------------------------------------------- JSONL

def parse_jsonl_line(bline: bytes, lineno: int) -> tuple[dict | None, str | None]:
    """One non-blank JSONL line as load reads it: (row, None) or (None, problem message)."""
    try:
        s = bline.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        return None, (f"line {lineno}: not valid UTF-8 (byte 0x{bline[e.start]:02x} at col {e.start + 1}; "
                      f"{L._guess_encoding(bline)}); {L._FIX_UTF8}")
    try:
        obj, end = _DECODER.raw_decode(s)
        if s[end:].strip():
            raise json.JSONDecodeError("Extra data after the object", s, end)
        deep = L._too_deep(s, obj)
    except json.JSONDecodeError as e:
        return None, f"line {lineno}: not valid JSON ({e.msg}, col {e.colno})"
    except RecursionError:
        deep = L._DEEP
    if deep:
        return None, f"line {lineno}: {deep}"
    if not isinstance(obj, dict):
        return None, f"line {lineno}: expected a JSON object, got {L._json_type(obj)}"
    return obj, None


_DECODER = json.JSONDecoder()


def _split_lines(p: Path):
    """(1-based line number, line bytes without its break, bytes done, total) for every line,
    split as bytes.splitlines splits (\\n, \\r\\n, \\r), reading the file in chunks."""
    total = p.stat().st_size
    lineno = 1
    tail = b""
    done = 0
    with open(p, "rb") as fh:
        first = True
        while True:
            buf = fh.read(CHUNK)
            eof = not buf
            if first:
                buf = buf.removeprefix(b"\xef\xbb\xbf")
                first = False
            done += len(buf)
            buf = tail + buf
            if eof:
                body, tail = buf, b""
            else:
                cut = buf.rfind(b"\n")
                if cut < 0:  # no \n at all (old Mac endings): cut at a \r that is surely whole
                    cut = buf.rfind(b"\r", 0, len(buf) - 1)
                if cut < 0:
                    tail = buf
                    continue
                body, tail = buf[:cut + 1], buf[cut + 1:]
            for line in body.splitlines():
                yield lineno, line, done, total
                lineno += 1
            if eof:
                return


def _jsonl_records(p: Path):
    seen = False
    for lineno, bline, done, total in _split_lines(p):
        if not bline.strip():
            continue
        seen = True
        row, msg = parse_jsonl_line(bline, lineno)
        yield row, lineno, msg, done, total
    if not seen:
        raise DataError(f"{p}: file is empty; point data.path at a file with rows")


# ---------------------------------------------------------------- CSV / TSV

class CsvLines:
    """Whole lines of a CSV file for csv.reader, decoded a chunk at a time and split as
    io.StringIO(newline='') splits (\\n, \\r\\n, \\r), with the byte offset of each line kept
    (numpy) for the chunks a record still needs. `errors`: 'strict' raises load's DataError
    for bad UTF-8; 'surrogateescape' keeps the bytes for the caller to judge per record."""

    def __init__(self, p: Path, errors: str = "strict"):
        self.path, self.errors = p, errors
        self.total = p.stat().st_size
        self.done = 0                # bytes decoded so far
        self.keep_from = 1           # first line a caller may still ask the offset of
        self._chunks: list[tuple[int, object, int]] = []  # (first line, line starts, end byte)
        self._next_line = 1

    def __iter__(self):
        import itertools

        return itertools.chain.from_iterable(self._texts())

    def _texts(self):
        import numpy as np

        with open(self.path, "rb") as fh:
            base, tail, first = 0, b"", True
            while True:
                buf = fh.read(CSV_CHUNK)
                eof = not buf
                if first:
                    first = False
                    if buf.startswith(b"\xef\xbb\xbf"):
                        buf, base = buf[3:], 3
                buf = tail + buf
                if eof:
                    body, tail = buf, b""
                else:
                    cut = buf.rfind(b"\n")
                    if cut < 0:
                        tail = buf
                        continue
                    body, tail = buf[:cut + 1], buf[cut + 1:]
                if body:
                    try:
                        text = body.decode("utf-8", self.errors)
                    except UnicodeDecodeError as e:
                        line = self._next_line + body.count(b"\n", 0, e.start)
                        col = e.start - (body.rfind(b"\n", 0, e.start) + 1) + 1
                        raise DataError(f"{self.path}: not valid UTF-8 at line {line}, col {col} (byte "
                                        f"0x{body[e.start]:02x}; {L._guess_encoding(body)}); {L._FIX_UTF8}") from None
                    arr = np.frombuffer(body, np.uint8)
                    ends = np.flatnonzero(arr == 10)
                    cr = np.flatnonzero(arr == 13)
                    if len(cr):  # a \r not followed by \n ends a line too
                        nxt = np.append(arr, 0)[cr + 1]
                        ends = np.union1d(ends, cr[nxt != 10])
                    starts = np.concatenate(([0], ends + 1))
                    if starts[-1] == len(body):
                        starts = starts[:-1]
                    self._chunks = [c for c in self._chunks if c[0] + len(c[1]) > self.keep_from]
                    self._chunks.append((self._next_line, starts + base, base + len(body)))
                    self._next_line += len(starts)
                    base += len(body)
                    self.done = base
                    yield io.StringIO(text, newline="")
                if eof:
                    return

    def offsets(self, lines):
        """Byte offsets where the given 1-based lines start (numpy in, numpy out); a line past
        what was read maps to the end of it. Lines before `keep_from` may be forgotten."""
        import numpy as np

        lines = np.asarray(lines, np.int64)
        out = np.full(len(lines), self._chunks[-1][2] if self._chunks else 0, np.int64)
        for first, starts, _ in self._chunks:
            k = lines - first
            m = (k >= 0) & (k < len(starts))
            out[m] = starts[k[m]]
        return out


def csv_records(p: Path, delimiter: str, errors: str = "strict"):
    """The header, then (values, first line, next record's first line, lines) per CSV record
    with csv-module semantics (a quoted field may hold newlines). `lines` (CsvLines) gives
    progress (.done/.total) and byte offsets of lines from `keep_from` on; a caller that does
    not need offsets of past lines moves keep_from along so memory stays bounded."""
    csv.field_size_limit(1 << 30)
    feed = CsvLines(p, errors)
    reader = csv.reader(iter(feed), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{p}: CSV has no header row; put column names on the first line")
        prev = reader.line_num
        yield [h.strip() for h in header], 1, prev + 1, feed
        for values in reader:
            first = prev + 1  # a record begins on the line after the previous record's last line
            prev = reader.line_num
            yield values, first, prev + 1, feed
    except csv.Error as e:
        raise DataError(f"{p}: not valid CSV near line {reader.line_num} ({e}); fix the quoting") from None


def csv_row(header: list[str], values: list[str], lineno: int) -> tuple[dict | None, str | None]:
    """A CSV record as load reads it; (None, None) for a blank record (skipped, not counted)."""
    if not values or not "".join(values).strip():
        return None, None
    if len(values) != len(header):
        what = "more" if len(values) > len(header) else "fewer"
        return None, (f"line {lineno}: {len(values)} fields, {what} than the {len(header)} columns of the "
                      "header; quote fields that contain the delimiter")
    return dict(zip(header, values)), None


def _csv_records(p: Path, delimiter: str):
    recs = csv_records(p, delimiter)
    header = next(recs)[0]
    for values, lineno, _, feed in recs:
        feed.keep_from = lineno
        row, msg = csv_row(header, values, lineno)
        if row is None and msg is None:
            continue
        yield row, lineno, msg, feed.done, feed.total


# ---------------------------------------------------------------- columnar sources, paged

PIECE = 8192               # rows decoded at a time for random access to a Parquet row group
SCAN_ROWS = 16_384         # rows per batch of a sequential column scan (bounded memory)


class _Pages:
    """Random access to a columnar source: row counts per piece known up front from metadata,
    pieces decoded to Arrow on demand and kept in a small LRU cache, rows turned into dicts
    only when asked; `scan` reads everything in order with bounded memory."""

    CACHE = 8

    def __init__(self):
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._cache: OrderedDict[int, object] = OrderedDict()
        self.notes: list[str] = []
        self.bounds: list[int] = [0]  # cumulative row count at the start of each piece

    def __len__(self) -> int:
        return self.bounds[-1]

    @property
    def total_bytes(self) -> int:
        return 0

    def _read_piece(self, k: int):
        raise NotImplementedError

    def scan(self, start: int = 0, batch_rows: int = SCAN_ROWS):
        """(first row, Arrow table or record batch) in order from row `start`."""
        raise NotImplementedError

    def piece(self, k: int):
        with self._lock:
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
        with self._io:
            t = self._read_piece(k)
        with self._lock:
            self._cache[k] = t
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        return t

    def table(self, a: int, b: int):
        """Rows a..b (end excluded) as one Arrow table, reading only the pieces covering them."""
        import bisect

        a, b = max(0, a), min(b, len(self))
        parts = []
        k = bisect.bisect_right(self.bounds, a) - 1
        while a < b and k < len(self.bounds) - 1:
            lo, hi = self.bounds[k], self.bounds[k + 1]
            if hi > a:
                t = self.piece(k)
                parts.append(t.slice(a - lo, min(b, hi) - a))
                a = min(b, hi)
            k += 1
        return _concat(parts) if parts else None

    def rows(self, a: int, b: int) -> list[dict]:
        t = self.table(a, b)
        return [] if t is None else self._to_rows(t)

    def _to_rows(self, t) -> list[dict]:
        return t.to_pylist()

    def batches(self, start: int, batch_rows: int):
        """(first row, table of exactly batch_rows rows, the last one shorter) from `start`."""
        buf, have, first = [], 0, start
        for row, t in self.scan(start, max(batch_rows, 1024)):
            buf.append(t)
            have += len(t)
            while have >= batch_rows:
                whole = _concat(buf)
                yield first, whole.slice(0, batch_rows)
                rest = whole.slice(batch_rows)
                first += batch_rows
                buf, have = ([rest] if len(rest) else []), len(rest)
        if have:
            yield first, _concat(buf)

    def byte_lengths(self, cancelled: Callable[[], bool] = lambda: False):
        """int64 numpy array: bytes of each row's text (strings and binaries, nested ones too;
        8 for a number), from one sequential column scan. None if cancelled."""
        import numpy as np
        import pyarrow as pa

        out = np.zeros(len(self), np.int64)
        for row, t in self.scan(0):
            if cancelled():
                return None
            for col in t.columns:
                out[row:row + len(t)] += _arrow_lengths(col)
        pa.default_memory_pool().release_unused()
        return out


def _concat(parts):
    import pyarrow as pa

    parts = [pa.Table.from_batches([x]) if isinstance(x, pa.RecordBatch) else x for x in parts]
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="default")
    except (TypeError, pa.ArrowInvalid):
        return pa.concat_tables(parts)


def _arrow_lengths(arr):
    """Per-row byte size of an Arrow array's values, nested types summed into their rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    ty = arr.type
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(ty) or pa.types.is_large_string(ty) or pa.types.is_binary(ty) \
            or pa.types.is_large_binary(ty):
        return pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_struct(ty):
        out = np.zeros(n, np.int64)
        for child in arr.flatten():  # children cut to the slice (and its nulls)
            out += _arrow_lengths(child)
        return out
    if pa.types.is_list(ty) or pa.types.is_large_list(ty):
        flat = arr.flatten()
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        inner = _arrow_lengths(flat) if len(flat) else np.zeros(0, np.int64)
        return np.bincount(parents, weights=inner, minlength=n).astype(np.int64)
    if pa.types.is_null(ty):
        return np.zeros(n, np.int64)
    return np.full(n, 8, np.int64)


class ParquetPages(_Pages):
    """A Parquet file, or a directory of Parquet shards. A page is read from the PIECE-row
    slice of its row group (decoded in order, resuming where the last read stopped), so a
    huge row group never has to be held whole."""

    def __init__(self, path: str | Path):
        super().__init__()
        import pyarrow.parquet as pq

        self.path = Path(path)
        self._paths = L.parquet_shards(self.path) if self.path.is_dir() else [self.path]
        self._files = []            # open ParquetFile per shard
        self._pieces = []           # (file no, row group, piece no within the group)
        self._group_rows = []       # per file: rows of each row group
        self._bytes = 0
        for f in self._paths:
            if f.stat().st_size == 0:
                raise DataError(f"{f}: file is empty; point data.path at a file with rows")
            try:
                pf = pq.ParquetFile(f, pre_buffer=False)
            except Exception as e:  # pyarrow raises several types for corrupt files
                raise DataError(f"{f}: not a readable Parquet file ({e}); re-export it or use JSONL") from None
            self._bytes += f.stat().st_size
            fno = len(self._files)
            self._files.append(pf)
            md = pf.metadata
            groups = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
            self._group_rows.append(groups)
            for g, n in enumerate(groups):
                for j in range(0, n, PIECE):
                    self._pieces.append((fno, g, j // PIECE))
                    self.bounds.append(self.bounds[-1] + min(PIECE, n - j))
        self._cursor = None         # (file no, row group, next piece no, batch iterator)
        if len(self._paths) > 1:
            self.notes.append(f"{len(self._paths)} Parquet shards")

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def _read_piece(self, k: int):
        import pyarrow as pa

        fno, g, j = self._pieces[k]
        want = self.bounds[k + 1] - self.bounds[k]
        try:
            cur = self._cursor
            if cur is None or cur[0] != fno or cur[1] != g or cur[2] > j:
                cur = [fno, g, 0, self._files[fno].iter_batches(batch_size=PIECE, row_groups=[g],
                                                                 use_pandas_metadata=False)]
            while cur[2] < j:
                next(cur[3])
                cur[2] += 1
            batch = next(cur[3])
            cur[2] += 1
            self._cursor = cur
            if len(batch) == want:
                return pa.Table.from_batches([batch])
            self._cursor = None  # the reader cut the group otherwise: slice the whole group
            return self._files[fno].read_row_group(g).slice(j * PIECE, want)
        except StopIteration:
            self._cursor = None
            return self._files[fno].read_row_group(g).slice(j * PIECE, want)
        except Exception as e:
            self._cursor = None
            raise DataError(f"{self.path}: not a readable Parquet file ({e}); re-export it or use JSONL") from None

    def scan(self, start: int = 0, batch_rows: int = SCAN_ROWS):
        import pyarrow.parquet as pq

        row = 0
        for f, groups in zip(self._paths, self._group_rows):
            todo = []
            for g, n in enumerate(groups):
                if not todo and row + n <= start:
                    row += n
                else:
                    todo.append(g)
            if not todo:
                continue
            try:
                pf = pq.ParquetFile(f, pre_buffer=False)  # its own reader: pages may be read meanwhile
                for batch in pf.iter_batches(batch_size=batch_rows, row_groups=todo, use_pandas_metadata=False):
                    if row < start:
                        skip = min(len(batch), start - row)
                        batch, row = batch.slice(skip), row + skip
                        if not len(batch):
                            continue
                    yield row, batch
                    row += len(batch)
            except DataError:
                raise
            except Exception as e:
                raise DataError(f"{f}: not a readable Parquet file ({e}); re-export it or use JSONL") from None


class ArrowPages(_Pages):
    """A dataset saved with save_to_disk: its Arrow stream files memory-mapped and sliced.
    A DatasetDict gives its 'train' split (else the first), as load does."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        if not L._is_saved_dataset(self.path):
            raise DataError(f"{self.path}: directory is not a dataset saved with save_to_disk (no "
                            f"{' / '.join(L._SAVED_MARKERS)}) and holds no .txt/.md files; "
                            "point data.path at a data file instead")
        d = self.path
        if (d / "dataset_dict.json").exists():
            try:
                splits = json.loads((d / "dataset_dict.json").read_text())["splits"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DataError(f"{d}: cannot open the saved dataset ({e}); re-save it with save_to_disk") from None
            if not splits:
                raise DataError(f"{d}: the saved DatasetDict has no splits; save a dataset with rows")
            split = "train" if "train" in splits else splits[0]
            self.notes.append(f"split '{split}' of {', '.join(splits)}")
            d = d / split
        self._dir = d
        self._tables = []  # memory-mapped Arrow tables, one per data file
        self._indices = None
        try:
            self._open(d)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.path}: cannot open the saved dataset ({e}); re-save it with save_to_disk") from None

    def _open(self, d: Path) -> None:
        import pyarrow as pa

        state = json.loads((d / "state.json").read_text())
        if state.get("_indices_data_files") or (d / "indices.arrow").exists():
            self._indices = True  # a selection mapping: let datasets resolve it
        for f in state.get("_data_files", []):
            src = pa.memory_map(str(d / f["filename"]))
            try:
                t = pa.ipc.open_stream(src).read_all()
            except pa.ArrowInvalid:
                t = pa.ipc.open_file(src).read_all()
            self._tables.append(t)
            self.bounds.append(self.bounds[-1] + t.num_rows)
        if self._indices:
            import datasets

            self._ds = datasets.load_from_disk(str(d))
            self._tables = []
            self.bounds = [0, len(self._ds)]

    def _read_piece(self, k: int):
        if self._indices:
            return self._ds.with_format("arrow")[:]
        return self._tables[k]  # memory-mapped: slicing copies nothing

    def scan(self, start: int = 0, batch_rows: int = SCAN_ROWS):
        for k in range(len(self.bounds) - 1):
            lo, hi = self.bounds[k], self.bounds[k + 1]
            if hi <= start:
                continue
            t = self.piece(k)
            for a in range(max(start, lo), hi, batch_rows):
                yield a, t.slice(a - lo, min(batch_rows, hi - a))


def _columnar_batches(pages: _Pages, batch_rows: int, start: int, cancelled) -> Iterator[Batch]:
    n = len(pages)
    for a, t in pages.batches(max(0, start), batch_rows):
        if cancelled():
            return
        rows = pages._to_rows(t)
        b = a + len(rows)
        yield Batch(a, rows, [None] * len(rows), [], n, int(pages.total_bytes * b / max(1, n)), pages.total_bytes)


def open_pages(path: str | Path) -> _Pages:
    """ParquetPages or ArrowPages for a columnar source; DataError otherwise."""
    kind, p = source_kind(path)
    if kind == "parquet":
        return ParquetPages(p)
    if kind == "hf_saved":
        return ArrowPages(p)
    raise DataError(f"{path}: not a Parquet file or saved dataset")
