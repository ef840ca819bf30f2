"""Causal-LM loss without materialising the full logits.

Only positions whose next token is trained go through lm_head, in chunks that are
recomputed in backward (activation checkpointing), so neither the [tokens x vocab] logits
nor their fp32 copy ever exist at once. This is where most of the memory of a plain
Trainer goes at large vocabularies, and skipping masked positions saves compute too.
"""
from __future__ import annotations

from typing import Any

CHUNK_TOKENS = 2048


def _decoder_and_head(model) -> tuple[Any, Any] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder = base.get_decoder()
        head = base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def _chunk_ce(head, hidden, targets):
    import torch.nn.functional as F

    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def batch_loss(model, batch: dict) -> tuple[Any, int]:
    """Summed token loss of one micro-batch and the number of trained tokens.

    `batch` holds input_ids, labels (same shape, -100 = not trained), position_ids and
    attention_mask as made by engine.data.pack.collate. Labels are unshifted: the token
    at t+1 is the target of position t, as in Hugging Face models.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    labels = batch["labels"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}
    targets = labels[:, 1:]
    keep = targets != -100
    n = int(keep.sum())
    parts = _decoder_and_head(model)
    if parts is None:  # models with soft-capping or odd heads: the plain path
        logits = model(**inputs).logits[:, :-1]
        if n == 0:
            return logits.sum() * 0.0, 0
        return torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum"), n
    decoder, head = parts
    hidden = decoder(**inputs).last_hidden_state[:, :-1]
    if n == 0:
        return hidden.sum() * 0.0, 0
    h = hidden[keep]
    t = targets[keep]
    total = None
    for i in range(0, h.shape[0], CHUNK_TOKENS):
        part = checkpoint(_chunk_ce, head, h[i:i + CHUNK_TOKENS], t[i:i + CHUNK_TOKENS], use_reentrant=False)
        total = part if total is None else total + part
    return total, n


def per_token_loss(model, batch: dict):
    """[batch, seq-1] loss per position (0 where not trained), for per-sample loss reports."""
    import torch
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}
    with torch.no_grad():
        logits = model(**inputs).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0),
                           reduction="none").view(targets.shape)
    return loss * (targets != -100)
