"""Read a dataset source into a list of row dicts, keeping every problem a user can fix.

Sources: JSONL, JSON (array, or an object holding one list), CSV, Parquet, plain text
(.txt/.md: one document per file or per blank-line block), a directory written by
datasets' save_to_disk or holding .txt/.md files, a hub id ("owner/name"), or "demo".
A split in HF syntax (`train[:20%]`, `train[100:200]`, `train+test`) selects rows. A bad row becomes
a RowProblem (with its line number where the source has lines) and the rest still loads;
a source that cannot be used at all raises DataError. Files are only ever read.

Row numbers in problems count records in the source (bad ones included); `lines` gives
the 1-based line of each loaded row for line-based sources and JSON arrays.
"""
from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.errors import DataError, RowProblem

KINDS = ("jsonl", "json", "csv", "parquet", "text", "hf_saved", "hub")
_EXT_KIND = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
             ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".md": "text", ".markdown": "text"}
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
TEXT_DOCUMENTS = ("file", "blank_line")
# Deeper rows are refused: no real dataset nests this far, and recursive readers would overflow.
MAX_DEPTH = 100
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Keys that usually hold the rows when a JSON file is an object rather than an array.
_ROW_LIST_KEYS = ("data", "rows", "train", "examples", "records", "items", "instances")
_ROW_FIELDS = {"messages", "conversations", "chosen", "rejected", "history"}
_FIX_UTF8 = "re-save the file as UTF-8"


@dataclass
class LoadResult:
    rows: list[dict]
    lines: list[int | None]
    problems: list[RowProblem]
    source: str
    kind: str
    notes: list[str] = field(default_factory=list)  # non-fatal remarks about the whole source


# ---------------------------------------------------------------- public API

def resolve_path(path: str | Path) -> str | Path:
    """'demo' -> the bundled sample dataset; anything else unchanged (as a Path if local)."""
    if str(path) == "demo":
        from engine.demo import demo_dataset_path  # lazy: the demo module may build files

        return Path(demo_dataset_path())
    return Path(path).expanduser()


def load_rows(path: str | Path, limit: int | None = None, *, split: str | None = None,
              text_documents: str = "file") -> LoadResult:
    """Rows of one source. `split`: HF split syntax; a file is one split named 'train'.
    `text_documents`: how .txt/.md files become rows, 'file' (one each) or 'blank_line'."""
    parts = parse_split(split) if split else None
    if parts is not None:
        limit = None  # the selection needs the row count first
    p = resolve_path(path)
    if not p.exists():
        if _HUB_ID.match(str(path)) and not Path(str(path)).suffix.lower() in _EXT_KIND:
            return _load_hub(str(path), limit, split)
        raise DataError(f"{p}: file not found; check the path (or give a hub id like owner/name)")
    p = p.resolve()
    if p.is_dir():
        if _has_text_files(p) and not _is_saved_dataset(p):
            return _select(_load_text_dir(p, text_documents), parts, p)
        if not _is_saved_dataset(p) and parquet_shards(p):
            return _select(_load_parquet_dir(p, limit), parts, p)
        return _load_saved_dir(p, limit, parts)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read the file ({e.strerror}); check its permissions") from None
    kind = _EXT_KIND.get(p.suffix.lower()) or _sniff_kind(p, raw)
    if kind == "parquet":
        return _select(_load_parquet(p, raw, limit), parts, p)
    raw = _check_bytes(p, raw)
    if kind == "jsonl":
        return _select(_load_jsonl(p, raw, limit), parts, p)
    text = _decode_text(p, raw)
    if kind == "json":
        return _select(_load_json(p, text, limit), parts, p)
    if kind == "text":
        return _select(_load_text(p, text, text_documents), parts, p)
    return _select(_load_csv(p, text, limit, delimiter="\t" if p.suffix.lower() == ".tsv" else ","), parts, p)


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes; for a directory, of every file (relative name + bytes) in sorted order."""
    p = resolve_path(path)
    h = hashlib.sha256()
    if not p.exists():  # a hub id: the name is all there is to hash locally
        h.update(f"hub:{path}".encode())
        return h.hexdigest()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            _hash_file(h, f)
            h.update(b"\0")
    else:
        _hash_file(h, p)
    return h.hexdigest()


def _hash_file(h, f: Path) -> None:
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


# ---------------------------------------------------------------- bytes -> text

def _sniff_kind(p: Path, raw: bytes) -> str:
    if raw[:4] == b"PAR1":
        return "parquet"
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "jsonl"
    if not raw.strip():
        raise DataError(f"{p}: file is empty; point data.path at a file with rows")
    raise DataError(f"{p}: unknown file type '{p.suffix or '(none)'}'; use .jsonl, .json, .csv or .parquet")


def _check_bytes(p: Path, raw: bytes) -> bytes:
    """Refuse empty, binary and UTF-16 files; return the bytes without a UTF-8 BOM."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{p}: file is UTF-16 encoded; {_FIX_UTF8}")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise DataError(f"{p}: file is empty; point data.path at a file with rows")
    if b"\0" in raw[:8192]:
        raise DataError(f"{p}: looks like a binary file, not text; use JSONL, JSON, CSV or Parquet")
    return raw


def _decode_text(p: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{p}: not valid UTF-8 at line {line}, col {col} (byte 0x{raw[e.start]:02x}; "
                        f"{_guess_encoding(raw)}); {_FIX_UTF8}") from None


def _guess_encoding(raw: bytes) -> str:
    try:
        raw.decode("cp1252")
        return "probably Windows-1252/Latin-1"
    except UnicodeDecodeError:
        return "an unknown encoding"


# ---------------------------------------------------------------- JSONL

def _load_jsonl(p: Path, raw: bytes, limit: int | None) -> LoadResult:
    if raw.lstrip(b" \t\r\n")[:1] == b"[":
        # One JSON array saved under a .jsonl name: read it as the array it is, and say so,
        # rather than report every line of it as a bad record.
        res = _load_json(p, _decode_text(p, raw), limit)
        res.kind = "json"
        res.notes.insert(0, "the .jsonl file holds one JSON array, not one object per line; read it as a "
                            "JSON array (rename it .json, or write one object per line)")
        return res
    res = LoadResult([], [], [], str(p), "jsonl")
    record = 0
    decoder = json.JSONDecoder()
    # Split the bytes, not the text, so one badly encoded line is one problem, not a dead file.
    for lineno, bline in enumerate(raw.splitlines(), start=1):  # handles \n, \r\n and \r
        if not bline.strip():
            continue
        if limit is not None and len(res.rows) >= limit:
            break
        try:
            s = bline.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            res.problems.append(RowProblem(record, lineno, f"line {lineno}: not valid UTF-8 (byte "
                                                           f"0x{bline[e.start]:02x} at col {e.start + 1}; "
                                                           f"{_guess_encoding(bline)}); {_FIX_UTF8}"))
            record += 1
            continue
        try:
            obj, end = decoder.raw_decode(s)
            if s[end:].strip():
                raise json.JSONDecodeError("Extra data after the object", s, end)
            deep = _too_deep(s, obj)
        except json.JSONDecodeError as e:
            res.problems.append(RowProblem(record, lineno, f"line {lineno}: not valid JSON ({e.msg}, col {e.colno})"))
            record += 1
            continue
        except RecursionError:
            deep = _DEEP
        if deep:
            res.problems.append(RowProblem(record, lineno, f"line {lineno}: {deep}"))
        elif not isinstance(obj, dict):
            res.problems.append(RowProblem(record, lineno, f"line {lineno}: expected a JSON object, "
                                                           f"got {_json_type(obj)}"))
        else:
            res.rows.append(obj)
            res.lines.append(lineno)
        record += 1
    return res


_DEEP = (f"nested more than {MAX_DEPTH} levels deep; no dataset row needs this, so it was skipped "
         "(flatten the record)")


def _too_deep(s: str, obj) -> str | None:
    """The depth problem of a decoded record, or None. Only records with many brackets are
    walked (iteratively), so ordinary rows cost one count of the line."""
    if s.count("[") + s.count("{") <= MAX_DEPTH:
        return None
    stack = [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            return _DEEP
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return None


def _json_type(obj) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false",
            type(None): "null"}.get(type(obj), type(obj).__name__)


# ---------------------------------------------------------------- JSON

_WS = re.compile(r"[ \t\r\n]*")


def _load_json(p: Path, text: str, limit: int | None) -> LoadResult:
    res = LoadResult([], [], [], str(p), "json")
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    start = _WS.match(text, 0).end()
    if text.startswith("{", start):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: not valid JSON at line {e.lineno}, col {e.colno} ({e.msg}); "
                            "fix the file or save it as JSONL") from None
        except RecursionError:
            raise DataError(f"{p}: {_DEEP.replace('it was skipped', 'the file cannot be used')}") from None
        key, rows = _rows_from_object(p, obj)
        if key is not None:
            res.notes.append(f"rows read from the '{key}' field")
        for i, r in enumerate(rows if limit is None else rows[:limit]):
            if isinstance(r, dict):
                res.rows.append(r)
                res.lines.append(None)
            else:
                res.problems.append(RowProblem(i, None, f"row {i}: expected a JSON object, got {_json_type(r)}"))
        return res
    if not text.startswith("[", start):
        raise DataError(f"{p}: JSON must be an array of objects or an object holding one; "
                        "fix the file or save it as JSONL")
    # Walk the array element by element so a syntax error keeps the rows before it.
    decoder = json.JSONDecoder()
    pos = _WS.match(text, start + 1).end()
    record = 0
    if text.startswith("]", pos):
        return res
    while True:
        if limit is not None and len(res.rows) >= limit:
            return res
        try:
            obj, end = decoder.raw_decode(text, pos)
            deep = _too_deep(text[pos:end], obj) if end - pos > MAX_DEPTH else None
        except json.JSONDecodeError as e:
            _salvage_problem(res, record, e)
            return res
        except RecursionError:
            ln = line_of(pos)
            res.problems.append(RowProblem(record, ln, f"line {ln}: {_DEEP}; the {len(res.rows)} rows before it "
                                                       "were loaded and the rest of the file was skipped"))
            return res
        if deep:
            ln = line_of(pos)
            res.problems.append(RowProblem(record, ln, f"line {ln}: {deep}"))
        elif isinstance(obj, dict):
            res.rows.append(obj)
            res.lines.append(line_of(pos))
        else:
            ln = line_of(pos)
            res.problems.append(RowProblem(record, ln, f"line {ln}: expected a JSON object, got {_json_type(obj)}"))
        record += 1
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()
            continue
        if text.startswith("]", pos):
            if text[pos + 1:].strip():
                ln = line_of(pos + 1)
                res.problems.append(RowProblem(record, ln, f"line {ln}: extra text after the closing ']' "
                                                           "was ignored"))
            return res
        err = json.JSONDecodeError("Expecting ',' delimiter" if pos < len(text) else "Unexpected end of file",
                                   text, pos)
        _salvage_problem(res, record, err)
        return res


def _salvage_problem(res: LoadResult, record: int, e: json.JSONDecodeError) -> None:
    res.problems.append(RowProblem(
        record, e.lineno,
        f"line {e.lineno}: not valid JSON ({e.msg}, col {e.colno}); the {len(res.rows)} rows before it were "
        "loaded and the rest of the file was skipped; fix the file to use all rows"))


def _rows_from_object(p: Path, obj: dict) -> tuple[str | None, list]:
    lists = {k: v for k, v in obj.items() if isinstance(v, list) and k not in _ROW_FIELDS}
    for k in _ROW_LIST_KEYS:
        if k in lists:
            return k, lists[k]
    if len(lists) == 1:
        k, v = next(iter(lists.items()))
        if v and all(isinstance(x, dict) for x in v[:10]):
            return k, v
    if len(lists) > 1:
        raise DataError(f"{p}: JSON object has several list fields ({', '.join(lists)}); "
                        "keep the rows in one array or save them as JSONL")
    return None, [obj]  # a single row written as one object


# ---------------------------------------------------------------- CSV

def _load_csv(p: Path, text: str, limit: int | None, delimiter: str) -> LoadResult:
    res = LoadResult([], [], [], str(p), "csv")
    try:
        csv.field_size_limit(1 << 30)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{p}: CSV has no header row; put column names on the first line")
        header = [h.strip() for h in header]
        prev_end = reader.line_num
        record = 0
        for values in reader:
            lineno = prev_end + 1
            prev_end = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if limit is not None and len(res.rows) >= limit:
                break
            if len(values) != len(header):
                what = "more" if len(values) > len(header) else "fewer"
                res.problems.append(RowProblem(record, lineno, f"line {lineno}: {len(values)} fields, {what} than "
                                                               f"the {len(header)} columns of the header; "
                                                               "quote fields that contain the delimiter"))
            else:
                res.rows.append(dict(zip(header, values)))
                res.lines.append(lineno)
            record += 1
    except csv.Error as e:
        raise DataError(f"{p}: not valid CSV near line {reader.line_num} ({e}); fix the quoting") from None
    return res


# ---------------------------------------------------------------- plain text corpora

def _blocks(text: str) -> list[tuple[str, int]]:
    """(block, 1-based first line) for each blank-line-separated block of text."""
    out, cur, start = [], [], 0
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not cur:
                start = n
            cur.append(line)
        elif cur:
            out.append(("\n".join(cur), start))
            cur = []
    if cur:
        out.append(("\n".join(cur), start))
    return out


def _text_rows(res: LoadResult, text: str, documents: str) -> None:
    if documents not in TEXT_DOCUMENTS:
        raise DataError(f"data.text_documents: {documents!r} is not allowed; use 'file' or 'blank_line'")
    if documents == "file":
        if text.strip():
            res.rows.append({"text": text})
            res.lines.append(1 if res.kind == "text" else None)
        return
    for block, line in _blocks(text):
        res.rows.append({"text": block})
        res.lines.append(line if res.kind == "text" else None)


def _load_text(p: Path, text: str, documents: str) -> LoadResult:
    res = LoadResult([], [], [], str(p), "text")
    _text_rows(res, text, documents)
    res.notes.append("plain text: one document per file" if documents == "file"
                     else f"plain text: {len(res.rows)} documents, one per blank-line block")
    return res


def _has_text_files(p: Path) -> bool:
    return any(f.suffix.lower() in TEXT_SUFFIXES for f in p.rglob("*") if f.is_file())


def _load_text_dir(p: Path, documents: str) -> LoadResult:
    res = LoadResult([], [], [], str(p), "text_dir")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
    for n, f in enumerate(files):
        try:
            raw = f.read_bytes().removeprefix(b"\xef\xbb\xbf")
            text = raw.decode("utf-8")
        except OSError as e:
            res.problems.append(RowProblem(n, None, f"{f.relative_to(p)}: cannot read ({e.strerror})"))
            continue
        except UnicodeDecodeError as e:
            res.problems.append(RowProblem(n, None, f"{f.relative_to(p)}: not valid UTF-8 at byte {e.start} "
                                                    f"({_guess_encoding(raw)}); {_FIX_UTF8}"))
            continue
        _text_rows(res, text, documents)
    res.notes.append(f"plain text: {len(res.rows)} documents from {len(files)} .txt/.md files"
                     + (", one per blank-line block" if documents == "blank_line" else ""))
    return res


# ---------------------------------------------------------------- splits (HF syntax)

_SPLIT_PART = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def parse_split(spec: str) -> list[tuple[str, str | None, str | None]]:
    """'train[:20%]+test' -> [("train", None, "20%"), ("test", None, None)]; DataError if malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"split {spec!r}: give a split name such as train, train[:20%] or train[100:200]")
    out = []
    for part in spec.split("+"):
        m = _SPLIT_PART.match(part)
        if not m:
            raise DataError(f"split {spec!r}: {part.strip()!r} is not a split; use NAME or NAME[start:end] "
                            "with row numbers or percentages, e.g. train[:20%], train[100:200], train[-10%:]")
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


def _bound(tok: str | None, n: int, default: int) -> int:
    if tok is None:
        return default
    if tok.endswith("%"):
        v = int(tok[:-1])
        if not -100 <= v <= 100:
            raise DataError(f"split bound {tok}: a percentage is between -100% and 100%")
        v = int(round(v * n / 100.0))  # datasets' "closest" rounding
    else:
        v = int(tok)
    if v < 0:
        v += n
    return max(0, min(n, v))


def split_range(start: str | None, end: str | None, n: int) -> range:
    """Row indices a [start:end] selection takes from n rows, as datasets computes them."""
    return range(_bound(start, n, 0), _bound(end, n, n))


def split_name(parts) -> str:
    return "+".join(n + (f"[{a or ''}:{b or ''}]" if a or b else "") for n, a, b in parts)


def _select(res: LoadResult, parts, p: Path) -> LoadResult:
    """A file is one split named 'train'; apply the slices to its rows."""
    if parts is None:
        return res
    bad = sorted({name for name, _, _ in parts if name != "train"})
    if bad:
        raise DataError(f"{p}: split '{bad[0]}' does not exist; a data file is one split named 'train' "
                        "(use train[...] to take part of it)")
    rows, lines, keep = [], [], set()
    for _, a, b in parts:
        for i in split_range(a, b, len(res.rows)):
            rows.append(res.rows[i])
            lines.append(res.lines[i] if i < len(res.lines) else None)
            if lines[-1] is not None:
                keep.add(lines[-1])
    lo, hi = (min(keep), max(keep)) if keep else (None, None)
    res.problems = [pr for pr in res.problems if pr.line is not None and lo is not None and lo <= pr.line <= hi]
    res.notes.append(f"split {split_name(parts)}: {len(rows)} of {len(res.rows)} rows")
    res.rows, res.lines = rows, lines
    return res


# ---------------------------------------------------------------- Parquet, saved datasets, hub

def _load_parquet(p: Path, raw: bytes, limit: int | None) -> LoadResult:
    import pyarrow.parquet as pq

    if not raw:
        raise DataError(f"{p}: file is empty; point data.path at a file with rows")
    try:
        pf = pq.ParquetFile(io.BytesIO(raw))
        rows: list[dict] = []
        for batch in pf.iter_batches(batch_size=10_000):
            rows.extend(batch.to_pylist())
            if limit is not None and len(rows) >= limit:
                rows = rows[:limit]
                break
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{p}: not a readable Parquet file ({e}); re-export it or use JSONL") from None
    return LoadResult(rows, [None] * len(rows), [], str(p), "parquet")


def parquet_shards(p: Path) -> list[Path]:
    """The Parquet files under a directory of shards, in the one order every reader uses."""
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in (".parquet", ".pq"))


def _load_parquet_dir(p: Path, limit: int | None) -> LoadResult:
    rows: list[dict] = []
    for f in parquet_shards(p):
        try:
            raw = f.read_bytes()
        except OSError as e:
            raise DataError(f"{f}: cannot read the file ({e.strerror}); check its permissions") from None
        rows += _load_parquet(f, raw, None if limit is None else limit - len(rows)).rows
        if limit is not None and len(rows) >= limit:
            break
    return LoadResult(rows, [None] * len(rows), [], str(p), "parquet")


_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def _is_saved_dataset(p: Path) -> bool:
    return any((p / m).exists() for m in _SAVED_MARKERS)


def _load_saved_dir(p: Path, limit: int | None, parts=None) -> LoadResult:
    if not _is_saved_dataset(p):
        raise DataError(f"{p}: directory is not a dataset saved with save_to_disk (no "
                        f"{' / '.join(_SAVED_MARKERS)}) and holds no .txt/.md files; "
                        "point data.path at a data file instead")
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"{p}: cannot open the saved dataset ({e}); re-save it with save_to_disk") from None
    notes = []
    if parts is not None:
        have = list(ds) if isinstance(ds, datasets.DatasetDict) else ["train"]
        missing = sorted({name for name, _, _ in parts if name not in have})
        if missing:
            raise DataError(f"{p}: split '{missing[0]}' does not exist; this dataset has {', '.join(have)}")
        rows: list[dict] = []
        for name, a, b in parts:
            one = ds[name] if isinstance(ds, datasets.DatasetDict) else ds
            r = split_range(a, b, len(one))
            rows += one.select(r).to_list() if len(r) else []
        notes.append(f"split {split_name(parts)} of {', '.join(have)}: {len(rows)} rows")
        return LoadResult(rows, [None] * len(rows), [], str(p), "hf_saved", notes)
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else next(iter(ds), None)
        if split is None:
            raise DataError(f"{p}: the saved DatasetDict has no splits; save a dataset with rows")
        notes.append(f"split '{split}' of {', '.join(ds)}")
        ds = ds[split]
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    rows = ds.to_list()
    return LoadResult(rows, [None] * len(rows), [], str(p), "hf_saved", notes)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine gets an answer in seconds rather than after retries."""
    import os
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(name: str, limit: int | None, split: str | None = None) -> LoadResult:
    import os

    offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes")
                  for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline and not _hub_reachable():
        raise DataError(f"{name}: not a local file, and the hub is unreachable from this machine; "
                        "pass a local file (or set HF_HUB_OFFLINE=1 to use a cached copy)")
    try:
        import datasets

        split = split or ("train" if limit is None else f"train[:{limit}]")
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{name}: not a local file, and the hub dataset could not be loaded ({reason}); "
                        "the hub may be unreachable: pass a local file instead") from None
    rows = ds.to_list()
    return LoadResult(rows, [None] * len(rows), [], name, "hub")
