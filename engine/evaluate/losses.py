"""Per-example token loss without grad, masked like training (labels -100 are not scored).

Examples are padded on the right into small length-sorted batches; only positions whose
next token is trained go through lm_head, in chunks, so the [tokens x vocab] logits of a
large vocabulary never exist at once.
"""
from __future__ import annotations

import math
from typing import Any

CHUNK_TOKENS = 2048


def example_losses(model, items: list[dict], which: str = "tuned", batch_tokens: int = 8192,
                   pad_id: int = 0) -> list[tuple[float, int]]:
    """(summed loss, trained tokens) for each item ({"input_ids", "labels"}), in item order."""
    import torch
    import torch.nn.functional as F

    from engine.evaluate.generate import model_device, side
    from engine.train.loss import _decoder_and_head

    device = model_device(model)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        n = len(items[i]["input_ids"])
        if cur and n * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    with side(model, which) as m, torch.no_grad():
        parts = _decoder_and_head(m)
        for idxs in batches:
            width = max(len(items[i]["input_ids"]) for i in idxs)
            ids = torch.full((len(idxs), width), pad_id, dtype=torch.long)
            labels = torch.full((len(idxs), width), -100, dtype=torch.long)
            mask = torch.zeros((len(idxs), width), dtype=torch.long)
            for r, i in enumerate(idxs):
                x = items[i]
                n = len(x["input_ids"])
                ids[r, :n] = torch.tensor(x["input_ids"], dtype=torch.long)
                labels[r, :n] = torch.tensor(x["labels"], dtype=torch.long)
                mask[r, :n] = 1
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            targets = labels[:, 1:]
            keep = targets != -100
            if parts is None:
                logits = m(input_ids=ids, attention_mask=mask).logits[:, :-1]
                flat = F.cross_entropy(logits[keep].float(), targets[keep], reduction="none")
            else:
                decoder, head = parts
                hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1][keep]
                t = targets[keep]
                flat = torch.cat([F.cross_entropy(head(hidden[k:k + CHUNK_TOKENS]).float(),
                                                  t[k:k + CHUNK_TOKENS], reduction="none")
                                  for k in range(0, hidden.shape[0], CHUNK_TOKENS)]
                                 or [hidden.new_zeros(0)])
            rows = keep.nonzero()[:, 0]
            sums = torch.zeros(len(idxs), dtype=torch.float64, device=device).index_add_(0, rows, flat.double())
            counts = keep.sum(dim=1)
            for r, i in enumerate(idxs):
                out[i] = (float(sums[r]), int(counts[r]))
    return out


def mean_loss(pairs: list[tuple[float, int]]) -> dict[str, Any]:
    """Token-level mean loss over all examples and its perplexity."""
    total = sum(s for s, _ in pairs)
    n = sum(k for _, k in pairs)
    if n == 0:
        return {"loss": None, "perplexity": None, "tokens": 0}
    loss = total / n
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4), "tokens": n}
