"""Near-duplicate speed: 100k synthetic rows of 20-120 words, with planted near copies.

Run: .venv/bin/python benchmarks/bench_neardup.py [ROWS]
Prints rows, seconds (shingling + sketching + LSH + confirmation), pairs found and the
recall of the planted pairs.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.dedup import find_duplicates  # noqa: E402


def make_rows(n: int, seed: int = 0, planted_every: int = 100) -> tuple[list[str], list[tuple[int, int]]]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(20000)]
    rows: list[str] = []
    planted: list[tuple[int, int]] = []
    while len(rows) < n:
        words = [rng.choice(vocab) for _ in range(rng.randint(20, 120))]
        rows.append(" ".join(words))
        if len(rows) % planted_every == 0 and len(rows) < n and len(words) >= 40:
            copy = list(words)
            copy[rng.randrange(len(copy))] = rng.choice(vocab)  # one word changed
            rows.append(" ".join(copy))
            planted.append((len(rows) - 2, len(rows) - 1))
    return rows[:n], planted


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows, planted = make_rows(n)
    t = time.perf_counter()
    res = find_duplicates(rows, threshold=0.8, shingle=5)
    secs = time.perf_counter() - t
    found = set(res.similarity)
    hit = sum(1 for p in planted if p in found)
    print(f"rows={n} seconds={secs:.2f} pairs_found={len(found)} near_groups={len(res.near_groups)} "
          f"planted={len(planted)} recall={hit / max(1, len(planted)):.3f}")


if __name__ == "__main__":
    main()
