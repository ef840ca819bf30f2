"""Measured pre-flight memory: a few real optimizer steps on the longest batch.

Loads the model exactly as the engine does (engine.train.model.load_model), runs 2-3 full
steps (forward, chunked loss, backward, clip, AdamW step) on a micro-batch of
micro_batch_size rows x max_seq_len tokens, the worst case the run can meet, and reports
torch.cuda.max_memory_allocated. Needs CUDA; torch is imported inside the functions.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.config import ConfigError, RunConfig


class ProbeUnavailable(RuntimeError):
    """Measuring needs a CUDA GPU (or the engine's training modules)."""


@dataclass
class ProbeResult:
    micro_batch_size: int
    seq_len: int
    peak_allocated: int | None   # bytes; None when it ran out of memory
    peak_reserved: int | None
    oom: bool = False

    def to_dict(self) -> dict:
        return {"micro_batch_size": self.micro_batch_size, "seq_len": self.seq_len,
                "peak_allocated_bytes": self.peak_allocated, "peak_reserved_bytes": self.peak_reserved,
                "oom": self.oom}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def longest_batch(cfg: RunConfig, micro_batch_size: int, vocab: int, pad_id: int = 0,
                  attn: str = "sdpa") -> dict:
    """The largest micro-batch the run can meet, collated exactly as the engine does.

    micro_batch_size examples of max_seq_len tokens, every position trained. Packed, they
    fill one row (with its block-causal mask). Unpacked, the last row is one token shorter,
    so the batch carries the padding mask a real padded batch has.
    """
    import torch

    from engine.data.pack import collate

    seq = cfg.data.max_seq_len
    g = torch.Generator().manual_seed(cfg.train.seed)
    items = []
    for i in range(micro_batch_size):
        n = seq - 1 if (not cfg.data.packing and i == micro_batch_size - 1 and micro_batch_size > 1) else seq
        ids = torch.randint(1, max(2, vocab), (n,), generator=g).tolist()
        items.append({"input_ids": ids, "labels": list(ids)})
    batch = collate(items, cfg.data.packing, pad_id, attn)
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _make_optimizer(cfg: RunConfig, params):
    import torch

    t = cfg.train
    if t.optimizer == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay, fused=True)


def measure(cfg: RunConfig, micro_batch_sizes: list[int] | None = None, steps: int = 3) -> list[ProbeResult]:
    """Peak allocated memory of `steps` optimizer steps at each micro-batch size.

    The model is loaded once; between sizes, gradients are dropped and the peak counter
    reset, so each result is the peak of a run that trains at that size.
    """
    if not cuda_available():
        raise ProbeUnavailable("measuring memory needs a CUDA GPU; none is visible here")
    import torch

    try:
        from engine.train.loss import batch_loss
        from engine.train.model import load_model
    except ImportError as e:
        raise ProbeUnavailable(f"the training engine is not available ({e})") from None

    sizes = micro_batch_sizes or [cfg.train.micro_batch_size]
    model, tok = load_model(cfg, "cuda")
    model.train()
    vocab = int(model.get_input_embeddings().weight.shape[0])
    attn = getattr(model.config, "_attn_implementation", None) or "sdpa"  # as the training loop does
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters; check method and lora.target_modules")
    opt = _make_optimizer(cfg, params)
    results = []
    for mbs in sizes:
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        batch = {k: v.to("cuda") for k, v in longest_batch(cfg, mbs, vocab, tok.pad_token_id or 0, attn).items()}
        try:
            for _ in range(steps):
                loss_sum, n = batch_loss(model, batch)
                (loss_sum / max(n, 1)).backward()
                if cfg.train.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            results.append(ProbeResult(mbs, cfg.data.max_seq_len, torch.cuda.max_memory_allocated(),
                                       torch.cuda.max_memory_reserved()))
        except torch.cuda.OutOfMemoryError:
            results.append(ProbeResult(mbs, cfg.data.max_seq_len, None, None, oom=True))
        finally:
            del batch
            loss_sum = None  # noqa: F841 - drop the graph before the next size
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    del model, opt
    torch.cuda.empty_cache()
    return results


def largest_fitting_measured(cfg: RunConfig, gpu_total: int, headroom: float, start: int,
                             max_probes: int = 6) -> tuple[int | None, list[ProbeResult]]:
    """Largest micro-batch whose measured peak stays under headroom, searched around `start`.

    Each probe is a fresh measure() (a fresh model), so one failed size cannot leave
    fragments that spoil the next.
    """
    limit = gpu_total * headroom
    tried: dict[int, ProbeResult] = {}

    def ok(mbs: int) -> bool:
        if mbs not in tried:
            tried[mbs] = measure(cfg, [mbs], steps=2)[0]
        r = tried[mbs]
        return not r.oom and r.peak_allocated is not None and r.peak_allocated <= limit

    lo, hi = 0, None  # lo fits (0 = none known), hi does not
    mbs = max(1, start)
    while len(tried) < max_probes:
        if ok(mbs):
            lo = mbs
            if hi is None:
                mbs *= 2
            elif hi - lo <= 1:
                break
            else:
                mbs = (lo + hi) // 2
        else:
            hi = mbs
            if mbs == 1 or hi - lo <= 1:
                break
            mbs = (lo + hi) // 2 if lo else max(1, mbs // 2)
    return (lo or None), [tried[k] for k in sorted(tried)]
