"""FSDP2 (torch's `fully_shard`): weights, gradients and optimizer states sharded over ranks.

Used for full fine-tuning and for models whose memory estimate does not fit one GPU; LoRA
that fits goes through DDP instead (`choose_strategy` decides and says why). Everything
here except `choose_strategy` and `per_rank_bytes` is collective: every rank calls it at
the same point, and only rank 0 reads or writes files.

Where the training engine calls each piece (torchrun has set up the process group):

1. Pick the strategy before loading the model:
   `choose_strategy(cfg.method, world_size, estimate.total, gpu_total, cfg.train.strategy)`
   -> `Strategy(name, reason)`; emit the reason in a `log` event.
2. Load for FSDP2 instead of `from_pretrained(..., device_map=...)` (which would put the
   whole model on one GPU): `load_pretrained_sharded(path, device, dtype=..., prepare=fn,
   mp_policy=mixed_precision(device))`. Rank 0 reads the weights on the CPU; the other
   ranks build the model on the meta device; `prepare(model)` (gradient checkpointing,
   requires_grad, LoRA) runs on every rank before sharding; the weights reach every rank's
   shard by broadcast. An already loaded model is sharded in place with `shard(model, ...)`.
   dtype float32 keeps fp32 shards (master weights, fp32 AdamW states) while the CUDA
   policy computes in bf16; dtype bfloat16 halves the shards (what engine.memory counts).
   attention.choose and every other forward run on all ranks alike, after sharding.
3. The optimizer is built AFTER sharding, from `model.parameters()` (they are DTensors).
4. The step: gradients are SUMMED over ranks (`sum_gradients`, set by `shard`), as the
   DDP path sums them: each rank's loss is divided by the step's global count of trained
   tokens, nothing else changes in the loop.
   Clip with `clip_grad_norm(params, max_norm)`: the global norm, as a plain tensor.
   `weights_finite(model)` replaces checkpoint.weights_finite (it all-reduces).
5. Checkpoints: `save_state(model, optimizer, tokenizer, ckpt_tmp_dir)` writes the full
   model (a `save_pretrained` directory) and the full optimizer state (optimizer.pt, keyed
   by parameter names) from rank 0; `load_state(model, optimizer, ckpt_dir)` restores both
   on every rank (rank 0 reads, then broadcasts). The files hold full, unsharded tensors,
   so they do not depend on the number of ranks. Scheduler, RNG and trainer state stay
   checkpoint.py's business (the RNG per rank).
6. The final model: `export_pretrained(model, tokenizer, out_dir)`: full state gathered to
   rank 0's CPU and written with `save_pretrained` (a PEFT adapter directory for LoRA), so
   `AutoModelForCausalLM.from_pretrained` / `PeftModel.from_pretrained` load it as usual.

Every forward (evaluation, sample generation) is collective too: all ranks run the same
number of forwards, or the all-gathers of the ranks that run fewer never complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from engine.config import ConfigError

STRATEGIES = ("auto", "ddp", "fsdp2")
HEADROOM = 0.9  # as engine.memory.Estimate.fits: a run that needs >90% of the GPU does not fit
OPTIMIZER_FILE = "optimizer.pt"
GiB = 1024 ** 3


@dataclass(frozen=True)
class Strategy:
    name: str    # "single" | "ddp" | "fsdp2"
    reason: str  # one sentence for the log: why this one

    def __iter__(self):  # name, reason = choose_strategy(...)
        return iter((self.name, self.reason))


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def choose_strategy(method: str, world_size: int, estimate_bytes: int | None, device_bytes: int | None,
                    override: str = "auto") -> Strategy:
    """How `world_size` processes train `method`: one process -> single; LoRA/QLoRA whose
    estimate fits one GPU -> ddp; full fine-tuning, or a model that does not fit -> fsdp2.
    `override` is train.strategy. Without a known device size (CPU) everything fits.
    Raises ConfigError for a combination that cannot run (QLoRA with FSDP2)."""
    if override not in STRATEGIES:
        raise ConfigError(f"train.strategy: {override!r} is not allowed; expected one of "
                          + ", ".join(repr(s) for s in STRATEGIES))
    if world_size <= 1:
        extra = f" (train.strategy: {override} applies to several processes only)" if override != "auto" else ""
        return Strategy("single", "one process: no data parallelism" + extra)
    known = bool(estimate_bytes) and bool(device_bytes)
    fits = not known or estimate_bytes <= device_bytes * HEADROOM
    size = (f"estimate {_gib(estimate_bytes)} per GPU of {_gib(device_bytes)}" if known
            else "no GPU memory to compare with")
    if method == "qlora":
        if override == "fsdp2":
            raise ConfigError("train.strategy: 'fsdp2' cannot shard a QLoRA model (its 4-bit bitsandbytes "
                              "weights are not sharded by FSDP2 here); use train.strategy: auto or ddp, or "
                              "method: lora with fsdp2")
        if not fits:
            raise ConfigError(f"method: qlora does not fit one GPU ({size}) and FSDP2 cannot shard its 4-bit "
                              "weights; lower train.micro_batch_size or data.max_seq_len, or use method: lora "
                              "with train.strategy: fsdp2 to shard the base model over the GPUs")
        return Strategy("ddp", f"QLoRA on {world_size} processes: each holds the 4-bit base and the adapter "
                               f"gradients are all-reduced ({size})")
    if override == "ddp":
        if not fits:
            return Strategy("ddp", f"train.strategy: ddp as set, although the {size} does not fit "
                                   "(every rank holds the whole model); fsdp2 would shard it")
        return Strategy("ddp", f"train.strategy: ddp as set ({size})")
    if override == "fsdp2":
        return Strategy("fsdp2", f"train.strategy: fsdp2 as set: weights, gradients and optimizer states "
                                 f"sharded over {world_size} ranks ({size})")
    if method == "full":
        return Strategy("fsdp2", f"full fine-tuning on {world_size} processes: FSDP2 shards weights, gradients "
                                 f"and optimizer states instead of copying them to every rank ({size})")
    if not fits:
        return Strategy("fsdp2", f"the model does not fit one GPU ({size}): FSDP2 shards it over "
                                 f"{world_size} ranks")
    return Strategy("ddp", f"LoRA on {world_size} processes fits one GPU ({size}): each rank holds the "
                           "frozen base, adapter gradients are all-reduced")


SHARDED_TERMS = ("weights", "lora_params", "gradients", "optimizer_states", "master_weights")


def per_rank_bytes(estimate, world_size: int) -> int:
    """An engine.memory.Estimate's total on one rank under FSDP2: weights, gradients and
    optimizer states divided by the ranks; activations and logits are per rank already.
    Not counted: the whole weights of the one or two layers gathered at a time (FSDP2
    prefetches the next), about 2/layers of the weights term."""
    n = max(1, world_size)
    return sum(b // n if name in SHARDED_TERMS else b for name, b, _ in estimate.breakdown)


# ---------------------------------------------------------------- sharding

def mixed_precision(device_type: str, compute_dtype=None):
    """bf16 (or `compute_dtype`) parameters for compute with fp32 gradient reduction on CUDA;
    on CPU everything stays in the parameters' own dtype (fp32)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device_type == "cuda":
        return MixedPrecisionPolicy(param_dtype=compute_dtype or torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32)


def _hf_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder_layers(model) -> list:
    base = _hf_model(model)
    decoder = base.get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None or not len(layers):
        raise ConfigError(f"train.strategy: fsdp2 cannot find the decoder layers of {type(base).__name__} "
                          "(expected model.get_decoder().layers); use train.strategy: ddp")
    return list(layers)


def default_mesh(device_type: str):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device_type, (dist.get_world_size(),))


def shard(model, mesh=None, mp_policy=None, reshard_after_forward: bool = True):
    """Shard `model` in place with FSDP2 and return it.

    One unit per decoder layer, the input embeddings, the lm_head (one unit with the
    embeddings when the two share a weight), the decoder (its final norm), and the whole
    model as the root. The engine's loss calls the decoder and the lm_head apart
    (engine.train.loss), and the attention check calls the embeddings and the decoder apart
    (engine.train.attention.probe), so each gathers its own weights; the root is
    initialised here so that every unit belongs to one tree whichever of them runs first
    (for a model on the meta device, once it is materialised: load_pretrained_sharded
    does both).
    """
    import torch
    from torch.distributed.fsdp import fully_shard

    if mesh is not None:
        device_type = mesh.device_type
    else:
        device_type = next(model.parameters()).device.type
        if device_type == "meta":
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        mesh = default_mesh(device_type)
    mp_policy = mp_policy if mp_policy is not None else mixed_precision(device_type)
    kw = dict(mesh=mesh, mp_policy=mp_policy)
    for layer in _decoder_layers(model):
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kw)
    base = _hf_model(model)
    emb, head = base.get_input_embeddings(), base.get_output_embeddings()
    if head is not None and any(p is q for p in head.parameters() for q in emb.parameters()):
        fully_shard([emb, head], reshard_after_forward=reshard_after_forward, **kw)  # tied embeddings
    else:
        fully_shard(emb, reshard_after_forward=reshard_after_forward, **kw)
        if head is not None:
            fully_shard(head, reshard_after_forward=reshard_after_forward, **kw)
    fully_shard(base.get_decoder(), reshard_after_forward=reshard_after_forward, **kw)  # the final norm
    fully_shard(model, **kw)
    sum_gradients(model)
    if not any(p.is_meta for p in model.parameters()):
        _init_root(model)
    return model


def sum_gradients(model) -> None:
    """Reduce gradients as a plain SUM over ranks (FSDP2 averages by default), as the DDP
    path (engine.distributed.World.sum_gradients) does: each rank's loss is divided by the
    step's global count of trained tokens, so the sum is the gradient of the global mean.
    A factor of 1 with sum-only collectives runs on every backend (gloo has no AVG)."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)


def _init_root(model) -> None:
    # Private in torch 2.13: fixes the whole model as the root before any unit runs forward.
    # Without it the decoder (run first by the loss) would make itself a root of its own.
    model._get_fsdp_state()._lazy_init()


def load_pretrained_sharded(path: str, device: str, *, dtype=None, prepare: Callable[[Any], Any] | None = None,
                            mp_policy=None, mesh=None, **from_pretrained: Any):
    """A causal LM from a `save_pretrained` directory, sharded with FSDP2, without any rank
    holding the whole model on its GPU.

    Rank 0 loads the weights on the CPU; the other ranks build the same model on the meta
    device (no memory). `prepare(model)` (returning the model to shard: gradient
    checkpointing, requires_grad, LoRA) runs on every rank before sharding. After
    sharding, rank 0's full weights and buffers are broadcast into every rank's shard.
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    rank = dist.get_rank()
    model = _on_rank0(lambda: AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **from_pretrained))
    if rank != 0:
        keep = {k: v for k, v in from_pretrained.items() if k in ("attn_implementation", "trust_remote_code")}
        config = AutoConfig.from_pretrained(path, trust_remote_code=keep.get("trust_remote_code", False))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, **keep)
    if prepare is not None:
        model = prepare(model) or model
    full = model.state_dict() if rank == 0 else {}
    device_type = torch.device(device).type
    mp_policy = mp_policy if mp_policy is not None else mixed_precision(device_type)
    # fully_shard moves each unit to the device as it shards it (one unit at a time on rank 0)
    # and leaves meta tensors as they are; to_empty then allocates only this rank's shards.
    shard(model, mesh=mesh if mesh is not None else default_mesh(device_type), mp_policy=mp_policy)
    if rank != 0:
        model.to_empty(device=device)
        _init_root(model)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    # Buffers (rotary frequencies) are not in the state dict when non-persistent: broadcast them too.
    for _, buf in model.named_buffers():
        dist.broadcast(buf, 0)
    del full
    return model


# ---------------------------------------------------------------- the step

def clip_grad_norm(params: Iterable, max_norm: float):
    """Clip gradients to the global norm over all ranks' shards; returns that norm (before
    clipping) as a plain tensor on this rank's device. `max_norm` 0 only measures."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_(list(params), max_norm if max_norm > 0 else float("inf"))
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def weights_finite(model) -> bool:
    """True when every rank's shards of the trainable weights are finite (one all-reduce)."""
    import torch
    import torch.distributed as dist

    flags = [torch.isfinite(_local(p.detach())).all() for p in model.parameters() if p.requires_grad]
    device = _local(next(model.parameters())).device
    ok = torch.stack(flags).all().to(torch.int32).to(device) if flags else torch.ones((), dtype=torch.int32,
                                                                                        device=device)
    ok = ok.reshape(1)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def _local(t):
    return t.to_local() if hasattr(t, "to_local") else t


# ---------------------------------------------------------------- state

class RankZeroError(RuntimeError):
    """What rank 0 failed to read or write, raised on the other ranks too."""


def _on_rank0(fn: Callable[[], Any]) -> Any:
    """fn() on rank 0 only (None elsewhere). Every rank learns whether it failed, and all
    raise: rank 0 its own exception, the others a RankZeroError with its message, so no
    rank is left waiting in the next collective for one that gave up."""
    import torch.distributed as dist

    result, err = None, None
    if dist.get_rank() == 0:
        try:
            result = fn()
        except Exception as e:  # re-raised below, on every rank
            err = e
    box = [None if err is None else f"rank 0: {type(err).__name__}: {err}"]
    dist.broadcast_object_list(box, src=0)
    if err is not None:
        raise err
    if box[0] is not None:
        raise RankZeroError(box[0])
    return result


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_model_state(model) -> dict:
    """The whole model's state dict on rank 0's CPU (every rank must call; the others get {})."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's state keyed by parameter names, full tensors on rank 0's CPU."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def export_pretrained(model, tokenizer, out_dir: Path, state: dict | None = None) -> None:
    """Rank 0 writes a normal `save_pretrained` directory (a PEFT adapter for LoRA) from the
    gathered full state; collective. `state` reuses one already gathered."""
    state = full_model_state(model) if state is None else state

    def write():
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)

    _on_rank0(write)


def save_state(model, optimizer, tokenizer, out_dir: Path) -> None:
    """Checkpoint weights (export_pretrained) and optimizer state (optimizer.pt) into
    `out_dir` from rank 0; collective, and every rank returns once the files are written."""
    import torch

    export_pretrained(model, tokenizer, out_dir)
    osd = full_optimizer_state(model, optimizer)
    _on_rank0(lambda: torch.save(osd, Path(out_dir) / OPTIMIZER_FILE))


def _read_weights(ckpt_dir: Path) -> dict:
    """The full state dict of a save_pretrained directory, keyed as the wrapped model names it."""
    from safetensors.torch import load_file

    files = sorted(Path(ckpt_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{ckpt_dir}: no .safetensors weights")
    state: dict = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def load_state(model, optimizer, ckpt_dir: Path) -> None:
    """Restore what save_state wrote: rank 0 reads the files and broadcasts them into every
    rank's shards; collective."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    peft = hasattr(model, "get_base_model")  # a PEFT adapter directory: only the adapter's tensors

    def read():
        msd = _peft_full_state(model, ckpt_dir) if peft else _match_keys(model, _read_weights(ckpt_dir))
        return msd, torch.load(Path(ckpt_dir) / OPTIMIZER_FILE, weights_only=False)

    msd, osd = _on_rank0(read) or ({}, {})
    set_model_state_dict(model, msd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                              strict=not peft))
    set_optimizer_state_dict(model, optimizer, osd,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    dist.barrier()


def _match_keys(model, state: dict) -> dict:
    """save_pretrained may drop a tied lm_head weight; put it back under the model's own name."""
    missing = {n for n, _ in model.named_parameters()} - set(state)
    for name in missing:
        tied = getattr(_hf_model(model), "_tied_weights_keys", None) or {}
        src = tied.get(name) if isinstance(tied, dict) else None
        if src in state:
            state[name] = state[src]
    return state


def _peft_full_state(model, ckpt_dir: Path) -> dict:
    """The adapter file's tensors under the wrapped model's parameter names."""
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / "adapter_model.safetensors"
    saved = load_file(str(path))
    adapter = getattr(model, "active_adapter", "default")
    out = {}
    for name, _ in model.named_parameters():
        key = name.replace(f".{adapter}.", ".")
        if key in saved:
            out[name] = saved[key]
    if len(out) != len(saved):  # strict=False below must never hide an adapter that does not fit
        unknown = sorted(set(saved) - {n.replace(f".{adapter}.", ".") for n in out})[:3]
        raise ValueError(f"{path}: {len(saved) - len(out)} adapter tensors do not match this model "
                         f"(e.g. {', '.join(unknown)}); the checkpoint is from another adapter shape")
    return out

