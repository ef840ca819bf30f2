"""Exact and near duplicates, and leakage between two sets of rows.

Exact: rows whose normalised text (lower case, whitespace collapsed) hashes the same.
Near: MinHash + LSH (rensa) over shingle hashes, candidates confirmed by exact Jaccard.

Speed matters (a few million rows is a normal dataset), so shingles are hashed with
numpy over one byte buffer instead of a Python loop per shingle, rensa builds the
sketches from that flat buffer, and its LSH index flags the few rows that share a band
with another; only those rows are banded again here to name the candidate pairs.
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
    if size < 1:
        raise ValueError("shingle size must be at least 1")
    if unit == "char":
        padded = [t if len(t) >= size else t + _FILL * (size - len(t)) for t in texts]
        enc = [t.encode("utf-8", "surrogatepass") for t in padded]
        counts = np.fromiter((len(e) for e in enc), np.int64, len(enc))
        units = _BYTE_TABLE[np.frombuffer(b"".join(enc), np.uint8)]
        return _windows(units, counts, size)
    if unit == "word":
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


def _candidate_pairs(digests: np.ndarray, bands: int, max_bucket: int = 64) -> set[tuple[int, int]]:
    """Pairs of local indices sharing at least one LSH band (digests: rows x perms)."""
    n, perms = digests.shape
    r = perms // bands
    pairs: set[tuple[int, int]] = set()
    for b in range(bands):
        block = np.ascontiguousarray(digests[:, b * r:(b + 1) * r])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * r))).ravel()
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        same = np.flatnonzero(sk[1:] == sk[:-1])
        if len(same) == 0:
            continue
        # walk runs of equal keys
        run_start = None
        prev = -2
        runs = []
        for i in same:
            if i != prev + 1:
                if run_start is not None:
                    runs.append((run_start, prev + 1))
                run_start = i
            prev = i
        runs.append((run_start, prev + 1))
        for s, e in runs:
            members = sorted(order[s:e + 1].tolist())
            if len(members) <= max_bucket:
                pairs.update((members[i], members[j]) for i in range(len(members))
                             for j in range(i + 1, len(members)))
            else:  # huge bucket: chain and star keep it linear; union-find joins the rest
                pairs.update((members[0], m) for m in members[1:])
                pairs.update(zip(members[:-1], members[1:]))
    return pairs


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    ua, ub = np.unique(a), np.unique(b)
    inter = len(np.intersect1d(ua, ub, assume_unique=True))
    union = len(ua) + len(ub) - inter
    return inter / union if union else 1.0


def near_pairs(texts: list[str], *, threshold: float = 0.8, shingle: int = 5, unit: str = "char",
               ) -> list[tuple[int, int, float]]:
    """All pairs (i, j, jaccard), i < j, with exact shingle Jaccard >= threshold.

    texts should already be normalised."""
    import rensa

    if len(texts) < 2:
        return []
    bands = lsh_bands(threshold)
    lsh = rensa.RMinHashLSH(threshold, NUM_PERM, bands)
    # Chunks keep the numpy buffers small: fresh multi-hundred-MB arrays cost more in
    # page faults than the hashing itself.
    matrices = []
    for start in range(0, len(texts), _CHUNK):
        tokens, offsets = shingle_hashes(texts[start:start + _CHUNK], shingle, unit)
        m = rensa.RMinHash.digest_matrix_from_flat_token_hashes(tokens, offsets, NUM_PERM, SEED)
        lsh.insert_matrix(m, start_key=start)
        matrices.append(m)
    flags = np.concatenate([np.asarray(lsh.query_duplicate_flags_matrix(m), dtype=bool) for m in matrices])
    flagged = np.flatnonzero(flags)
    if len(flagged) < 2:
        return []
    # Sketch the flagged rows again (same seed, same digests) to name their pairs.
    tokens, offsets = shingle_hashes([texts[i] for i in flagged], shingle, unit)
    sub = rensa.RMinHash.digest_matrix_from_flat_token_hashes(tokens, offsets, NUM_PERM, SEED)
    sub_tokens = [tokens[int(offsets[i]):int(offsets[i + 1])] for i in range(len(flagged))]
    digests = np.array(sub.to_rows(), dtype=np.uint32)
    out = []
    for a, b in sorted(_candidate_pairs(digests, bands)):
        j = _jaccard(sub_tokens[a], sub_tokens[b])
        if j >= threshold:
            out.append((int(flagged[a]), int(flagged[b]), j))
    return out


def find_duplicates(texts: list[str], *, near: bool = True, threshold: float = 0.8, shingle: int = 5,
                    unit: str = "char") -> DupResult:
    """Exact groups, then near groups among one representative per exact group (so an
    exact copy is never reported again as a near one)."""
    norm = [normalise(t) for t in texts]
    first_of: dict[str, int] = {}
    exact: dict[int, list[int]] = {}
    reps: list[int] = []
    for i, t in enumerate(norm):
        k = first_of.setdefault(t, i)
        if k == i:
            reps.append(i)
        else:
            exact.setdefault(k, [k]).append(i)
    res = DupResult(exact_groups=sorted(exact.values()))
    if not near:
        return res
    uf = _UnionFind()
    for a, b, j in near_pairs([norm[i] for i in reps], threshold=threshold, shingle=shingle, unit=unit):
        uf.union(reps[a], reps[b])
        res.similarity[(reps[a], reps[b])] = j
    res.near_groups = uf.groups()
    return res


def find_leaks(train_texts: list[str], other_texts: list[str], *, near: bool = True, threshold: float = 0.8,
               shingle: int = 5, unit: str = "char") -> list[tuple[int, int, float]]:
    """(train row, other row, similarity) for rows of `other` that repeat a train row,
    exactly (1.0) or nearly."""
    n = len(train_texts)
    norm_t = [normalise(t) for t in train_texts]
    norm_o = [normalise(t) for t in other_texts]
    where: dict[str, int] = {}
    for i, t in enumerate(norm_t):
        where.setdefault(t, i)
    out: dict[tuple[int, int], float] = {}
    for j, t in enumerate(norm_o):
        if t in where:
            out[(where[t], j)] = 1.0
    if near:
        for a, b, sim in near_pairs(norm_t + norm_o, threshold=threshold, shingle=shingle, unit=unit):
            if a < n <= b and (a, b - n) not in out:
                out[(a, b - n)] = sim
    return sorted((a, b, s) for (a, b), s in out.items())
