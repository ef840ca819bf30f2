"""Token statistics over every row of a dataset, with the real tokenizer and the engine's
own masking path (normalise -> plan_row -> tokenize_plans), cached per dataset version
and tokenizer.

Per usable row it keeps: the length of its longest training example as rendered by the
chat template (before any cut), its trained tokens (labels != -100, over all of the
row's examples, before and after the max_seq_len cut) and whether the cut drops trained
tokens; per example the length, for the packing estimate. Unusable rows are counted by
reason.

Rendering (Jinja) is Python and holds the GIL; the fast tokenizer's batch encode is Rust
and does not, so a batch is encoded on a second thread while the next batch is planned.
Past POOL_AFTER rows, batches go to worker processes (one per core, spawned: the caller
may be a threaded app), which run the same pipeline; results are merged in row order.
Rows are read a batch at a time (engine.data.paged.iter_batches), so memory stays bounded
by the per-row arrays. Results are cached under $FTWB_CACHE_DIR/token-stats as one small
.npz, keyed by the file's content hash, the tokenizer, its chat template and the settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.data.errors import DataError, RowError

CODE_VERSION = "stats-1"   # bump when the figures for the same inputs change
BATCH = 1000               # rows planned, then encoded, at a time
CANCEL_EVERY = 128         # rows planned between cancellation checks
POOL_AFTER = 50_000        # rows planned in this process before worker processes (seconds to start) pay off
UNREADABLE = "the record could not be read"


class StatsCancelled(Exception):
    """Raised out of compute/file_stats once `cancelled()` turns true."""


@dataclass
class Settings:
    fmt: str
    max_seq_len: int
    train_on: str = "assistant"
    turn_policy: str = "auto"
    columns: dict = field(default_factory=dict)   # data.columns / data.roles mapping, as in the config
    roles: dict = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.fmt, self.max_seq_len, self.train_on, self.turn_policy, self.columns, self.roles],
                          sort_keys=True)


@dataclass
class TokenStats:
    """Figures over the rows seen so far (`complete` once every row is in)."""
    max_seq_len: int
    rows: int = 0                       # records seen, unreadable ones included
    total: int | None = None            # records in the source (or in the sample), when known
    sample: int | None = None           # rows asked for, when a sample was asked for
    unusable: dict[str, int] = field(default_factory=dict)   # reason -> rows
    complete: bool = False
    cache: str = "off"                  # hit / miss / off
    seconds: float = 0.0
    done_bytes: int = 0                 # of the source read so far, where it is a file
    total_bytes: int = 0
    read_rows: int = 0                  # records read from the source so far (ahead of `rows`)
    _len: array = field(default_factory=lambda: array("i"))       # per usable row
    _trained: array = field(default_factory=lambda: array("i"))
    _trained_kept: array = field(default_factory=lambda: array("i"))
    _cut: array = field(default_factory=lambda: array("b"))
    _row: array = field(default_factory=lambda: array("q"))       # source index of each usable row
    _ex_len: array = field(default_factory=lambda: array("i"))    # per training example
    _packing: float | None = None

    # ---------------------------------------------------------------- arrays
    def _np(self, name: str, dtype):
        import numpy as np

        a = getattr(self, name)
        return np.frombuffer(a, dtype=dtype).copy() if isinstance(a, array) else a

    @property
    def lengths(self):
        import numpy as np
        return self._np("_len", np.int32)

    @property
    def trained(self):
        import numpy as np
        return self._np("_trained", np.int32)

    @property
    def trained_kept(self):
        import numpy as np
        return self._np("_trained_kept", np.int32)

    @property
    def cut(self):
        import numpy as np
        return self._np("_cut", np.int8).astype(bool)

    @property
    def row_index(self):
        import numpy as np
        return self._np("_row", np.int64)

    @property
    def example_lengths(self):
        import numpy as np
        return self._np("_ex_len", np.int32)

    # ---------------------------------------------------------------- figures
    @property
    def usable(self) -> int:
        return len(self._len)

    @property
    def unusable_rows(self) -> int:
        return sum(self.unusable.values())

    @property
    def overlong(self) -> int:
        return int((self.lengths > self.max_seq_len).sum()) if self.usable else 0

    @property
    def cut_assistant(self) -> int:
        return int(self.cut.sum()) if self.usable else 0

    @property
    def tokens(self) -> int:
        return int(self.example_lengths.sum(dtype="int64")) if self.usable else 0

    @property
    def trained_tokens(self) -> int:
        return int(self.trained.sum(dtype="int64")) if self.usable else 0

    @property
    def trained_tokens_kept(self) -> int:
        return int(self.trained_kept.sum(dtype="int64")) if self.usable else 0

    @property
    def packing_efficiency(self) -> float | None:
        """Tokens / capacity of the packed sequences, each example cut to max_seq_len
        (the engine's own best-fit-decreasing packer); computed once the stats are complete."""
        if self._packing is None and self.complete and self.usable:
            from engine.data.pack import plan_batches

            clipped = [min(int(x), self.max_seq_len) for x in self.example_lengths]
            bins = plan_batches(clipped, 1, self.max_seq_len, True, 0, 0)
            self._packing = sum(clipped) / (len(bins) * self.max_seq_len)
        return self._packing

    def percentiles(self) -> dict[str, int]:
        import numpy as np

        if not self.usable:
            return {}
        lens = np.sort(self.lengths)
        n = len(lens)
        return {"min": int(lens[0]), "median": int(lens[n // 2]), "p95": int(lens[min(n - 1, int(n * 0.95))]),
                "max": int(lens[-1])}

    def scope(self) -> str:
        """'all 1,000,000 rows' or 'a sample of 20,000 rows' (rows tokenised, unusable ones included)."""
        n = self.usable + self.unusable_rows
        return f"a sample of {n:,} rows" if self.sample else f"all {n:,} rows"

    def to_dict(self) -> dict:
        return {"rows": self.rows, "usable": self.usable, "unusable": self.unusable_rows,
                "unusable_reasons": dict(sorted(self.unusable.items(), key=lambda kv: -kv[1])),
                "sample": self.sample, "complete": self.complete, "max_seq_len": self.max_seq_len,
                "lengths": self.percentiles(), "overlong": self.overlong, "cut_assistant": self.cut_assistant,
                "tokens": self.tokens, "trained_tokens": self.trained_tokens,
                "trained_tokens_within_max_seq_len": self.trained_tokens_kept,
                "packing_efficiency": self.packing_efficiency,
                "histogram": [{"from": lo, "to": hi, "rows": c}
                              for lo, hi, c in buckets(self.lengths, self.max_seq_len)],
                "cache": self.cache, "seconds": round(self.seconds, 3)}


def buckets(lengths, max_seq_len: int, below: int = 8, above: int = 4) -> list[tuple[int, int, int]]:
    """(first, last, rows) of each length bucket: `below` equal buckets that end exactly at
    max_seq_len (so the limit sits on a boundary), then up to `above` more of the same width
    for longer rows, the last one open to the longest."""
    import numpy as np

    lens = np.asarray(lengths, dtype=np.int64)
    if not len(lens):
        return []
    width = max(1, -(-max_seq_len // below))
    longest = int(lens.max())
    over_n = min(above, max(0, -(-(longest - max_seq_len) // width)))
    n = below + over_n
    counts = np.bincount(np.minimum(n - 1, lens // width), minlength=n)
    out = []
    for b in range(n):
        lo = b * width
        hi = (b + 1) * width - 1 if b < n - 1 or b < below else longest
        out.append((lo, hi, int(counts[b])))
    return out


# ---------------------------------------------------------------- computing

def _reason(msg: str) -> str:
    """A reason to count rows under: the message with its numbers and quoted values folded."""
    msg = re.sub(r"'[^']{0,80}'|\"[^\"]{0,80}\"", "'…'", str(msg))
    return re.sub(r"\d+", "N", msg)[:160]


class _Pipeline:
    """Plans batches on the calling thread and encodes each one on a second thread while
    the next is planned; results are absorbed in row order."""

    def __init__(self, tokenizer, settings: Settings, st: TokenStats, threads: int):
        from engine.data.mapping import Mapping

        self.tok, self.s, self.st = tokenizer, settings, st
        self.mapping = Mapping(dict(settings.columns or {}), dict(settings.roles or {}))
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ftwb-encode") if threads > 1 else None
        self.pending = None

    def feed(self, rows: list, index: list[int], cancelled: Callable[[], bool]) -> None:
        plans, owner = self._plan(rows, index, cancelled)
        if self.pool is None:
            self._absorb(self._encode(plans), owner)
            return
        fut = self.pool.submit(self._encode, plans)
        self.drain()
        self.pending = (fut, owner)

    def drain(self) -> None:
        if self.pending is not None:
            fut, owner = self.pending
            self.pending = None
            self._absorb(fut.result(), owner)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _plan(self, rows, index, cancelled):
        from engine.data.mapping import apply
        from engine.data.normalize import normalize_row
        from engine.data.template import plan_row

        st, s = self.st, self.s
        plans, owner = [], []
        for n, (row, i) in enumerate(zip(rows, index)):
            if n % CANCEL_EVERY == 0 and cancelled():
                raise StatsCancelled()
            st.rows += 1
            if row is None:
                st.unusable[UNREADABLE] = st.unusable.get(UNREADABLE, 0) + 1
                continue
            try:
                example = normalize_row(apply(row, self.mapping), s.fmt)
                if "rejected" in example:  # a preference row trains its prompt + chosen answer
                    example = {k: v for k, v in example.items() if k != "rejected"}
                row_plans = plan_row(self.tok, example, s.train_on, s.turn_policy)
            except RowError as e:
                r = _reason(e)
                st.unusable[r] = st.unusable.get(r, 0) + 1
                continue
            plans += row_plans
            owner.append((i, len(row_plans)))
        return plans, owner

    def _encode(self, plans):
        from engine.data.template import IGNORE, tokenize_plans

        m = self.s.max_seq_len
        out = []
        for t in tokenize_plans(self.tok, plans) if plans else []:
            labels = t.labels
            trained = len(labels) - labels.count(IGNORE)
            kept = trained - (len(labels[m:]) - labels[m:].count(IGNORE)) if len(labels) > m else trained
            out.append((len(t.input_ids), trained, kept))
        return out

    def _absorb(self, measured, owner) -> None:
        st = self.st
        k = 0
        for i, n in owner:
            ex = measured[k:k + n]
            k += n
            st._row.append(i)
            st._len.append(max(e[0] for e in ex))
            st._trained.append(sum(e[1] for e in ex))
            st._trained_kept.append(sum(e[2] for e in ex))
            st._cut.append(any(e[2] < e[1] for e in ex))
            st._ex_len.extend(e[0] for e in ex)


def compute(batches: Iterable[tuple[list, list[int]]], tokenizer, settings: Settings, *,
            total: int | None = None, sample: int | None = None,
            progress: Callable[[TokenStats], None] = lambda st: None,
            cancelled: Callable[[], bool] = lambda: False, threads: int = 2,
            processes: int | None = None) -> TokenStats:
    """Stats over `batches` of (rows, source indices); a row is a dict or None (unreadable).
    `progress(st)` after every batch with the figures so far. `processes`: worker
    processes past POOL_AFTER rows (None: one per core; 0 or 1: none). Raises StatsCancelled."""
    from engine.data.template import TURN_POLICIES

    if settings.turn_policy not in TURN_POLICIES:
        raise DataError(f"data.turn_policy: {settings.turn_policy!r} is not one of {', '.join(TURN_POLICIES)}")
    if settings.max_seq_len < 1:
        raise DataError(f"max_seq_len {settings.max_seq_len}: must be a positive number of tokens")
    procs = (os.cpu_count() or 1) if processes is None else processes
    t0 = time.perf_counter()
    st = TokenStats(settings.max_seq_len, total=total, sample=sample)
    pipe = _Pipeline(tokenizer, settings, st, threads)
    pool, inflight, fed = None, [], 0
    try:
        for rows, index in _rebatch(batches):
            if cancelled():
                raise StatsCancelled()
            if procs > 1 and fed >= POOL_AFTER:
                if pool is None:
                    pipe.drain()  # rows stay in order: what this process planned goes first
                    pool = _start_pool(tokenizer, settings, procs)
                inflight.append(pool.submit(_work, rows, index))
                while len(inflight) > 2 * procs:  # bounded: a few batches in flight
                    _merge(st, _result(inflight.pop(0), cancelled))
            else:
                pipe.feed(rows, index, cancelled)
            fed += len(rows)
            st.seconds = time.perf_counter() - t0
            progress(st)
        pipe.drain()
        while inflight:
            _merge(st, _result(inflight.pop(0), cancelled))
            progress(st)
    finally:
        pipe.close()
        if pool is not None:
            pool.shutdown(wait=not inflight, cancel_futures=True)
    if cancelled():
        raise StatsCancelled()
    st.complete = True
    st.packing_efficiency  # noqa: B018 (computed once, before the figures are shown or cached)
    st.seconds = time.perf_counter() - t0
    return st


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}
_ARRAYS = ("_row", "_len", "_trained", "_trained_kept", "_cut", "_ex_len")


def _start_pool(tokenizer, settings: Settings, procs: int):
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(pickle.dumps(tokenizer), settings))


def _init_worker(tokenizer_blob: bytes, settings: Settings) -> None:
    import pickle

    _WORKER["tok"], _WORKER["settings"] = pickle.loads(tokenizer_blob), settings


def _work(rows: list, index: list[int]):
    """One batch in a worker process: the same pipeline, its raw per-row figures back."""
    s = _WORKER["settings"]
    st = TokenStats(s.max_seq_len)
    _Pipeline(_WORKER["tok"], s, st, threads=1).feed(rows, index, lambda: False)
    return st.rows, st.unusable, [getattr(st, k) for k in _ARRAYS]


def _result(fut, cancelled):
    while True:
        try:
            return fut.result(timeout=0.25)
        except TimeoutError:
            if cancelled():
                raise StatsCancelled() from None


def _merge(st: TokenStats, res) -> None:
    rows, unusable, arrays = res
    st.rows += rows
    for k, v in unusable.items():
        st.unusable[k] = st.unusable.get(k, 0) + v
    for k, a in zip(_ARRAYS, arrays):
        getattr(st, k).extend(a)


def _rebatch(batches) -> Iterator[tuple[list, list[int]]]:
    """Batches of at most BATCH rows, so progress and cancellation stay frequent."""
    for rows, index in batches:
        for a in range(0, len(rows), BATCH):
            yield rows[a:a + BATCH], index[a:a + BATCH]


def sampled(batches: Iterable[tuple[list, list[int]]], total: int, sample: int):
    """Every k-th row of `batches` (k = total // sample), at most `sample` rows."""
    step = max(1, total // sample) if total > sample else 1
    taken = 0
    for rows, index in batches:
        keep = [(r, i) for r, i in zip(rows, index) if i % step == 0]
        keep = keep[:max(0, sample - taken)]
        taken += len(keep)
        if keep:
            yield [r for r, _ in keep], [i for _, i in keep]
        if taken >= sample:
            return


# ---------------------------------------------------------------- whole files, cached

def cache_dir() -> Path:
    base = os.environ.get("FTWB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ftwb") / "token-stats"


def file_hash(path: str | Path) -> str:
    """engine.data.load.content_hash, remembered per (path, size, mtime, inode) so a second
    open of an unchanged multi-GB file does not read it again."""
    from engine.data.load import content_hash, resolve_path

    p = Path(resolve_path(str(path))).resolve()
    try:
        s = p.stat()
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
        ident = [str(p)] + [[str(f), f.stat().st_size, f.stat().st_mtime_ns, f.stat().st_ino] for f in files]
    except OSError:
        return content_hash(path)
    memo = cache_dir() / "hashes" / (hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:32] + ".txt")
    try:
        return memo.read_text().strip() or content_hash(path)
    except OSError:
        pass
    h = content_hash(path)
    if p.stat().st_mtime_ns == s.st_mtime_ns:  # not changed while it was read
        _atomic_write(memo, h.encode())
    return h


def tokenizer_identity(tokenizer) -> str:
    """Name, vocabulary and normaliser/pre-tokeniser (the tokenizer.json), remembered on the object."""
    cached = getattr(tokenizer, "_ftwb_stats_id", None)
    if cached:
        return cached
    from engine.data.tokenize import tokenizer_fingerprint

    d = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    if (d / "tokenizer.json").is_file():  # loaded from files: their bytes (much quicker than serialising a big vocab)
        h = hashlib.sha256()
        h.update(json.dumps([str(d.resolve()), len(tokenizer), getattr(tokenizer, "special_tokens_map", {})],
                            sort_keys=True, default=str).encode())
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
            if (d / name).is_file():
                h.update(name.encode() + b"\0" + (d / name).read_bytes())
        ident = h.hexdigest()
    else:
        ident = tokenizer_fingerprint(tokenizer)
    try:
        tokenizer._ftwb_stats_id = ident
    except Exception:
        pass
    return ident


def cache_key(content: str, tokenizer, settings: Settings, sample: int | None) -> str:
    h = hashlib.sha256()
    for part in (CODE_VERSION, content, tokenizer_identity(tokenizer), str(tokenizer.chat_template),
                 settings.key(), str(sample)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _save(path: Path, st: TokenStats) -> None:
    import io

    import numpy as np

    meta = {"max_seq_len": st.max_seq_len, "rows": st.rows, "total": st.total, "sample": st.sample,
            "unusable": st.unusable, "packing": st._packing, "seconds": st.seconds}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), lengths=st.lengths, trained=st.trained,
             trained_kept=st.trained_kept, cut=st.cut, row=st.row_index, example_lengths=st.example_lengths)
    try:
        _atomic_write(path, buf.getvalue())
    except OSError:  # a read-only or full cache is no reason to fail the stats
        pass


def _load(path: Path) -> TokenStats | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            st = TokenStats(meta["max_seq_len"], rows=meta["rows"], total=meta["total"], sample=meta["sample"],
                            unusable=meta["unusable"], complete=True, cache="hit", seconds=meta["seconds"])
            st._len, st._trained, st._trained_kept = z["lengths"], z["trained"], z["trained_kept"]
            st._cut, st._row, st._ex_len = z["cut"].astype(np.int8), z["row"], z["example_lengths"]
            st._packing = meta["packing"]
            return st
    except (OSError, ValueError, KeyError, TypeError):  # missing, or half of an old write: recompute
        return None


def file_batches(path: str | Path, cancelled: Callable[[], bool] = lambda: False):
    """(rows, source indices, batch) of the whole source, streamed."""
    from engine.data.paged import iter_batches

    for b in iter_batches(path, cancelled=cancelled):
        yield b.rows, list(range(b.start, b.start + len(b.rows))), b


def detect_file_format(path: str | Path, settings_columns: dict | None = None, roles: dict | None = None,
                       rows: int = 400) -> tuple[str, str]:
    """(format, reason) from the first rows of the source, mapped as the config maps them."""
    from engine.data.detect import detect_format
    from engine.data.mapping import Mapping, apply
    from engine.data.paged import iter_batches

    m = Mapping(dict(settings_columns or {}), dict(roles or {}))
    head: list[dict] = []
    for b in iter_batches(path, batch_rows=rows):
        head += [apply(r, m) for r in b.rows if r is not None]
        if len(head) >= rows:
            break
    return detect_format(head[:rows])


def file_stats(path: str | Path, tokenizer, settings: Settings, *, sample: int | None = None,
               total: int | None = None, cache: bool = True,
               progress: Callable[[TokenStats], None] = lambda st: None,
               cancelled: Callable[[], bool] = lambda: False, threads: int = 2,
               processes: int | None = None) -> TokenStats:
    """Stats over every row of the file at `path` (or a sample of `sample` rows, which
    needs `total`), from the cache when this file version, tokenizer and settings were
    seen before. Raises DataError for an unusable source, StatsCancelled."""
    key_path = None
    if cache:
        key_path = cache_dir() / f"{cache_key(file_hash(path), tokenizer, settings, sample)}.npz"
        hit = _load(key_path)
        if hit is not None:
            progress(hit)
            return hit
    st_bytes = [0, 0, 0]

    def batches():
        for rows, index, b in file_batches(path, cancelled):
            st_bytes[:] = [b.done_bytes, b.total_bytes, b.start + len(b.rows)]
            yield rows, index

    src = batches()
    if sample:
        if total is None:
            raise ValueError("a sample needs the row count (total)")
        src = sampled(src, total, sample)
    def report(st: TokenStats) -> None:
        st.done_bytes, st.total_bytes, st.read_rows = st_bytes
        progress(st)

    st = compute(src, tokenizer, settings, total=min(total, sample) if sample and total else total, sample=sample,
                 progress=report, cancelled=cancelled, threads=threads, processes=processes)
    st.cache = "miss" if key_path else "off"
    if key_path is not None:
        _save(key_path, st)
    return st
