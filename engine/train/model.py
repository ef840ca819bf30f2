"""Model loading: base model + tokenizer, then LoRA, QLoRA (4-bit NF4) or full fine-tuning."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.config import ConfigError, RunConfig


class ModelError(RuntimeError):
    """The model cannot be loaded; the message says why and what to do."""


def resolve_model_path(name_or_path: str, log=None) -> str:
    """'demo' -> the locally built demo model; an existing path -> itself; else a hub id."""
    if name_or_path == "demo":
        from engine.demo import demo_model_dir, ensure_demo_model

        if log and not demo_model_dir().exists():
            log("building the demo model (once; cached for later runs)")
        return str(ensure_demo_model(log=log))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"model.name_or_path: {p} has no config.json; point it at a directory "
                             "saved with save_pretrained (config.json + weights + tokenizer)")
        return str(p)
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name_or_path):
        raise ModelError(f"model.name_or_path: {name_or_path!r} does not exist; pass a local model "
                         "directory or a hub id such as 'meta-llama/Llama-3.2-1B'")
    return name_or_path


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(cfg: RunConfig, device: str):
    import torch

    if cfg.model.dtype != "auto":
        return getattr(torch, cfg.model.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU: bf16 matmuls are slow and lossy on most CPUs


def load_tokenizer(cfg: RunConfig, path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise ModelError(f"cannot load a tokenizer from {path}: {e}. Without a network, "
                         "model.name_or_path must be a local directory") from None
    if tok.pad_token_id is None:
        # Padding tokens never reach the loss (labels are -100 there); any id works.
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def compute_dtype(cfg: RunConfig, device: str):
    """The dtype matmuls run in under autocast, or None when the step runs without autocast
    (fp32 models, and full fine-tuning, whose weights already are in the compute dtype)."""
    import torch

    if cfg.method == "full":
        return None
    dt = getattr(torch, cfg.quant.compute_dtype) if cfg.method == "qlora" else pick_dtype(cfg, device)
    return None if dt == torch.float32 else dt


def check_loss_kernel(cfg: RunConfig) -> None:
    """train.loss_kernel: liger is refused before any weights load when it cannot run here."""
    if getattr(cfg.train, "loss_kernel", "chunked") == "liger":
        from engine.train.loss import liger_unavailable

        why = liger_unavailable()
        if why:
            raise ConfigError(f"train.loss_kernel: 'liger' cannot run here: {why}; "
                              "or use train.loss_kernel: chunked (the default)")


def load_model(cfg: RunConfig, device: str | None = None, log=None, emit=None,
               strategy: str = "single") -> tuple[Any, Any]:
    """Load the base model for `cfg.method` and wrap it for training. Returns (model, tokenizer).

    Weights load straight onto the GPU (no CPU copy first). LoRA adapters are fp32 for LoRA
    and QLoRA alike (master weights; AdamW states follow them), while the step runs under
    autocast in the compute dtype (engine.train.loop), so activations stay bf16. The
    attention route is chosen and proven on the loaded model (engine.train.attention).
    `log(message)` receives progress lines (the demo model's one-time build); `emit` gets
    the attention choice and any route that failed its check.

    On CUDA the GPU is the current device (under torchrun, each rank's own: engine.distributed
    sets it). `strategy` "fsdp2": loaded sharded over the ranks (engine.train.fsdp), no rank
    holding the whole model; LoRA, checkpointing and requires_grad are set before sharding.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train import attention

    device = device or pick_device()
    check_loss_kernel(cfg)
    path = resolve_model_path(cfg.model.name_or_path, log)
    tokenizer = load_tokenizer(cfg, path)
    dtype = pick_dtype(cfg, device)
    # Loaded with sdpa; attention.choose switches to the route that passes its check.
    kwargs: dict[str, Any] = dict(dtype=dtype, attn_implementation="sdpa",
                                  trust_remote_code=cfg.model.trust_remote_code)
    if device == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if cfg.method == "qlora":
        if device != "cuda":
            raise ConfigError("method: 'qlora' needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                              "use method: lora on this machine")
        from transformers import BitsAndBytesConfig

        compute = getattr(torch, cfg.quant.compute_dtype)
        if cfg.quant.bits == 4:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type=cfg.quant.type,
                bnb_4bit_use_double_quant=cfg.quant.double_quant, bnb_4bit_compute_dtype=compute,
                bnb_4bit_quant_storage=compute)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["dtype"] = compute
    def prepare(model):
        model.config.use_cache = False
        if cfg.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            # With frozen embeddings the checkpointed blocks would see inputs without grad.
            model.enable_input_require_grads()
        if cfg.method == "full":
            for p in model.parameters():
                p.requires_grad_(True)
            return model
        return _add_lora(cfg, model)

    if strategy == "fsdp2":
        from engine.train import fsdp

        where = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"
        kwargs.pop("device_map", None)
        dtype = kwargs.pop("dtype")
        try:
            model = fsdp.load_pretrained_sharded(path, where, dtype=dtype, prepare=prepare,
                                                 mp_policy=fsdp.mixed_precision(device, compute_dtype(cfg, device)),
                                                 **kwargs)
        except OSError as e:
            raise ModelError(f"cannot load model weights from {path}: {e}") from None
        kwargs["dtype"] = dtype
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except OSError as e:
            raise ModelError(f"cannot load model weights from {path}: {e}") from None
        if device != "cuda":
            model.to(device)
        model = prepare(model)
    if strategy == "fsdp2":
        _unprobed_attention(model, cfg, emit)
    else:
        attention.choose(model, cfg, device, kwargs["dtype"], emit=emit,
                         autocast_dtype=compute_dtype(cfg, device))
    return model, tokenizer


def _unprobed_attention(model, cfg: RunConfig, emit) -> None:
    """Under FSDP2 the start-up check cannot run (it calls the embeddings and the decoder
    apart, outside their sharded units): the pinned route, or sdpa, whose packed rows are
    isolated by position ids alone (transformers builds the block-causal mask)."""
    from engine.train import attention

    route = cfg.model.attn_implementation if cfg.model.attn_implementation != "auto" else "sdpa"
    if route == attention.VARLEN:
        attention.register_varlen()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(route)
    if emit:
        emit("attention", route=route, probe_error=None, reason="FSDP2: the start-up check does not run on "
                                                                "a sharded model")


def set_gradient_checkpointing(model, on: bool) -> None:
    """Turn activation checkpointing on or off on a loaded (possibly PEFT-wrapped) model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    else:
        base.gradient_checkpointing_disable()


def _add_lora(cfg: RunConfig, model):
    from peft import LoraConfig, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    target = cfg.lora.target_modules
    lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=target, bias="none", task_type="CAUSAL_LM")
    # Adapters are fp32 (autocast_adapter_dtype) for QLoRA too: bf16 weights and AdamW states
    # lose small updates (at lr 2e-6 a bf16 step moves a weight ~3% as far as fp32). We skip
    # prepare_model_for_kbit_training, which upcasts embeddings and lm_head to fp32 and so
    # makes the logits fp32 (gigabytes at large vocabularies).
    try:
        return get_peft_model(model, lcfg, autocast_adapter_dtype=True)
    except ValueError as e:
        raise ConfigError(f"lora.target_modules: {target!r} does not match this model ({e}); "
                          "use 'all-linear' or names such as [q_proj, v_proj]") from None


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def save_weights(model, tokenizer, out_dir: Path, method: str) -> None:
    """Adapter (PEFT format) for LoRA/QLoRA, the whole model for full fine-tuning."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def load_weights(model, ckpt_dir: Path, method: str) -> None:
    """Load trained weights saved by save_weights back into `model` in place."""
    from safetensors.torch import load_file

    if method == "full":
        import glob

        state: dict = {}
        for f in sorted(glob.glob(str(ckpt_dir / "*.safetensors"))):
            state.update(load_file(f))
        missing, unexpected = model.load_state_dict(state, strict=False)
        return
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, load_file(str(ckpt_dir / "adapter_model.safetensors")))
