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
                  attn: str = "sdpa", tokens: int | None = None) -> dict:
    """The largest micro-batch the run can meet, collated exactly as the engine does.

    Examples of max_seq_len tokens (the longest, so attention costs the most), every position
    trained. Packed, they fill one row of `tokens` (default micro_batch_size x max_seq_len),
    the last example taking what is left. Unpacked, the last row is one token shorter, so
    the batch carries the padding mask a real padded batch has.
    """
    import torch

    from engine.data.pack import collate

    seq = cfg.data.max_seq_len
    g = torch.Generator().manual_seed(cfg.train.seed)
    if cfg.data.packing:
        total = tokens or micro_batch_size * seq
        lengths = [seq] * (total // seq) + ([total % seq] if total % seq else [])
    else:
        rows = max(1, (tokens // seq) if tokens else micro_batch_size)
        lengths = [seq] * rows
        if rows > 1:
            lengths[-1] = seq - 1
    items = []
    for n in lengths:
        ids = torch.randint(1, max(2, vocab), (n,), generator=g).tolist()
        items.append({"input_ids": ids, "labels": list(ids)})
    batch = collate(items, cfg.data.packing, pad_id)
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) or k in ("max_len", "num_trained")}


def _on(batch: dict, device: str) -> dict:
    import torch

    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


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
    from engine.train.loop import step_context
    from engine.train.model import compute_dtype

    amp = compute_dtype(cfg, "cuda")
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
        batch = _on(longest_batch(cfg, mbs, vocab, tok.pad_token_id or 0, attn), "cuda")
        try:
            for _ in range(steps):
                with step_context(model, cfg, "cuda", amp):
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


# ---------------------------------------------------------------- throughput-aware auto-fit
# Chosen at engine start on CUDA: the tokens per micro-batch and the checkpointing that
# train the most tokens per second within the GPU's memory, keeping the tokens per
# optimizer step the config asks for (fewer, larger micro-batches or more, smaller ones).

AUTO_FIT_FILE = "auto_fit.json"   # in the run directory: a resumed run reuses the choice
HEADROOM = 0.9                     # of the GPU's total memory, for the measured peak + optimizer states
PROBE_BUDGET_S = 90.0              # measuring stops after this long; the best so far wins
MAX_CANDIDATES = 10


def requested_tokens_per_step(cfg: RunConfig) -> int:
    from engine.memory import tokens_per_micro_batch

    return tokens_per_micro_batch(cfg) * cfg.train.grad_accum


def auto_fit_candidates(cfg: RunConfig) -> list[tuple[int, bool, int]]:
    """(tokens per micro-batch, checkpointing, grad_accum) to try, keeping tokens per step.

    Micro-batches are the requested tokens per step split in 1, 2, 4, ... parts, down to one
    max_seq_len (a row must hold the longest example); a pinned train.tokens_per_micro_batch
    is the only size tried. Checkpointing is tried both ways under auto_fit: auto, as set
    under auto_fit: tokens.
    """
    t, d = cfg.train, cfg.data
    step = requested_tokens_per_step(cfg)
    if t.tokens_per_micro_batch:
        sizes = [(t.tokens_per_micro_batch, t.grad_accum)]
    else:
        sizes, k = [], 1
        while step // k >= d.max_seq_len and len(sizes) < MAX_CANDIDATES // 2:
            tokens = step // k if d.packing else max(1, step // k // d.max_seq_len) * d.max_seq_len
            if not sizes or sizes[-1][0] != tokens:
                sizes.append((tokens, k))
            k *= 2
        if not sizes:
            sizes = [(d.max_seq_len, 1)]
    gcs = [False, True] if t.auto_fit == "auto" else [t.gradient_checkpointing]
    # Checkpointing off first, largest micro-batches first: usually the fastest.
    return [(tok, gc, ga) for gc in gcs for tok, ga in sizes]


def _optimizer_state_bytes(cfg: RunConfig, model) -> int:
    """What AdamW allocates at its first step (not yet there while probing)."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.train.optimizer == "adamw_8bit":
        return int(n * 2 * (1 + 4 / 256))
    return n * 2 * next((p.element_size() for p in model.parameters() if p.requires_grad), 4)


def measure_candidate(model, cfg: RunConfig, device: str, tokens: int, gc: bool, pad_id: int = 0,
                      steps: int = 2) -> dict:
    """Forward + backward of the longest micro-batch of `tokens` tokens with checkpointing
    `gc`, as the engine's step runs it: trained tokens/s and peak allocated bytes."""
    import time

    import torch

    from engine.train.loop import step_context
    from engine.train.loss import batch_loss
    from engine.train.model import compute_dtype, set_gradient_checkpointing

    set_gradient_checkpointing(model, gc)
    vocab = int((model.get_base_model() if hasattr(model, "get_base_model") else model)
                .get_input_embeddings().weight.shape[0])
    batch = _on(longest_batch(cfg, 1, vocab, pad_id, tokens=tokens), device)
    amp = compute_dtype(cfg, device)
    cuda = device == "cuda"
    params = [p for p in model.parameters() if p.requires_grad]
    result: dict = {"tokens_per_micro_batch": tokens, "gradient_checkpointing": gc}
    model.train()
    try:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(steps + 1):  # the first is a warm-up (kernel selection, allocator)
            t0 = time.perf_counter()
            with step_context(model, cfg, device, amp):
                loss_sum, n = batch_loss(model, batch, cfg.train.loss_kernel)
            (loss_sum / max(n, 1)).backward()
            if cuda:
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
            loss_sum = None
        per = sorted(times)[len(times) // 2]
        result.update(trained_tokens_per_s=round(batch["num_trained"] / per, 1), step_s=round(per, 4),
                      peak_allocated=torch.cuda.max_memory_allocated() if cuda else None, oom=False)
    except torch.cuda.OutOfMemoryError:
        result.update(trained_tokens_per_s=None, peak_allocated=None, oom=True)
    finally:
        loss_sum = None  # noqa: F841 - drop the graph
        for p in params:
            p.grad = None
        del batch
        if cuda:
            torch.cuda.empty_cache()
    return result


def auto_fit(model, cfg: RunConfig, device: str, emit=None, run_dir=None, pad_id: int = 0,
             force: bool = False, budget_s: float = PROBE_BUDGET_S, gpu_total: int | None = None) -> dict:
    """Choose train.tokens_per_micro_batch, grad_accum and gradient_checkpointing for this
    GPU, set them on `cfg` (and checkpointing on `model`), and emit one `auto_fit` event
    with the choice and every measurement. Off on CPU (`force` measures anyway, for tests
    and smoke checks), under train.auto_fit: off, and for preference objectives. A resumed
    run reuses the choice saved in RUN_DIR/auto_fit.json."""
    import json
    import time
    from pathlib import Path

    from engine.config import atomic_write_text
    from engine.train.model import set_gradient_checkpointing

    emit = emit or (lambda *a, **k: None)
    t = cfg.train
    saved = Path(run_dir) / AUTO_FIT_FILE if run_dir else None
    if saved is not None and saved.exists():
        choice = json.loads(saved.read_text())
        _apply(cfg, model, choice)
        emit("auto_fit", status="reused", **choice)
        return choice
    reason = None
    if t.auto_fit == "off":
        reason = "train.auto_fit: off"
    elif device != "cuda" and not force:
        reason = "auto-fit measures GPU memory and speed; on CPU the config is used as set"
    elif t.objective != "sft":
        reason = f"train.objective: {t.objective} batches pairs its own way; the config is used as set"
    if reason:
        emit("auto_fit", status="off", reason=reason, tokens_per_micro_batch=_tokens(cfg),
             grad_accum=t.grad_accum, gradient_checkpointing=t.gradient_checkpointing)
        return {}
    limit = None
    if device == "cuda":
        import torch

        gpu_total = gpu_total or torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        limit = int(gpu_total * HEADROOM)
    states = _optimizer_state_bytes(cfg, model)
    est_fn = _estimator(cfg, model)
    t0 = time.perf_counter()
    measured, skipped = [], []
    oom_at: dict[bool, int] = {}
    for tokens, gc, ga in auto_fit_candidates(cfg):
        est = est_fn(tokens, gc)
        if limit and est is not None and est > limit * 1.25:
            skipped.append({"tokens_per_micro_batch": tokens, "gradient_checkpointing": gc,
                            "why": f"estimated {est / 2**30:.1f} GiB"})
            continue
        if gc in oom_at and tokens >= oom_at[gc]:
            skipped.append({"tokens_per_micro_batch": tokens, "gradient_checkpointing": gc,
                            "why": f"{oom_at[gc]} tokens already ran out of memory"})
            continue
        if measured and time.perf_counter() - t0 > budget_s:
            skipped.append({"tokens_per_micro_batch": tokens, "gradient_checkpointing": gc,
                            "why": "measuring time spent"})
            continue
        r = measure_candidate(model, cfg, device, tokens, gc, pad_id)
        r["grad_accum"] = ga
        r["estimated_peak"] = est
        if r["peak_allocated"] is not None:
            r["peak_with_optimizer"] = r["peak_allocated"] + states
        r["fits"] = not r["oom"] and (limit is None or r.get("peak_with_optimizer", 0) <= limit)
        if r["oom"]:
            oom_at[gc] = min(tokens, oom_at.get(gc, tokens))
        measured.append(r)
    fitting = [r for r in measured if r["fits"]]
    spent = round(time.perf_counter() - t0, 1)
    if not fitting:
        set_gradient_checkpointing(model, t.gradient_checkpointing)
        emit("warning", kind="auto_fit",
             message="auto-fit found no micro-batch that fits this GPU's memory; training with the config as "
                     "set (lower data.max_seq_len, turn on train.gradient_checkpointing or use method: qlora)")
        emit("auto_fit", status="none_fit", measured=measured, skipped=skipped, probe_s=spent)
        return {}
    best = max(fitting, key=lambda r: r["trained_tokens_per_s"])
    choice = {"tokens_per_micro_batch": best["tokens_per_micro_batch"], "grad_accum": best["grad_accum"],
              "gradient_checkpointing": best["gradient_checkpointing"],
              "tokens_per_step": best["tokens_per_micro_batch"] * best["grad_accum"],
              "requested_tokens_per_step": requested_tokens_per_step(cfg),
              "trained_tokens_per_s": best["trained_tokens_per_s"],
              "peak_allocated": best.get("peak_with_optimizer"), "limit": limit,
              "estimated_peak": best["estimated_peak"]}
    _apply(cfg, model, choice)
    if saved is not None:
        atomic_write_text(saved, json.dumps(choice, indent=1))
    emit("auto_fit", status="chosen", **choice, measured=measured, skipped=skipped, probe_s=spent)
    emit("log", message=f"auto-fit: {choice['tokens_per_micro_batch']} tokens per micro-batch x "
                        f"{choice['grad_accum']} (of {choice['requested_tokens_per_step']} per step asked), "
                        f"gradient checkpointing {'on' if choice['gradient_checkpointing'] else 'off'}: "
                        f"{best['trained_tokens_per_s']:.0f} trained tokens/s measured, peak "
                        f"{(choice['peak_allocated'] or 0) / 2**30:.1f} GiB ({len(measured)} tried in {spent}s)")
    return choice


def _tokens(cfg: RunConfig) -> int:
    from engine.memory import tokens_per_micro_batch

    return tokens_per_micro_batch(cfg)


def _apply(cfg: RunConfig, model, choice: dict) -> None:
    from engine.train.model import set_gradient_checkpointing

    cfg.train.tokens_per_micro_batch = int(choice["tokens_per_micro_batch"])
    cfg.train.grad_accum = int(choice["grad_accum"])
    cfg.train.gradient_checkpointing = bool(choice["gradient_checkpointing"])
    set_gradient_checkpointing(model, cfg.train.gradient_checkpointing)


def _estimator(cfg: RunConfig, model):
    """(tokens, gc) -> the analytic peak allocated bytes, or None where the estimator does
    not know the model's shape."""
    from engine import memory

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mc = base.config.to_dict()

    def est(tokens: int, gc: bool):
        c = cfg.copy()
        c.train.tokens_per_micro_batch, c.train.gradient_checkpointing = tokens, gc
        route = getattr(base.config, "_attn_implementation", None)
        try:
            return memory.estimate(c, mc, assumptions=memory.Assumptions(attention_route=route)).peak_allocated
        except Exception:  # noqa: BLE001 - a shape the estimator does not know: measure only
            return None

    return est
