"""Batch order and collation: padding-free packing with per-example attention, or
length-grouped padded batches.

A packed micro-batch is ONE row with no attention mask at all. Examples are kept apart by
what the row carries: position_ids restart at 0 per example, cu_seq_lens / max_len give the
example boundaries (the varlen and flash kernels take them as they are, so nothing is
derived on the device), seq_index names the example of every token (per-example sums,
e.g. for preference losses), and the first token of every example is not a target, so no
example learns to predict the next one's first token. With sdpa or eager attention,
transformers sees the restarting position ids and builds the block-causal mask itself; a
2D mask would switch that detection off and let examples leak, so packed rows never get
one (engine.train.attention proves the chosen route at start-up).

Counts and the trained positions are computed here, on the host, from Python lists, so the
training step never waits on the device to learn them.

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


def collate(items: list[dict], packing: bool, pad_id: int, attn: str | None = None, dtype=None, *,
            pin: bool = False) -> dict:
    """Tensors for one micro-batch. Besides the model inputs the batch holds num_tokens
    (real tokens), num_trained (targets after the shift), trained_index (flat positions
    whose next token is trained, for the loss), rows (source rows) and lengths; packed
    batches also hold cu_seq_lens (int32, examples + 1), max_len and seq_index. Pass
    `model_inputs(batch, route)` to the model. `pin` puts the tensors in pinned memory so
    the copy to a GPU can overlap compute. `attn` and `dtype` no longer change the batch
    (no route gets a mask); they are accepted so older callers keep working.
    """
    import torch

    if not items:
        raise ValueError("collate needs at least one example")
    lengths = [len(it["input_ids"]) for it in items]
    batch: dict = {"rows": [it.get("row") for it in items], "lengths": lengths}
    if packing:
        flat_ids = [t for it in items for t in it["input_ids"]]
        flat_labels = []
        for it in items:
            lab = list(it["labels"])
            lab[0] = IGNORE  # never a target across an example boundary
            flat_labels += lab
        T = len(flat_ids)
        position_ids = torch.cat([torch.arange(n) for n in lengths])
        seq_index = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
        batch.update(input_ids=torch.tensor(flat_ids, dtype=torch.long)[None],
                     labels=torch.tensor(flat_labels, dtype=torch.long)[None],
                     position_ids=position_ids[None], seq_index=seq_index[None], cu_seq_lens=cu,
                     max_len=max(lengths))
        # position t predicts labels[t + 1]; flat over the one row
        trained = [t for t in range(T - 1) if flat_labels[t + 1] != IGNORE]
    else:
        L = max(lengths)
        ids = torch.full((len(items), L), pad_id, dtype=torch.long)
        labels = torch.full((len(items), L), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(items), L), dtype=torch.long)
        trained = []
        for b, it in enumerate(items):
            n = lengths[b]
            ids[b, :n] = torch.tensor(it["input_ids"], dtype=torch.long)
            labels[b, :n] = torch.tensor(it["labels"], dtype=torch.long)
            attention[b, :n] = 1
            lab = it["labels"]
            # flat index into the [rows, L - 1] grid of shifted positions
            trained += [b * (L - 1) + t for t in range(n - 1) if lab[t + 1] != IGNORE]
        position_ids = torch.arange(L)[None].expand(len(items), L).clone()
        batch.update(input_ids=ids, labels=labels, attention_mask=attention, position_ids=position_ids)
    batch["trained_index"] = torch.tensor(trained, dtype=torch.long)
    batch["num_tokens"] = int(sum(lengths))
    batch["num_trained"] = len(trained)
    if pin:
        batch = {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return batch


def model_inputs(batch: dict, route: str | None = None) -> dict:
    """Only the keys a causal LM's forward takes (use_cache off for packed rows). Routes that read the example boundaries
    (engine.train.attention.BOUNDARY_ROUTES) get them as cu_seq_lens_* / max_length_*."""
    out = {k: batch[k] for k in MODEL_KEYS if k in batch}
    if "cu_seq_lens" in batch:
        out["use_cache"] = False  # a KV cache also switches transformers' packed detection off
    if route in ("ftwb_varlen", "flash_attention_2") and "cu_seq_lens" in batch:
        cu, m = batch["cu_seq_lens"], batch["max_len"]
        out.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=m, max_length_k=m)
    return out
