"""Exact and near duplicates, and train/validation leakage, at scale: ROWS synthetic rows
of 20-120 words fed batch by batch to engine.data.dedup.DupIndex (as `ftwb data check`
streams them), with planted exact and near copies.

Run: .venv/bin/python benchmarks/bench_neardup.py [ROWS] [VAL_ROWS]   (default 1,000,000 / 100,000)
The rows are generated first and held in memory (not counted). Prints, in-process and
with 2 worker processes: wall and CPU seconds (normalise, hash, shingle, sketch, band, confirm), the
index's own memory and the process's peak RSS (which includes the generated texts),
pairs found and the recall of the planted pairs; then leakage of VAL_ROWS validation rows
(1% of them exact or near copies of train rows) into the ROWS train rows.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.dedup import DupIndex  # noqa: E402

BATCH = 20_000


class Rows:
    """Deterministic synthetic rows; row i is the same text every time it is asked for."""

    def __init__(self, seed: int = 0, vocab: int = 20_000):
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        lens = rng.integers(2, 10, vocab)
        self.vocab = ["".join(rng.choice(letters, n)) for n in lens]
        self.seed = seed

    def batch(self, start: int, n: int, salt: int = 0) -> list[str]:
        rng = np.random.default_rng((self.seed, salt, start))
        lens = rng.integers(20, 121, n)
        words = rng.integers(0, len(self.vocab), int(lens.sum()))
        v, out, k = self.vocab, [], 0
        for m in lens.tolist():
            out.append(" ".join([v[w] for w in words[k:k + m].tolist()]))
            k += m
        return out


def plant(texts: list[str], start: int, rng: np.random.Generator, vocab: list[str],
          every: int = 100) -> list[tuple[int, int, str]]:
    """Every `every`-th row becomes a near copy (one word changed) of the row before it,
    every `5 * every`-th an exact copy; returns (original, copy, kind)."""
    planted = []
    for k in range(every - 1, len(texts), every):
        i = start + k
        words = texts[k - 1].split()
        if i % (5 * every) == every - 1:
            texts[k] = texts[k - 1].upper()  # an exact duplicate after case folding
            planted.append((i - 1, i, "exact"))
        elif len(words) >= 40:
            words[int(rng.integers(len(words)))] = vocab[int(rng.integers(len(vocab)))]
            texts[k] = " ".join(words)
            planted.append((i - 1, i, "near"))
    return planted


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: the cost, whatever else runs."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def index_mb(idx: DupIndex) -> float:
    """What the index holds per row (hashes, band keys, text offsets), in MB."""
    return sum(a.nbytes for part in (idx._hashes, idx._keys, idx._ends) for a in part) / 2**20


def run(batches: list[list[str]], planted, workers: int) -> DupIndex:
    idx = DupIndex(threshold=0.8, shingle=5, workers=workers)
    t, c = time.perf_counter(), cpu_seconds()
    for texts in batches:
        idx.add(texts)
    res = idx.duplicates()
    secs, cpu = time.perf_counter() - t, cpu_seconds() - c
    n = idx.n
    exact = {(g[0], r) for g in res.exact_groups for r in g[1:]}
    near = set(res.similarity)
    hit = sum(1 for a, b, kind in planted if (a, b) in (exact if kind == "exact" else near))
    print(f"duplicates workers={workers}: rows={n} seconds={secs:.1f} cpu_seconds={cpu:.1f} "
          f"rows_per_s={n / secs:,.0f} "
          f"index_mb={index_mb(idx):.0f} peak_rss_mb={peak_rss_mb():.0f} exact_groups={len(res.exact_groups)} "
          f"near_pairs={len(near)} planted={len(planted)} recall={hit / max(1, len(planted)):.4f}", flush=True)
    return idx


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_val = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    gen = Rows()
    rng = np.random.default_rng(7)
    planted: list[tuple[int, int, str]] = []
    t = time.perf_counter()
    batches = []
    for start in range(0, n, BATCH):
        texts = gen.batch(start, min(BATCH, n - start))
        planted += plant(texts, start, rng, gen.vocab)
        batches.append(texts)
    print(f"generated {n:,} rows in {time.perf_counter() - t:.0f} s; peak RSS with the texts "
          f"{peak_rss_mb():.0f} MB (the index's own arrays are index_mb)", flush=True)
    run(batches, planted, workers=0)
    idx = run(batches, planted, workers=2)

    # Leakage: validation rows, some of them exact or near copies of train rows.
    val = gen.batch(0, n_val, salt=1)
    want = {}
    srcs = np.sort(rng.integers(0, n, len(range(0, n_val, 100))))
    for k, src in zip(range(0, n_val, 100), srcs.tolist()):
        words = batches[src // BATCH][src % BATCH].split()
        if k % 200 == 0 or len(words) < 40:
            val[k] = batches[src // BATCH][src % BATCH]
        else:
            words[int(rng.integers(len(words)))] = gen.vocab[int(rng.integers(len(gen.vocab)))]
            val[k] = " ".join(words)
        want[k] = src
    t, c = time.perf_counter(), cpu_seconds()
    leaks = idx.leaks(val)
    lsecs, lcpu = time.perf_counter() - t, cpu_seconds() - c
    found = {(a, b) for a, b, _s in leaks}
    lhit = sum(1 for k, src in want.items() if (src, k) in found)
    print(f"leakage: train={n} val={n_val} seconds={lsecs:.1f} cpu_seconds={lcpu:.1f} peak_rss_mb={peak_rss_mb():.0f} "
          f"leaks={len(leaks)} planted={len(want)} recall={lhit / max(1, len(want)):.4f}", flush=True)
    idx.close()


if __name__ == "__main__":
    main()
