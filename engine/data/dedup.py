"""Exact and near duplicates, and leakage between two sets of rows.

Exact: rows whose normalised text (lower case, whitespace collapsed) hashes the same.
Near: MinHash + LSH (rensa) over shingle hashes, candidates confirmed by exact Jaccard.

Speed and memory matter (a few million rows is a normal dataset): rows are fed in
batches to a DupIndex, shingles are hashed with numpy over one byte buffer instead of a
Python loop per shingle, rensa builds the MinHash sketches from that flat buffer, and
each sketch is kept only as one 64-bit key per LSH band; equal keys name the candidate
pairs, whose texts are read back from a spill file to confirm their exact Jaccard.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

NUM_PERM = 128
_CHUNK = 2000
SEED = 42
_FILL = "\x01"  # pads texts shorter than one shingle, so every row has one shingle
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_P = np.uint64(0x100000001B3)
_BYTE_TABLE = np.random.default_rng(4321).integers(1, 2**63, size=256, dtype=np.uint64)
# Per (byte, position-in-word) random values: a word's hash is the sum of its bytes'.
_WORD_TABLE = np.random.default_rng(1234).integers(0, 2**63, size=(256, 64), dtype=np.uint64)


@dataclass
class DupResult:
    """Groups of row indices: in each group the first row is the one to keep."""
    exact_groups: list[list[int]] = field(default_factory=list)
    near_groups: list[list[int]] = field(default_factory=list)
    # (kept row, other row) -> exact Jaccard of their shingle sets
    similarity: dict[tuple[int, int], float] = field(default_factory=dict)


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def text_hash(text: str) -> str:
    return hashlib.blake2b(normalise(text).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: spreads the polynomial hashes over all 64 bits
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _windows(units: np.ndarray, counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of n consecutive units that stays inside one row.

    units: per-unit uint64 hashes for all rows back to back; counts: units per row
    (each >= n). Returns (token hashes, row offsets into them)."""
    total = len(units)
    if total < n:
        return np.zeros(0, np.uint64), np.zeros(len(counts) + 1, np.uint64)
    m = total - n + 1
    h = units[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            h *= _P
            h += units[j:j + m]
    # drop the n-1 windows that start near each row's end and run into the next row
    ends = np.cumsum(counts)
    bad = (ends[:, None] - np.arange(1, n)[None, :]).ravel()
    valid = np.ones(m, bool)
    valid[bad[bad < m]] = False
    per_row = counts - n + 1
    offsets = np.zeros(len(counts) + 1, np.uint64)
    np.cumsum(per_row, out=offsets[1:])
    return h[valid], offsets


def shingle_hashes(texts: list[str], size: int = 5, unit: str = "char") -> tuple[np.ndarray, np.ndarray]:
    """Flat uint64 shingle hashes and row offsets for normalised texts.

    unit "char": byte n-grams of the UTF-8 text (characters for ASCII); "word": word
    n-grams."""
    return _shingles_of_bytes([t.encode("utf-8", "surrogatepass") for t in texts], size, unit)


def _shingles_of_bytes(enc: list[bytes], size: int, unit: str) -> tuple[np.ndarray, np.ndarray]:
    if size < 1:
        raise ValueError("shingle size must be at least 1")
    if unit == "char":
        fill = _FILL.encode()
        padded = [e if len(e) >= size else e + fill * (size - len(e)) for e in enc]
        counts = np.fromiter((len(e) for e in padded), np.int64, len(padded))
        units = _BYTE_TABLE[np.frombuffer(b"".join(padded), np.uint8)]
        return _windows(units, counts, size)
    if unit == "word":
        texts = [e.decode("utf-8", "surrogatepass") for e in enc]
        padded = []
        for t in texts:
            k = t.count(" ") + 1 if t else 0
            padded.append(t + (" " + _FILL) * (size - k) if k < size else t)
        padded = [p.lstrip(" ") for p in padded]
        counts = np.fromiter((p.count(" ") + 1 for p in padded), np.int64, len(padded))
        buf = np.frombuffer(" ".join(padded).encode("utf-8", "surrogatepass"), np.uint8)
        nonspace = buf != 32
        idx = np.flatnonzero(nonspace)
        if len(idx) == 0:
            return np.zeros(0, np.uint64), np.zeros(len(texts) + 1, np.uint64)
        is_start = nonspace.copy()
        is_start[1:] &= ~nonspace[:-1]
        word_start_pos = np.flatnonzero(is_start)
        word_of = np.cumsum(is_start)[idx] - 1
        pos = np.minimum(idx - word_start_pos[word_of], 63)
        contrib = _WORD_TABLE[buf[idx], pos]
        first = np.searchsorted(idx, word_start_pos)
        with np.errstate(over="ignore"):
            units = _mix(np.add.reduceat(contrib, first))
        return _windows(units, counts, size)
    raise ValueError(f"unknown shingle unit {unit!r}: use 'char' or 'word'")


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> int:
    """Number of bands whose S-curve rises a little below the threshold (recall first:
    every candidate is confirmed by exact Jaccard afterwards)."""
    target = max(0.05, threshold * 0.85)
    best, best_err = 1, 9.0
    for b in range(1, num_perm + 1):
        if num_perm % b:
            continue
        r = num_perm // b
        err = abs((1 / b) ** (1 / r) - target)
        if err < best_err:
            best, best_err = b, err
    return best


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return sorted((sorted(g) for g in out.values() if len(g) > 1), key=lambda g: g[0])


def _band_keys(digests: np.ndarray, bands: int) -> np.ndarray:
    """One uint64 key per (row, band): the band's r digest values hashed together
    (equal bands give equal keys; distinct ones collide with odds 2**-64)."""
    n, perms = digests.shape
    r = perms // bands
    d = digests.reshape(n, bands, r).astype(np.uint64)
    k = d[:, :, 0].copy()
    with np.errstate(over="ignore"):
        for j in range(1, r):
            k *= _P
            k += d[:, :, j]
    return _mix(k)


def _bucket_pairs(keys: np.ndarray, ids: np.ndarray, max_bucket: int = 64) -> set[tuple[int, int]]:
    """Pairs of ids (ascending) whose keys are equal in one band. A bucket larger than
    max_bucket gives a star and a chain instead of every pair (union-find joins the rest)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    same = sk[1:] == sk[:-1]
    pairs: set[tuple[int, int]] = set()
    if not same.any():
        return pairs
    # runs of equal keys: starts where a run begins, ends one past its last member
    edge = np.diff(np.concatenate(([False], same, [False])).astype(np.int8))
    starts, stops = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) + 1
    small = (stops - starts) == 2
    two = ids[order[starts[small]]], ids[order[starts[small] + 1]]
    lo, hi = np.minimum(*two), np.maximum(*two)
    pairs.update(zip(lo.tolist(), hi.tolist()))
    for s, e in zip(starts[~small].tolist(), stops[~small].tolist()):
        members = sorted(ids[order[s:e]].tolist())
        if len(members) <= max_bucket:
            pairs.update((members[i], members[j]) for i in range(len(members))
                         for j in range(i + 1, len(members)))
        else:
            pairs.update((members[0], m) for m in members[1:])
            pairs.update(zip(members[:-1], members[1:]))
    return pairs


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sorted unique token arrays."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


def sketch(texts: list[str], near: bool, shingle: int, unit: str, bands: int,
           ) -> tuple[np.ndarray, bytes, np.ndarray, list[np.ndarray]]:
    """What a DupIndex keeps of a batch: (exact hashes, the normalised texts back to back,
    their byte lengths, LSH band-key chunks). Plain data, so a worker process can run it."""
    enc = [normalise(t).encode("utf-8", "surrogatepass") for t in texts]
    hashes = np.frombuffer(b"".join(hashlib.blake2b(e, digest_size=8).digest() for e in enc), np.uint64)
    if not near:
        return hashes, b"", np.zeros(0, np.int64), []
    import rensa

    keys = []
    for s in range(0, len(enc), _CHUNK):
        tokens, offsets = _shingles_of_bytes(enc[s:s + _CHUNK], shingle, unit)
        m = rensa.RMinHash.digest_matrix_from_flat_token_hashes(tokens, offsets, NUM_PERM, SEED)
        keys.append(_band_keys(np.array(m.to_rows(), dtype=np.uint32), bands))
    return hashes, b"".join(enc), np.fromiter((len(e) for e in enc), np.int64, len(enc)), keys


class DupIndex:
    """Exact and near duplicates over rows fed batch by batch (`add`), answered at the end
    (`duplicates`, `leaks`), in memory that does not hold the texts.

    Per row it keeps an 8-byte hash of the normalised text and, for near duplicates, one
    8-byte LSH key per band (16 at threshold 0.8: 128 bytes) plus the offset of the
    normalised text in a temporary spill file; only candidate pairs are read back from
    it to confirm their exact Jaccard. 1M rows: about 150 MB.

    `workers` > 0: once `POOL_AFTER` rows are in, batches are sketched in that many worker
    processes while the caller goes on (reading and checking the next rows); the results
    are the same, taken in row order.
    """

    POOL_AFTER = 100_000

    def __init__(self, *, near: bool = True, threshold: float = 0.8, shingle: int = 5, unit: str = "char",
                 workers: int = 0):
        if shingle < 1:
            raise ValueError("shingle size must be at least 1")
        if unit not in ("char", "word"):
            raise ValueError(f"unknown shingle unit {unit!r}: use 'char' or 'word'")
        self.near, self.threshold, self.shingle, self.unit = near, threshold, shingle, unit
        self.bands = lsh_bands(threshold)
        self.workers = workers
        self.n = 0          # rows added
        self._taken = 0     # rows whose sketches are in (the rest are with the workers)
        self._hashes: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []
        self._spill = None
        self._spilled = 0
        self._pool = None
        self._pending: list = []

    def add(self, texts: list[str]) -> None:
        """The next rows' texts, in row order."""
        if not texts:
            return
        args = (list(texts), self.near, self.shingle, self.unit, self.bands)
        if self.workers > 0 and self.n >= self.POOL_AFTER:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn, not fork: the caller may be a threaded app
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            self._pending.append(self._pool.submit(sketch, *args))
            while len(self._pending) > 2 * self.workers:  # bounded: a few batches in flight
                self._take(self._pending.pop(0).result())
        else:
            self._take(sketch(*args))
        self.n += len(texts)

    def _take(self, res) -> None:
        hashes, blob, lens, keys = res
        self._hashes.append(hashes)
        self._taken += len(hashes)
        if not self.near:
            return
        import tempfile

        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="ftwb-dedup-")
        self._spill.write(blob)
        self._ends.append(self._spilled + np.cumsum(lens))
        self._spilled += len(blob)
        self._keys.extend(keys)

    def _drain(self) -> None:
        while self._pending:
            self._take(self._pending.pop(0).result())
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # ------------------------------------------------------------ answers
    def exact_groups(self) -> list[list[int]]:
        """Groups of rows with the same normalised text, each sorted, by first row."""
        self._drain()
        if not self._hashes:
            return []
        h = np.concatenate(self._hashes)
        order = np.argsort(h, kind="stable")
        sh = h[order]
        same = sh[1:] == sh[:-1]
        if not same.any():
            return []
        edge = np.diff(np.concatenate(([False], same, [False])).astype(np.int8))
        starts, stops = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) + 1
        groups = [order[s:e].tolist() for s, e in zip(starts.tolist(), stops.tolist())]
        return sorted(groups, key=lambda g: g[0])

    def _texts(self, ids: np.ndarray) -> list[str]:
        """Normalised texts of rows `ids` (ascending), read back from the spill file."""
        ends = np.concatenate(self._ends)
        out = []
        for i in ids.tolist():
            s = int(ends[i - 1]) if i else 0
            self._spill.seek(s)
            out.append(self._spill.read(int(ends[i]) - s).decode("utf-8", "surrogatepass"))
        return out

    def _confirm(self, pairs: set[tuple[int, int]], texts_of) -> list[tuple[int, int, float]]:
        if not pairs:
            return []
        ids = np.unique(np.fromiter((x for p in pairs for x in p), np.int64, 2 * len(pairs)))
        tokens, offsets = shingle_hashes(texts_of(ids), self.shingle, self.unit)
        sets = {int(i): np.unique(tokens[int(offsets[k]):int(offsets[k + 1])]) for k, i in enumerate(ids)}
        out = []
        for a, b in sorted(pairs):
            j = _jaccard(sets[a], sets[b])
            if j >= self.threshold:
                out.append((a, b, j))
        return out

    def _pairs(self, chunks: list[np.ndarray], ids: np.ndarray | None, cancelled=None) -> set[tuple[int, int]]:
        """Candidate pairs among rows `ids` (None: all) of the key chunks, one band at a
        time (one column of 8-byte keys in memory beside the chunks)."""
        pairs: set[tuple[int, int]] = set()
        for b in range(self.bands):
            if cancelled is not None:
                cancelled()  # raises to stop (the caller's exception)
            col = np.concatenate([c[:, b] for c in chunks])
            if ids is None:
                pairs |= _bucket_pairs(col, np.arange(len(col)))
            else:
                pairs |= _bucket_pairs(col[ids], ids)
        return pairs

    def near_pairs(self, rows: np.ndarray | None = None, cancelled=None) -> list[tuple[int, int, float]]:
        """(i, j, jaccard), i < j, among `rows` (default: all) with Jaccard >= threshold.
        `cancelled` is called between bands; it stops the search by raising."""
        self._drain()
        if not self.near or self.n < 2:
            return []
        ids = None if rows is None else np.asarray(rows, np.int64)
        if ids is not None and len(ids) < 2:
            return []
        return self._confirm(self._pairs(self._keys, ids, cancelled), self._texts)

    def duplicates(self, near: bool | None = None, cancelled=None) -> DupResult:
        """Exact groups, then near groups among one row per exact group (so an exact copy
        is never reported again as a near one)."""
        res = DupResult(exact_groups=self.exact_groups())
        if not (self.near if near is None else near and self.near):
            return res
        rep = np.ones(self.n, bool)
        for g in res.exact_groups:
            rep[g[1:]] = False
        uf = _UnionFind()
        for a, b, j in self.near_pairs(np.flatnonzero(rep), cancelled):
            uf.union(a, b)
            res.similarity[(a, b)] = j
        res.near_groups = uf.groups()
        return res

    def leaks(self, other_texts: list[str], cancelled=None) -> list[tuple[int, int, float]]:
        """(row, other row, similarity) for rows of `other_texts` that repeat a row here,
        exactly (1.0) or nearly."""
        self._drain()
        other = DupIndex(near=self.near, threshold=self.threshold, shingle=self.shingle, unit=self.unit)
        for s in range(0, len(other_texts), 20_000):
            other.add(other_texts[s:s + 20_000])
        out: dict[tuple[int, int], float] = {}
        if self._hashes and other._hashes:
            h = np.concatenate(self._hashes)
            order = np.argsort(h, kind="stable")
            sh = h[order]
            oh = np.concatenate(other._hashes)
            pos = np.searchsorted(sh, oh)
            hit = (pos < len(sh)) & (sh[np.minimum(pos, len(sh) - 1)] == oh)
            for j in np.flatnonzero(hit).tolist():
                out[(int(order[pos[j]]), j)] = 1.0  # searchsorted finds the first (stable) copy
        if self.near and self.n and other.n:
            n = self.n
            pairs = {(a, b) for a, b in self._pairs(self._keys + other._keys, None, cancelled) if a < n <= b}
            pairs = {(a, b) for a, b in pairs if (a, b - n) not in out}

            def texts_of(ids: np.ndarray) -> list[str]:
                return self._texts(ids[ids < n]) + other._texts(ids[ids >= n] - n)
            for a, b, sim in self._confirm(pairs, texts_of):
                out[(a, b - n)] = sim
        return sorted((a, b, s) for (a, b), s in out.items())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._pending = []
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def __del__(self) -> None:
        self.close()


def _indexed(texts: list[str], **kw) -> DupIndex:
    idx = DupIndex(**kw)
    for s in range(0, len(texts), 20_000):
        idx.add(texts[s:s + 20_000])
    return idx


def near_pairs(texts: list[str], *, threshold: float = 0.8, shingle: int = 5, unit: str = "char",
               ) -> list[tuple[int, int, float]]:
    """All pairs (i, j, jaccard), i < j, with exact shingle Jaccard >= threshold."""
    idx = _indexed(texts, threshold=threshold, shingle=shingle, unit=unit)
    try:
        return idx.near_pairs()
    finally:
        idx.close()


def find_duplicates(texts: list[str], *, near: bool = True, threshold: float = 0.8, shingle: int = 5,
                    unit: str = "char") -> DupResult:
    """Exact groups, then near groups among one representative per exact group."""
    idx = _indexed(texts, near=near, threshold=threshold, shingle=shingle, unit=unit)
    try:
        return idx.duplicates()
    finally:
        idx.close()


def find_leaks(train_texts: list[str], other_texts: list[str], *, near: bool = True, threshold: float = 0.8,
               shingle: int = 5, unit: str = "char") -> list[tuple[int, int, float]]:
    """(train row, other row, similarity) for rows of `other` that repeat a train row,
    exactly (1.0) or nearly."""
    idx = _indexed(train_texts, near=near, threshold=threshold, shingle=shingle, unit=unit)
    try:
        return idx.leaks(other_texts)
    finally:
        idx.close()
