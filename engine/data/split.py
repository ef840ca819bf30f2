"""Deterministic train/validation/test split, optionally stratified by a label."""
from __future__ import annotations

import random


def _sizes(n: int, val: float, test: float) -> tuple[int, int]:
    n_val = round(n * val)
    n_test = round(n * test)
    if val > 0 and n >= 2:
        n_val = max(1, n_val)
    if test > 0 and n >= 3:
        n_test = max(1, n_test)
    # Always leave at least one training example.
    while n_val + n_test > n - 1 and (n_val or n_test):
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Largest-remainder split of `total` in proportion to `weights` (sums exactly to total)."""
    s = sum(weights)
    if s == 0:
        return [0] * len(weights)
    quotas = [total * w / s for w in weights]
    out = [min(int(q), w) for q, w in zip(quotas, weights)]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - int(quotas[i])), i))
    k = 0
    while sum(out) < total and k < 10 * len(order) + total:
        i = order[k % len(order)]
        if out[i] < weights[i]:
            out[i] += 1
        k += 1
    return out


def split_indices(n: int, val: float, test: float, seed: int, stratify: list | None = None) -> dict[str, list[int]]:
    """{"train", "val", "test"}: sorted index lists. Same inputs, same split."""
    rng = random.Random(f"split-{seed}")
    n_val, n_test = _sizes(n, val, test)
    if stratify is None:
        order = list(range(n))
        rng.shuffle(order)
        groups = {None: order}
        val_take = {None: n_val}
        test_take = {None: n_test}
    else:
        if len(stratify) != n:
            raise ValueError(f"stratify has {len(stratify)} labels for {n} examples")
        groups: dict = {}
        for i, label in enumerate(stratify):
            groups.setdefault(label, []).append(i)
        keys = sorted(groups, key=repr)  # a stable order whatever the label type
        for k in keys:
            rng.shuffle(groups[k])
        sizes = [len(groups[k]) for k in keys]
        val_take = dict(zip(keys, _apportion(n_val, sizes)))
        test_take = dict(zip(keys, _apportion(n_test, [s - val_take[k] for s, k in zip(sizes, keys)])))
    out = {"train": [], "val": [], "test": []}
    for k, members in groups.items():
        v, t = val_take[k], test_take[k]
        out["val"] += members[:v]
        out["test"] += members[v:v + t]
        out["train"] += members[v + t:]
    return {k: sorted(v) for k, v in out.items()}
