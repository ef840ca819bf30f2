"""Exact and near duplicates with group ids, train/validation leakage, and shingling."""
import random
import time

import numpy as np

from engine.data.checks import run_checks
from engine.data.dedup import find_duplicates, find_leaks, near_pairs, shingle_hashes


def _sentences(n, seed=0):
    rng = random.Random(seed)
    vocab = [f"w{i}x" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(30, 60))) for _ in range(n)]


def test_exact_duplicates_fold_case_and_whitespace_and_keep_the_first():
    texts = ["Hello  World", "other", "hello world", "HELLO WORLD\n", "other"]
    res = find_duplicates(texts)
    assert res.exact_groups == [[0, 2, 3], [1, 4]]
    assert res.near_groups == []  # exact copies are not reported again as near


def test_near_duplicates_grouped_transitively_and_confirmed():
    base = _sentences(50)
    a = base[3].split()
    b = list(a); b[5] = "changed"
    c = list(b); c[20] = "again"
    texts = base + [" ".join(b), " ".join(c)]
    res = find_duplicates(texts, threshold=0.8)
    assert [3, 50, 51] in res.near_groups
    assert all(s >= 0.8 for s in res.similarity.values())
    assert len(res.near_groups) == 1


def test_unrelated_rows_are_not_near_duplicates():
    assert find_duplicates(_sentences(300, seed=1)).near_groups == []


def test_threshold_and_word_shingles_are_adjustable():
    a = "the quick brown fox jumps over the lazy dog near the river bank today"
    b = "the quick brown fox jumps over the lazy cat near the river bank today"
    assert near_pairs([a, b], threshold=0.5, shingle=5)
    assert not near_pairs([a, b], threshold=0.95, shingle=5)
    assert near_pairs([a, b], threshold=0.3, shingle=3, unit="word")


def test_shingles_never_cross_rows_and_short_rows_get_one():
    tok, off = shingle_hashes(["abcdef", "ab", ""], 5)
    assert list(np.diff(off.astype(np.int64))) == [2, 1, 1]
    t2, _ = shingle_hashes(["abcdef"], 5)
    assert set(tok[:2].tolist()) == set(t2.tolist())


def test_duplicate_findings_have_group_ids():
    rows = [{"text": t} for t in _sentences(12, seed=2)]
    rows.append(dict(rows[0]))
    near = rows[5]["text"].split(); near[2] = "zzz"
    rows.append({"text": " ".join(near)})
    fs = [f for f in run_checks(rows, None, "completion") if "duplicate" in f.check]
    ex = [f for f in fs if f.check == "exact_duplicate"]
    nd = [f for f in fs if f.check == "near_duplicate"]
    assert [(f.row, f.group) for f in ex] == [(12, 1)] and "row 0" in ex[0].message
    assert [f.row for f in nd] == [13] and nd[0].group == 2 and "row 5" in nd[0].message


def test_train_val_leak_exact_and_near():
    train = _sentences(40, seed=3)
    words = train[7].split(); words[1] = "tweak"
    val = [train[2], " ".join(words), "something else entirely different here"]
    leaks = find_leaks(train, val)
    assert (2, 0, 1.0) in leaks
    assert any(a == 7 and b == 1 and s < 1.0 for a, b, s in leaks)
    rows = [{"text": t} for t in train]
    fs = [f for f in run_checks(rows, None, "completion", val_rows=[{"text": t} for t in val])
          if f.check == "train_val_leak"]
    assert {f.row for f in fs} == {2, 7} and all(f.severity == "error" for f in fs)


def test_near_duplicates_fast_enough_on_20k_rows():
    rows = _sentences(20000, seed=4)
    t = time.perf_counter()
    find_duplicates(rows)
    # ~0.7 s quiet: the bound catches an all-pairs comparison (minutes), not a loaded machine;
    # the figures at 1M rows are benchmarks/bench_neardup.py's
    assert time.perf_counter() - t < 20
