"""Analytic GPU memory estimate for a run, from the model's config.json alone.

No weights are read and nothing heavy is imported: the estimate is a sum of named terms
(weights, adapters, gradients, optimizer states, activations, logits, overheads), each in
bytes with a one-line note saying how it was counted, so a user can see *why* a run will
not fit. The formulas follow what PyTorch autograd actually keeps for a Llama-shaped
decoder block (RMSNorm in fp32, SwiGLU MLP, rotary attention through sdpa) under PEFT LoRA.

The engine-dependent choices (adapter dtype, chunked logits, optimizer state dtype ...)
are explicit fields of `Assumptions`, so the estimate can follow the engine when it changes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config import ConfigError, RunConfig

MiB = 1024 ** 2
GiB = 1024 ** 3

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

# The seven linears of a Llama-shaped block: what PEFT's "all-linear" targets there.
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# NF4 storage per quantised weight: 4 bits, plus one absmax per 64-weight block. With
# double quantisation the absmax is stored in 8 bits and each group of 256 absmax values
# gets one fp32 second-level scale (bitsandbytes' defaults).
NF4_BLOCK = 64
NF4_DQ_GROUP = 256
ADAM8_BLOCK = 256  # bitsandbytes 8-bit optimizer: one fp32 absmax per 256 state values


class ModelConfigError(ConfigError):
    """The model's config.json is missing, unreadable or not a shape the estimator knows."""


@dataclass(frozen=True)
class Assumptions:
    """What the training engine does that changes memory; each field is one decision."""

    # dtype of LoRA A/B weights; None = what engine/train/model.py does: fp32 for LoRA and
    # QLoRA alike (master weights; PEFT's autocast_adapter_dtype).
    adapter_dtype: str | None = None
    # The step runs under autocast in the compute dtype (engine.train.loop.step_context), so
    # the adapter paths save their activations in the compute dtype, not the adapter's, and
    # autocast keeps one compute-dtype copy of each adapter weight per forward.
    autocast: bool = True
    # "param": AdamW states take the parameter's dtype (torch.optim.AdamW);
    # "float32": states are always fp32 (mixed-precision optimizers).
    optimizer_state_dtype: str = "param"
    # An extra fp32 copy of every trainable parameter that is not fp32 (mixed precision).
    master_weights: bool = False
    # lm_head + cross-entropy computed over chunks of tokens: only one chunk's logits live.
    chunked_logits: bool = True
    logits_chunk_tokens: int = 2048  # engine.train.loss.CHUNK_TOKENS
    # ... unless all the fp32 logits stay under this many bytes: then one plain pass
    logits_no_recompute_bytes: int = 256 * MiB  # engine.train.loss.NO_RECOMPUTE_BYTES
    # The loss upcasts logits to fp32 (HF's default loss does); else it stays in compute dtype.
    loss_upcast_fp32: bool = True
    # Attention route of packed rows; None = what engine.train.attention picks for
    # model.attn_implementation: auto -> torch's varlen kernel (the GPUs this estimate is
    # for), which needs no mask and keeps k/v at their own head count.
    attention_route: str | None = None
    # k/v repeated to all query heads before sdpa (transformers does when a mask is passed);
    # None = when the route has a mask.
    gqa_expanded: bool | None = None
    # sdpa turns a boolean mask into an additive bias in the compute dtype, per layer, and
    # the memory-efficient kernel keeps it for backward (torch's attention.cpp).
    mask_bias_per_layer: bool = True
    # prepare_model_for_kbit_training-style upcast of embeddings, norms and lm_head to fp32.
    kbit_upcast_fp32: bool = False
    cuda_context_bytes: int = 500 * MiB
    fragmentation: float = 0.05  # allocator fragmentation margin, fraction of the tensors

    def with_(self, **kw: Any) -> "Assumptions":
        return replace(self, **kw)


# Overheads that torch.cuda.max_memory_allocated does not see.
OVERHEAD_TERMS = ("cuda_context", "fragmentation")


@dataclass
class ModelShape:
    """The numbers of a Llama-shaped decoder that memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    model_type: str = "llama"

    @classmethod
    def from_config(cls, mc: dict[str, Any]) -> "ModelShape":
        if not isinstance(mc, dict):
            raise ModelConfigError("model config: expected the contents of config.json (a JSON object)")
        if "hidden_size" not in mc and isinstance(mc.get("text_config"), dict):
            mc = {**mc["text_config"], "tie_word_embeddings": mc.get("tie_word_embeddings",
                                                                   mc["text_config"].get("tie_word_embeddings"))}
        need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        missing = [k for k in need if not isinstance(mc.get(k), int) or mc.get(k) <= 0]
        if missing:
            kind = mc.get("model_type", "unknown")
            raise ModelConfigError(
                f"model config (model_type {kind!r}): missing or invalid {', '.join(missing)}; the estimator "
                "handles Llama-shaped decoders (llama, mistral, qwen2, ...) whose config.json has these keys")
        heads = mc["num_attention_heads"]
        head_dim = mc.get("head_dim") or mc["hidden_size"] // heads
        return cls(hidden=mc["hidden_size"], intermediate=mc["intermediate_size"],
                   layers=mc["num_hidden_layers"], heads=heads,
                   kv_heads=mc.get("num_key_value_heads") or heads, head_dim=int(head_dim),
                   vocab=mc["vocab_size"], tied_embeddings=bool(mc.get("tie_word_embeddings", False)),
                   model_type=str(mc.get("model_type", "llama")))

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear in one block."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Parameters in all block linears (the ones bitsandbytes quantises)."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    def embedding_params(self) -> int:
        """Input embedding plus lm_head (one matrix when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def norm_params(self) -> int:
        return self.hidden * (2 * self.layers + 1)

    def n_params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.norm_params()


def lora_targets(target_modules: str | list[str]) -> tuple[list[str], list[str]]:
    """(targeted block linears, names the estimator does not know and did not count)."""
    if isinstance(target_modules, str):
        target_modules = list(LLAMA_LINEARS) if target_modules == "all-linear" else [target_modules]
    known = [n for n in LLAMA_LINEARS if any(t == n or t.endswith("." + n) for t in target_modules)]
    unknown = [t for t in target_modules if not any(t == n or t.endswith("." + n) for n in LLAMA_LINEARS)]
    return known, unknown


def lora_params(shape: ModelShape, r: int, targets: list[str]) -> int:
    """r * (in + out) per targeted linear per layer (A is r x in, B is out x r)."""
    lin = shape.linears()
    return shape.layers * sum(r * (lin[n][0] + lin[n][1]) for n in targets)


def nf4_bytes_per_param(double_quant: bool) -> float:
    if double_quant:
        return 0.5 + 1 / NF4_BLOCK + 4 / (NF4_BLOCK * NF4_DQ_GROUP)
    return 0.5 + 4 / NF4_BLOCK


# ---------------------------------------------------------------- the estimate

@dataclass
class Estimate:
    breakdown: list[tuple[str, int, str]]
    n_params: int
    trainable_params: int
    tokens_per_micro_batch: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(b for _, b, _ in self.breakdown)

    @property
    def peak_allocated(self) -> int:
        """What torch.cuda.max_memory_allocated should show: the tensors, no overheads."""
        return sum(b for n, b, _ in self.breakdown if n not in OVERHEAD_TERMS)

    def term(self, name: str) -> int:
        return next((b for n, b, _ in self.breakdown if n == name), 0)

    def fits(self, gpu_total: int, headroom: float = 0.9) -> bool:
        return self.total <= gpu_total * headroom

    def to_dict(self) -> dict[str, Any]:
        return {"total_bytes": self.total, "peak_allocated_bytes": self.peak_allocated,
                "n_params": self.n_params, "trainable_params": self.trainable_params,
                "tokens_per_micro_batch": self.tokens_per_micro_batch,
                "breakdown": [{"name": n, "bytes": b, "note": t} for n, b, t in self.breakdown],
                "notes": list(self.notes)}


def _compute_dtype(cfg: RunConfig) -> str:
    if cfg.method == "qlora":
        return cfg.quant.compute_dtype
    # "auto" picks bf16 on the GPUs this estimate is for (Ampere and newer).
    return "bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype


def _layer_activation_bytes(shape: ModelShape, targets: list[str], full: bool, r: int, dropout: bool,
                            b: int, a: int, gqa_expanded: bool) -> int:
    """Bytes autograd keeps per token for one decoder block during forward.

    b = compute dtype bytes, a = adapter dtype bytes. Frozen base linears keep no input;
    a LoRA linear keeps its (dropped-out, dtype-cast) input; linears that share an input
    and need it unchanged share one saved tensor.
    """
    h, i, qd, kvd = shape.hidden, shape.intermediate, shape.q_dim, shape.kv_dim
    total = 0
    # Two RMSNorms: the fp32 upcast of the input is kept (pow and mul); with a trainable
    # weight the normalised bf16 output is kept too.
    total += 2 * (4 * h + (b * h if full else 0))
    # Inputs of linears, by shared input tensor.
    groups = {"attn_in": (h, ("q_proj", "k_proj", "v_proj")), "attn_out": (qd, ("o_proj",)),
              "mlp_in": (h, ("gate_proj", "up_proj")), "mlp_mid": (i, ("down_proj",))}
    for width, names in groups.values():
        shared = full
        for n in names:
            if full or n not in targets:
                continue
            total += a * r  # lora_A output, kept by lora_B
            if dropout:
                total += a * width + width  # dropout output cast to the adapter dtype + bool mask
            elif a != b:
                total += a * width  # each LoRA layer casts the input to its own dtype
            else:
                shared = True
        if shared:
            total += b * width
    # Attention: sdpa keeps q, k, v (k/v expanded to all heads under GQA when a mask is
    # passed), its output and the fp32 logsumexp per head.
    kv_saved = qd if gqa_expanded else kvd
    total += b * (qd + 2 * kv_saved + qd) + 4 * shape.heads
    # SwiGLU: silu keeps gate's output, the product keeps silu(gate) and up.
    total += 3 * b * i
    return total


def estimate(cfg: RunConfig, model_config: dict[str, Any], gpu_total_bytes: int | None = None,
             assumptions: Assumptions | None = None) -> Estimate:
    """The memory a training step of `cfg` needs on one GPU, term by term.

    `gpu_total_bytes` is only carried into the notes; use `Estimate.fits` for the verdict.
    """
    A = assumptions or Assumptions()
    shape = ModelShape.from_config(model_config)
    cdtype = _compute_dtype(cfg)
    b = DTYPE_BYTES[cdtype]
    full = cfg.method == "full"
    tokens = tokens_per_micro_batch(cfg)
    n_params = shape.n_params()
    route = A.attention_route or _attention_route(cfg)
    # Which routes carry a mask: sdpa/eager build the block-causal one from the position ids
    # of a packed row; padded batches carry one on every route but flash_attention_2.
    has_mask = route != "flash_attention_2" and (route in ("sdpa", "eager") or not cfg.data.packing)
    gqa_expanded = has_mask if A.gqa_expanded is None else A.gqa_expanded
    terms: list[tuple[str, int, str]] = []
    notes: list[str] = []

    # ---- weights
    other = shape.embedding_params() + shape.norm_params()
    if cfg.method == "qlora":
        other_b = 4 if A.kbit_upcast_fp32 else b
        other_dtype = "fp32" if A.kbit_upcast_fp32 else cdtype
        if cfg.quant.bits == 4:
            per = nf4_bytes_per_param(cfg.quant.double_quant)
            qbytes = int(shape.linear_params() * per)
            how = (f"{cfg.quant.type.upper()} {per:.3f} B/param"
                   + (" (4-bit + 8-bit absmax per 64 + fp32 per 256 blocks)" if cfg.quant.double_quant
                      else " (4-bit + fp32 absmax per 64)"))
        else:
            # LLM.int8: one byte per weight plus an fp32 scale per output row.
            qbytes = shape.layers * sum(i_ * o + 4 * o for i_, o in shape.linears().values())
            how = "int8 1 B/param + fp32 scale per row"
        terms.append(("weights", qbytes + other * other_b,
                      f"{shape.linear_params() / 1e9:.2f}B block-linear params at {how}; "
                      f"{other / 1e9:.2f}B embedding/lm_head/norm params in {other_dtype}"))
    else:
        terms.append(("weights", n_params * b, f"{n_params / 1e9:.2f}B params x {b} B ({cdtype})"))

    # ---- trainable parameters, gradients, optimizer
    if full:
        trainable, t_bytes, t_dtype = n_params, b, cdtype
    else:
        targets, unknown = lora_targets(cfg.lora.target_modules)
        if unknown:
            notes.append(f"lora.target_modules {unknown} are not block linears of a Llama-shaped model; "
                         "they are not counted")
        trainable = lora_params(shape, cfg.lora.r, targets)
        t_dtype = A.adapter_dtype or "float32"
        t_bytes = DTYPE_BYTES[t_dtype]
        terms.append(("lora_params", trainable * t_bytes,
                      f"r={cfg.lora.r} x (in+out) on {len(targets)} linears x {shape.layers} layers "
                      f"= {trainable / 1e6:.1f}M params in {t_dtype}"))
    terms.append(("gradients", trainable * t_bytes, f"one {t_dtype} gradient per trainable param"))
    if cfg.train.optimizer == "adamw_8bit":
        per = 2 * (1 + 4 / ADAM8_BLOCK)
        terms.append(("optimizer_states", int(trainable * per),
                      "AdamW 8-bit (bitsandbytes): 2 x 1 B states + fp32 absmax per 256"))
    else:
        s_bytes = t_bytes if A.optimizer_state_dtype == "param" else 4
        s_dtype = t_dtype if A.optimizer_state_dtype == "param" else "float32"
        terms.append(("optimizer_states", trainable * 2 * s_bytes,
                      f"AdamW exp_avg + exp_avg_sq, 2 x {s_bytes} B ({s_dtype}) per trainable param"))
    if A.master_weights and t_bytes != 4:
        terms.append(("master_weights", trainable * 4, "fp32 master copy of the trainable params"))
    if A.autocast and not full and t_bytes != b:
        terms.append(("autocast_copies", trainable * b,
                      f"autocast's {cdtype} copy of each adapter weight, kept for the step"))

    # ---- activations
    a_bytes = b if (full or A.autocast) else t_bytes
    targets = [] if full else lora_targets(cfg.lora.target_modules)[0]
    per_layer = _layer_activation_bytes(shape, targets, full, cfg.lora.r, cfg.lora.dropout > 0,
                                        b, a_bytes, gqa_expanded)
    h, i = shape.hidden, shape.intermediate
    # Gradients in flight through one block in backward (the widest: the SwiGLU pair).
    backward_ws = b * (2 * i + 2 * h)
    if cfg.train.gradient_checkpointing:
        act = tokens * (shape.layers * b * h + per_layer + backward_ws + 4 * h)
        act_note = (f"checkpointing: {shape.layers} layer inputs ({b} B x hidden {h}) + one layer "
                    f"recomputed ({per_layer / 1024:.0f} KiB/token) + backward working set, "
                    f"x {tokens} tokens")
    else:
        act = tokens * (shape.layers * per_layer + backward_ws + 4 * h)
        act_note = (f"no checkpointing: {shape.layers} layers x {per_layer / 1024:.0f} KiB/token "
                    f"+ backward working set, x {tokens} tokens")
    terms.append(("activations", act, act_note))

    # ---- logits and loss: compute-dtype logits, the (fp32) log-softmax kept for backward,
    # and its gradient and the input gradient during backward.
    small = tokens * shape.vocab * 4 <= A.logits_no_recompute_bytes
    lt = min(tokens, A.logits_chunk_tokens) if A.chunked_logits and not small else tokens
    logit_b = 4 if (A.loss_upcast_fp32 or (cfg.method == "qlora" and A.kbit_upcast_fp32)) else b
    per_tok = shape.vocab * (b + 3 * logit_b)
    # The chunked loss also keeps the final hidden states and their gather of trained positions.
    hidden_copies = tokens * 2 * b * h if A.chunked_logits else 0
    terms.append(("logits", lt * per_tok + hidden_copies,
                  f"vocab {shape.vocab} x {lt} tokens"
                  + (" (one chunk: lm_head + loss computed in chunks)" if A.chunked_logits and lt < tokens else "")
                  + f": {b} B logits + 3 x {logit_b} B for log-softmax and its gradients"
                  + (" + 2 copies of the final hidden states" if hidden_copies else "")))

    # Masks: a packed micro-batch is ONE row of `tokens` tokens with no mask on the host; on
    # sdpa/eager transformers builds a T x T block-causal bool mask from its position ids,
    # on varlen/flash there is none. Padded batches get a rows x seq x seq mask.
    if has_mask:
        if cfg.data.packing:
            cells, what = tokens * tokens, f"block-causal bool mask {tokens}x{tokens} built by {route}"
        else:
            s = cfg.data.max_seq_len
            cells, what = (tokens // s) * s * s, f"padding+causal bool mask {s}x{s} per row"
        n_bias = (1 if cfg.train.gradient_checkpointing else shape.layers) if A.mask_bias_per_layer else 0
        terms.append(("attention_mask", cells * (1 + n_bias * b),
                      what + (f" + its {cdtype} additive bias kept by {n_bias} layer(s) of sdpa" if n_bias else "")))
    if cfg.method == "qlora":
        biggest = max(x * y for x, y in shape.linears().values())
        terms.append(("dequant_buffer", biggest * b,
                      f"the largest linear dequantised to {cdtype} during its matmul"))

    tensors = sum(x for _, x, _ in terms)
    terms.append(("cuda_context", A.cuda_context_bytes, "CUDA context and kernels (not in allocated memory)"))
    terms.append(("fragmentation", int(tensors * A.fragmentation),
                  f"allocator fragmentation margin, {A.fragmentation:.0%} of the tensors"))
    if gpu_total_bytes:
        notes.append(f"GPU total {gpu_total_bytes / GiB:.1f} GiB")
    return Estimate(breakdown=[(n, int(x), t) for n, x, t in terms], n_params=n_params,
                    trainable_params=trainable, tokens_per_micro_batch=tokens, notes=notes)


# ---------------------------------------------------------------- model config and GPU

def tokens_per_micro_batch(cfg: RunConfig) -> int:
    """Tokens of the largest micro-batch the run can meet (engine.train.loop._plan_shape)."""
    t, d = cfg.train, cfg.data
    if t.tokens_per_micro_batch:
        return t.tokens_per_micro_batch if d.packing else max(1, t.tokens_per_micro_batch // d.max_seq_len) * d.max_seq_len
    return t.micro_batch_size * d.max_seq_len


def _attention_route(cfg: RunConfig) -> str:
    a = cfg.model.attn_implementation
    return "ftwb_varlen" if a == "auto" else a


def load_model_config(name_or_path: str) -> dict[str, Any]:
    """config.json of a local model dir (or the file itself), 'demo', or a hub id.

    Hub ids are read from the local Hugging Face cache first; a download is tried only
    when that misses, and failing that the error says there is no network.
    """
    if name_or_path == "demo":
        try:
            from engine.demo import ensure_demo_model
        except ImportError as e:
            raise ModelConfigError(f"model 'demo': the demo model builder is not available ({e})") from None
        return _read_config_json(Path(ensure_demo_model()) / "config.json")
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return _read_config_json(p)
    if p.is_dir():
        return _read_config_json(p / "config.json")
    if p.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") != 1:
        raise ModelConfigError(f"model {name_or_path!r}: no such directory; point model.name_or_path at a "
                               "local model directory or a hub id such as meta-llama/Llama-3.2-1B")
    return _hub_config(name_or_path)


def _hub_config(repo_id: str) -> dict[str, Any]:
    try:
        import huggingface_hub as hub
    except ImportError:
        raise ModelConfigError(f"model {repo_id!r}: huggingface_hub is not installed; point "
                               "model.name_or_path at a local directory") from None
    cached = hub.try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return _read_config_json(Path(cached))
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or not _hub_reachable():
        raise ModelConfigError(f"model {repo_id!r}: no network to reach the Hugging Face hub, and its config.json "
                               "is not in the local cache; download the model (or just its config.json) to a "
                               "local directory and point model.name_or_path (or --model-config) at it")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        path = hub.hf_hub_download(repo_id, "config.json")
    except Exception as e:  # network, auth, missing repo: all end in the same advice
        reason = type(e).__name__
        if "Connect" in reason or "Offline" in reason or "Timeout" in reason or "LocalEntry" in reason:
            why = "no network to reach the Hugging Face hub, and it is not in the local cache"
        else:
            why = f"could not fetch its config.json ({reason}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        raise ModelConfigError(f"model {repo_id!r}: {why}; download the model (or just its config.json) "
                               "to a local directory and point model.name_or_path (or --model-config) at it") from None
    return _read_config_json(Path(path))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub, so an offline box answers at once, not after retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: not found; a model directory needs its config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelConfigError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: expected a JSON object")
    return data


def _nvml(query):
    """`query(pynvml)` between NVML's init and shutdown; None without a driver or on any NVML error."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        return query(pynvml)
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def detect_gpu_total() -> int | None:
    """Total memory of the first visible GPU in bytes, via NVML; None without one."""
    def total(nv):
        if nv.nvmlDeviceGetCount() < 1:
            return None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        index = int(visible) if visible.isdigit() else 0
        return int(nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(index)).total)
    return _nvml(total)


def nvml_gpu_count() -> int | None:
    """The GPUs NVML counts (ignoring CUDA_VISIBLE_DEVICES); None without a driver or GPU."""
    return _nvml(lambda nv: int(nv.nvmlDeviceGetCount()) or None)


def largest_fitting_batch(cfg: RunConfig, model_config: dict[str, Any], gpu_total: int,
                          headroom: float = 0.9, assumptions: Assumptions | None = None,
                          limit: int = 4096) -> int | None:
    """Largest micro_batch_size whose estimate fits under headroom; None if 1 does not."""
    def fits(mbs: int) -> bool:
        c = cfg.copy()
        c.train.micro_batch_size = mbs
        return estimate(c, model_config, assumptions=assumptions).fits(gpu_total, headroom)

    if not fits(1):
        return None
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # lo fits, hi does not (or is past the limit)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def fmt_params(n: float) -> str:
    """2.1M, 0.5B, 7.24B: a tiny model is not '0.00B'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}"


def keep_effective_batch(micro_batch: int, grad_accum: int, largest: int) -> tuple[int, int]:
    """(micro_batch, grad_accum) with the largest micro-batch <= `largest` that divides the
    effective batch, so auto-fit never changes micro_batch * grad_accum."""
    effective = micro_batch * grad_accum
    mb = max(d for d in range(1, max(1, min(largest, effective)) + 1) if effective % d == 0)
    return mb, effective // mb


def rebalance_grad_accum(micro_batch: int, grad_accum: int, new_micro_batch: int) -> int:
    """grad_accum that keeps micro_batch * grad_accum (the effective batch) about the same."""
    effective = micro_batch * grad_accum
    return max(1, round(effective / new_micro_batch))
