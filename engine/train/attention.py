"""Which attention kernel a run uses, and proof at start-up that it keeps packed examples apart.

Packed rows carry no mask at all (engine.data.pack): position ids restart at 0 for every
example and the batch holds the example boundaries (cu_seq_lens, max_len). Each route
turns that into per-example attention its own way:

- "ftwb_varlen" (CUDA): torch's own FlashAttention-2 varlen kernel
  (torch.nn.attention.varlen.varlen_attn), registered through transformers'
  AttentionInterface. Cost grows with the sum of squared example lengths; no T x T tensor
  exists anywhere, k/v stay at their own head count (GQA inside the kernel).
- "flash_attention_2": the flash_attn wheel through transformers, fed the same boundaries.
- "sdpa" / "eager": transformers sees restarting position ids and no attention_mask, and
  builds the block-causal mask itself, on the device (any 2D mask would switch that off).

`attn_implementation: auto` tries them in that order. Each candidate is probed on the real
model, device and dtype with a tiny forward and backward over a packed row, against sdpa
running each example alone (the independent reference); a route that raises or disagrees
is skipped with a `warning` event naming it, so an untested GPU cannot crash a run or
silently train on leaking examples.

Torch and transformers are imported inside the functions.
"""
from __future__ import annotations

from typing import Any, Callable

from engine.config import ConfigError

VARLEN = "ftwb_varlen"
# Routes that take the example boundaries as kwargs instead of deriving them on the device.
BOUNDARY_ROUTES = (VARLEN, "flash_attention_2")
PROBE_LENGTHS = (11, 29, 5, 47)   # a packed row of four examples: odd, unaligned lengths
# Worst relative error (per example, of the hidden states; input gradients get twice this,
# as backward through every layer adds more rounding) a route may show against the
# reference: kernels differ in summation order, a leak or a broken kernel by far more.
TOLERANCE = {"float32": 2e-3, "bfloat16": 4e-2, "float16": 2e-2}


class AttentionError(ConfigError):
    """No attention route keeps packed examples apart on this machine; the message says
    which failed and what to set instead."""


# ---------------------------------------------------------------- the varlen route

def _varlen_mask(*args, attention_mask=None, **kwargs):
    """Mask interface of the varlen route: packed rows and single causal rows need no mask;
    padded batches (evaluation, generation) get sdpa's, since they run through sdpa."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


_FOUND: dict = {"ref": None, "version": None, "val": None}


def _boundaries_from_position_ids(position_ids):
    """cu_seq_lens and max length from restarting position ids (one host sync per forward:
    cached across the layers and the checkpoint recompute); None when the row holds a
    single sequence. Callers that pass pack.model_inputs(batch, route) never get here."""
    import weakref

    ref = _FOUND["ref"]
    # A weak reference, not an address: a freed tensor's memory may hold the next row.
    if ref is None or ref() is not position_ids or _FOUND["version"] != position_ids._version:
        _FOUND.update(ref=weakref.ref(position_ids), version=position_ids._version,
                      val=_find_boundaries(position_ids))
    return _FOUND["val"]


def _find_boundaries(position_ids):
    import torch

    p = position_ids[0]
    starts = torch.nonzero(p == 0).flatten()
    if starts.numel() <= 1 and (starts.numel() == 0 or int(starts[0]) == 0):
        return None
    cu = torch.cat([starts, torch.tensor([p.numel()], device=p.device)]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, **kw):
    """transformers attention function: query (1, H, T, D), key/value (1, Hkv, T, D) of a
    packed row -> (1, T, H, D). Anything that is not a packed row (a padded batch, a
    KV-cache decode step) goes to transformers' sdpa unchanged."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu, max_len = kw.get("cu_seq_lens_q"), kw.get("max_length_q")
    packed = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if packed and cu is None and kw.get("position_ids") is not None:
        found = _boundaries_from_position_ids(kw["position_ids"])
        if found is not None:
            cu, max_len = found
    if not packed or cu is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kw)
    if not query.is_cuda:
        return _per_example_sdpa(query, key, value, cu, scaling), None
    if kw.get("softcap") is not None or kw.get("s_aux") is not None:
        raise NotImplementedError("ftwb_varlen: attention soft-capping and sinks are not supported")
    if dropout:
        raise NotImplementedError("ftwb_varlen: attention dropout is not supported")
    from torch.nn.attention.varlen import varlen_attn

    window = (-1, 0)
    sw = kw.get("sliding_window")
    if sw is not None and int(max_len) > sw:
        window = (int(sw) - 1, 0)
    q = query[0].transpose(0, 1).contiguous()   # (T, H, D)
    k = key[0].transpose(0, 1).contiguous()     # (T, Hkv, D)
    v = value[0].transpose(0, 1).contiguous()
    cu = cu.to(device=query.device, dtype=torch.int32)
    out = varlen_attn(q, k, v, cu, cu, int(max_len), int(max_len), scale=scaling, window_size=window,
                      enable_gqa=key.shape[1] != query.shape[1])
    return out[None], None


def _per_example_sdpa(query, key, value, cu, scaling):
    """The varlen route off CUDA (tests, and the same kwargs plumbing): one causal sdpa
    call per example, by the boundaries the route was given."""
    import torch

    b = cu.tolist()
    gqa = key.shape[1] != query.shape[1]
    outs = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=scaling, enable_gqa=gqa)
        for s, e in zip(b[:-1], b[1:])]
    return torch.cat(outs, 2).transpose(1, 2).contiguous()


def register_varlen() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(VARLEN, varlen_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, _varlen_mask)
    return VARLEN


def varlen_available(device: str, dtype) -> str | None:
    """None when torch's varlen kernel can run here, else why not."""
    import torch

    if device != "cuda":
        return "needs CUDA"
    try:
        import torch.nn.attention.varlen  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    if dtype not in (torch.bfloat16, torch.float16):
        return f"needs bf16 or fp16, the model is {str(dtype).replace('torch.', '')}"
    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        return "needs an Ampere or newer GPU (compute capability 8.0+)"
    return None


def flash_attn_available() -> str | None:
    try:
        import flash_attn  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a broken wheel is as good as none
        return f"flash_attn does not import ({type(e).__name__})"
    return None


def candidates(device: str, dtype) -> tuple[list[str], list[str]]:
    """(routes to try in order, why the others were not tried)."""
    order, skipped = [], []
    if device == "cuda":
        why = varlen_available(device, dtype)
        if why is None:
            order.append(VARLEN)
        else:
            skipped.append(f"{VARLEN}: {why}")
        why = flash_attn_available()
        if why is None:
            order.append("flash_attention_2")
        else:
            skipped.append(f"flash_attention_2: {why}")
    order.append("sdpa")
    return order, skipped


# ---------------------------------------------------------------- probing

def _decoder(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, base.get_decoder()


def boundary_kwargs(lengths: list[int], device=None) -> dict:
    """cu_seq_lens / max_length kwargs for a packed row of examples of these lengths."""
    import torch

    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    if device is not None:
        cu = cu.to(device)
    m = int(max(lengths))
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": m, "max_length_k": m}


def _rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def probe(model, route: str, device: str, lengths=PROBE_LENGTHS, seed: int = 0,
          autocast_dtype=None) -> float:
    """Worst relative error of `route` on a packed row against sdpa on each example alone,
    over the decoder's hidden states and (halved) the gradient reaching its input embeddings.
    Raises whatever the route raises. Leaves the model as it found it."""
    import torch

    base, decoder = _decoder(model)
    previous = base.config._attn_implementation
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(seed)
    vocab = int(base.get_input_embeddings().weight.shape[0])
    ids = [torch.randint(3, max(4, vocab), (n,), generator=g).to(device) for n in lengths]
    emb = base.get_input_embeddings()
    amp = (torch.autocast(device_type=device, dtype=autocast_dtype) if autocast_dtype is not None
           else torch.autocast(device_type=device, enabled=False))

    def run(impl: str, packed: bool):
        base.set_attn_implementation(impl)
        outs, grads = [], []
        rows = [torch.cat(ids)] if packed else ids
        for row in rows:
            x = emb(row[None]).detach().requires_grad_(True)
            if packed:
                pos = torch.cat([torch.arange(n, device=device) for n in lengths])[None]
                kw = boundary_kwargs(list(lengths), device) if impl in BOUNDARY_ROUTES else {}
            else:
                pos, kw = torch.arange(row.numel(), device=device)[None], {}
            with amp:
                h = decoder(inputs_embeds=x, position_ids=pos, **kw).last_hidden_state
            # A fixed projection of every position, so each one's gradient flows back.
            w = torch.linspace(-1, 1, h.shape[-1], device=device, dtype=torch.float32)
            (h.float() @ w).sum().backward()
            outs.append(h.detach()[0])
            grads.append(x.grad[0])
        if packed:
            return list(torch.split(outs[0], list(lengths))), list(torch.split(grads[0], list(lengths)))
        return outs, grads

    try:
        model.eval()
        for p in trainable:
            p.requires_grad_(False)
        ref_h, ref_g = run("sdpa", packed=False)
        got_h, got_g = run(route, packed=True)
        return max(max(_rel(a, b), _rel(c, d) / 2) for a, b, c, d in zip(got_h, ref_h, got_g, ref_g))
    finally:
        for p in trainable:
            p.requires_grad_(True)
            p.grad = None
        base.set_attn_implementation(previous)
        model.train(was_training)


def choose(model, cfg, device: str, dtype, emit: Callable[..., Any] | None = None,
           autocast_dtype=None) -> str:
    """Probe the candidate routes (or the pinned one) and switch the model to the first that
    agrees with the reference. Emits a `warning` for each route that failed, and one
    `attention` event with the choice."""
    emit = emit or (lambda *a, **k: None)
    pinned = cfg.model.attn_implementation
    if not cfg.data.packing:  # padded batches carry a 2D mask: every route handles them alike
        route = "sdpa" if pinned == "auto" else pinned
        _decoder(model)[0].set_attn_implementation(route)
        emit("attention", route=route, probe_error=None, reason="data.packing is off")
        return route
    if pinned == "auto":
        order, skipped = candidates(device, dtype)
    else:
        order, skipped = [pinned], []
    if VARLEN in order:
        register_varlen()
    key = str(dtype).replace("torch.", "") if autocast_dtype is None else str(autocast_dtype).replace("torch.", "")
    tol = TOLERANCE.get(key, 4e-2)
    failed: list[str] = []
    for route in order:
        try:
            err = probe(model, route, device, autocast_dtype=autocast_dtype)
        except Exception as e:  # noqa: BLE001 - any failure of a route means: not this one
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        else:
            if err <= tol:
                _decoder(model)[0].set_attn_implementation(route)
                emit("attention", route=route, probe_error=round(err, 6), tolerance=tol,
                     rejected=failed, not_tried=skipped)
                emit("log", message=f"attention: {route} (packed rows checked against examples run alone, "
                                    f"relative error {err:.2g})")
                return route
            why = f"packed examples differ from the same examples run alone (relative error {err:.3g} > {tol:g})"
        failed.append(f"{route}: {why}")
        nxt = order[order.index(route) + 1] if order.index(route) + 1 < len(order) else None
        emit("warning", kind="attention_fallback", route=route,
             message=f"attention route {route!r} failed its start-up check ({why})"
                     + (f"; trying {nxt!r}" if nxt else ""))
    hint = ("set model.attn_implementation: auto" if pinned != "auto"
            else "set data.packing: false (padded batches need no packed attention)")
    raise AttentionError(f"no attention route keeps packed examples apart here ({'; '.join(failed)}); {hint}")
