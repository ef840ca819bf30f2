"""Causal-LM loss without materialising the full logits.

Only positions whose next token is trained go through lm_head, in chunks that are
recomputed in backward (activation checkpointing), so neither the [tokens x vocab] logits
nor their fp32 copy ever exist at once (small batches, under NO_RECOMPUTE_BYTES of
logits, take one plain pass instead: a recompute would cost more than it saves). This is where most of the memory of a plain
Trainer goes at large vocabularies, and skipping masked positions saves compute too.
"""
from __future__ import annotations

from typing import Any

CHUNK_TOKENS = 2048
# Below this many bytes of fp32 logits (all trained positions together) one plain pass is
# cheaper than chunks recomputed in backward, and the memory is small anyway.
NO_RECOMPUTE_BYTES = 256 * 2 ** 20


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


def _inputs(model, batch: dict) -> dict:
    from engine.data.pack import model_inputs

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    route = getattr(base.config, "_attn_implementation", None)
    return {k: v for k, v in model_inputs(batch, route).items() if k != "labels" and v is not None}


def _trained(batch: dict):
    """Flat positions (over [rows x (seq-1)]) whose next token is trained, and how many.
    collate computes them on the host; computing them here would wait on the device."""
    import torch

    idx = batch.get("trained_index")
    if idx is not None:
        return idx, int(batch["num_trained"])
    keep = (batch["labels"][:, 1:] != -100).reshape(-1)
    idx = torch.nonzero(keep).flatten()
    return idx, int(idx.numel())


def batch_loss(model, batch: dict, loss_kernel: str = "chunked") -> tuple[Any, int]:
    """Summed token loss of one micro-batch and the number of trained tokens.

    `batch` is what engine.data.pack.collate made (already on the model's device). Labels
    are unshifted: the token at t+1 is the target of position t, as in Hugging Face models.
    `loss_kernel` "liger" uses Liger's fused linear + cross-entropy (CUDA, when installed).
    No host sync happens here when the batch carries trained_index.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    labels = batch["labels"]
    inputs = _inputs(model, batch)
    idx, n = _trained(batch)
    targets = labels[:, 1:].reshape(-1).index_select(0, idx)
    parts = _decoder_and_head(model)
    if parts is None:  # models with soft-capping or odd heads: the plain path
        logits = model(**inputs).logits[:, :-1]
        if n == 0:
            return logits.sum() * 0.0, 0
        flat = logits.reshape(-1, logits.shape[-1]).index_select(0, idx)
        return torch.nn.functional.cross_entropy(flat.float(), targets, reduction="sum"), n
    decoder, head = parts
    hidden = decoder(**inputs).last_hidden_state[:, :-1]
    if n == 0:
        return hidden.sum() * 0.0, 0
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, idx)
    if loss_kernel == "liger":
        return _liger_ce(head, h, targets), n
    if n * head.weight.shape[0] * 4 <= NO_RECOMPUTE_BYTES:
        return _chunk_ce(head, h, targets), n
    total = None
    for i in range(0, h.shape[0], CHUNK_TOKENS):
        part = checkpoint(_chunk_ce, head, h[i:i + CHUNK_TOKENS], targets[i:i + CHUNK_TOKENS], use_reentrant=False)
        total = part if total is None else total + part
    return total, n


def _liger_ce(head, h, targets):
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    w = head.weight
    h = h.to(w.dtype)
    return LigerFusedLinearCrossEntropyLoss(reduction="sum")(w, h, targets, getattr(head, "bias", None))


def liger_unavailable() -> str | None:
    """None when train.loss_kernel: liger can run here, else why not."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "it needs a CUDA GPU"
        import liger_kernel.transformers.fused_linear_cross_entropy  # noqa: F401
    except ImportError as e:
        return f"liger-kernel is not installed ({e.name or e}); pip install liger-kernel"
    return None


def per_token_loss(model, batch: dict):
    """[batch, seq-1] loss per position (0 where not trained), for per-sample loss reports."""
    import torch
    import torch.nn.functional as F

    inputs = _inputs(model, batch)
    with torch.no_grad():
        logits = model(**inputs).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).clamp(min=0),
                           reduction="none").view(targets.shape)
    return loss * (targets != -100)
