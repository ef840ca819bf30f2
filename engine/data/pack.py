"""Batch order and collation: padding-free packing with per-example attention, or
length-grouped padded batches.

Packed rows keep examples apart three ways: position_ids restart at 0 per example, a 4D
block-causal mask lets a token see only earlier tokens of its own example (position ids
alone do NOT isolate examples with sdpa/eager attention), and the first token of every
example is not a target, so no example learns to predict the next one's first token.
With flash_attention_2 no mask is built: transformers derives the varlen boundaries from
the restarting position_ids.

Torch is imported inside the functions that need it.
"""
from __future__ import annotations

import bisect
import random

IGNORE = -100
MODEL_KEYS = ("input_ids", "labels", "attention_mask", "position_ids")
MEGA_BATCH = 50        # unpacked: sort by length inside windows of 50 micro-batches
PACK_CHUNK = 2000      # packed: best-fit decreasing inside shuffled chunks of this many examples


def _rng(seed: int, epoch: int) -> random.Random:
    return random.Random(f"batches-{seed}-{epoch}")


def plan_batches(lengths: list[int], micro_batch_size: int, max_seq_len: int, packing: bool,
                 seed: int, epoch: int) -> list[list[int]]:
    """Example indices grouped into micro-batches; the same (seed, epoch) gives the same plan."""
    rng = _rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    if not packing:
        window = micro_batch_size * MEGA_BATCH
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda i: -lengths[i])  # stable: ties keep shuffled order
            batches += [chunk[j:j + micro_batch_size] for j in range(0, len(chunk), micro_batch_size)]
    else:
        capacity = micro_batch_size * max_seq_len
        for w in range(0, len(order), PACK_CHUNK):
            batches += _best_fit_decreasing(order[w:w + PACK_CHUNK], lengths, capacity)
    rng.shuffle(batches)  # so long (or full) batches do not all come first
    return batches


def _best_fit_decreasing(indices: list[int], lengths: list[int], capacity: int) -> list[list[int]]:
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin id), kept sorted
    for i in sorted(indices, key=lambda i: -lengths[i]):
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))  # the tightest bin that still fits
        if k < len(free):
            room, b = free.pop(k)
            bins[b].append(i)
            room -= n
        else:
            bins.append([i])
            b, room = len(bins) - 1, capacity - n
        if room > 0:
            bisect.insort(free, (room, b))
    return bins


def collate(items: list[dict], packing: bool, pad_id: int, attn: str = "sdpa", dtype=None) -> dict:
    """Tensors for one micro-batch. Besides the model inputs (MODEL_KEYS) the batch holds
    num_tokens (real tokens), num_trained (targets after the shift), rows (source rows)
    and lengths; pass `model_inputs(batch)` to the model.

    Packed + "eager": the mask is additive (0 / dtype's most negative value, in `dtype`,
    default float32) because eager attention adds it to the scores; "sdpa" gets booleans.
    """
    import torch

    if not items:
        raise ValueError("collate needs at least one example")
    lengths = [len(it["input_ids"]) for it in items]
    batch: dict = {"rows": [it.get("row") for it in items], "lengths": lengths}
    if packing:
        ids = torch.tensor([t for it in items for t in it["input_ids"]], dtype=torch.long)
        labels = torch.tensor([t for it in items for t in it["labels"]], dtype=torch.long)
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        labels[torch.tensor(starts)] = IGNORE  # never a target across an example boundary
        position_ids = torch.cat([torch.arange(n) for n in lengths])
        batch.update(input_ids=ids[None], labels=labels[None], position_ids=position_ids[None])
        if attn != "flash_attention_2":
            doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
            T = len(doc)
            mask = (doc[:, None] == doc[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
            mask = mask[None, None]
            if attn == "eager":
                dt = dtype or torch.float32
                mask = torch.zeros(mask.shape, dtype=dt).masked_fill(~mask, torch.finfo(dt).min)
            batch["attention_mask"] = mask
    else:
        L = max(lengths)
        ids = torch.full((len(items), L), pad_id, dtype=torch.long)
        labels = torch.full((len(items), L), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(items), L), dtype=torch.long)
        for b, it in enumerate(items):
            n = lengths[b]
            ids[b, :n] = torch.tensor(it["input_ids"], dtype=torch.long)
            labels[b, :n] = torch.tensor(it["labels"], dtype=torch.long)
            attention[b, :n] = 1
        position_ids = torch.arange(L)[None].expand(len(items), L).clone()
        batch.update(input_ids=ids, labels=labels, attention_mask=attention, position_ids=position_ids)
    batch["num_tokens"] = int(sum(lengths))
    batch["num_trained"] = int((batch["labels"][:, 1:] != IGNORE).sum())
    return batch


def model_inputs(batch: dict) -> dict:
    """Only the keys a causal LM's forward takes."""
    return {k: batch[k] for k in MODEL_KEYS if k in batch}
