"""Inference on a run: load base + adapter, render prompts with the run's chat template,
batch greedy generation (left padding) and a token-by-token sampler for streaming.

One model serves base and fine-tuned: the fine-tuned side is the PeftModel, the base side
is the same model inside `with model.disable_adapter():`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from engine import config as C
from engine import rundir


class RunNotReady(ValueError):
    """The run directory cannot be evaluated or served; the message says why and what to do."""


def check_run_dir(run_dir: Path, need_adapter: bool = True) -> C.RunConfig:
    """The run's config, or RunNotReady with a one-line reason."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunNotReady(f"{run_dir}: no such directory; pass a run directory (see `ftwb runs`)")
    if not (run_dir / rundir.CONFIG).exists():
        raise RunNotReady(f"{run_dir} is not a run directory (no {rundir.CONFIG}); see `ftwb runs`")
    try:
        cfg = C.load(run_dir / rundir.CONFIG)
    except C.ConfigError as e:
        raise RunNotReady(str(e)) from None
    if need_adapter and not _has_weights(run_dir / rundir.ADAPTER):
        raise RunNotReady(f"{run_dir} has no trained adapter yet ({rundir.ADAPTER}/ is missing); "
                          "wait for the run to complete, or resume it with `ftwb train --resume RUN_DIR`")
    return cfg


def _has_weights(d: Path) -> bool:
    return d.is_dir() and ((d / "adapter_config.json").exists() or (d / "config.json").exists())


def load_tokenizer(run_dir: Path, cfg: C.RunConfig):
    """The tokenizer saved with the adapter (it carries the chat template trained with),
    falling back to the base model's, with the run's template override applied."""
    from engine.data.template import ensure_chat_template
    from engine.train.model import load_tokenizer as base_tokenizer
    from engine.train.model import resolve_model_path

    adapter = Path(run_dir) / rundir.ADAPTER
    src = str(adapter) if (adapter / "tokenizer_config.json").exists() else resolve_model_path(cfg.model.name_or_path)
    tok = base_tokenizer(cfg, src)
    ensure_chat_template(tok, cfg.model.chat_template)
    return tok


def load_base(cfg: C.RunConfig, device: str | None = None, dtype: str | None = None):
    """(base model, torch dtype, device): the base model as the run trains on it (a QLoRA
    run's base in 4 bits on CUDA), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.model import ModelError, pick_device, pick_dtype, resolve_model_path

    device = device or pick_device()
    base_path = resolve_model_path(cfg.model.name_or_path)
    torch_dtype = getattr(torch, dtype) if dtype else pick_dtype(cfg, device)
    kwargs: dict[str, Any] = dict(dtype=torch_dtype, trust_remote_code=cfg.model.trust_remote_code)
    if cfg.method == "qlora" and device == "cuda":
        from transformers import BitsAndBytesConfig

        compute = getattr(torch, cfg.quant.compute_dtype)
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quant.type,
                               bnb_4bit_use_double_quant=cfg.quant.double_quant, bnb_4bit_compute_dtype=compute)
            if cfg.quant.bits == 4 else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["dtype"] = compute
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        base = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    except OSError as e:
        raise ModelError(f"cannot load the base model from {base_path}: {e}") from None
    if "device_map" not in kwargs:
        base.to(device)
    base.eval()
    return base, torch_dtype, device


def load_for_inference(run_dir: Path, cfg: C.RunConfig | None = None, device: str | None = None,
                       dtype: str | None = None) -> tuple[Any, Any, C.RunConfig]:
    """(model, tokenizer, cfg): the base model with the run's adapter, in eval mode.

    A QLoRA run is served on a 4-bit base as trained; LoRA on the run's dtype. A full
    fine-tune has no adapter: the saved model is the fine-tuned side, and the base model
    is loaded as a second model (see `side`)."""
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    cfg = cfg or check_run_dir(run_dir)
    tok = load_tokenizer(run_dir, cfg)
    base, torch_dtype, device = load_base(cfg, device, dtype)
    adapter = run_dir / rundir.ADAPTER
    if cfg.method == "full":
        tuned = AutoModelForCausalLM.from_pretrained(str(adapter), dtype=torch_dtype).to(device)
        tuned.eval()
        base.eval()
        # Kept outside the module tree so the base is not a submodule of the tuned model.
        tuned.__dict__["_ftwb_base"] = base
        return tuned, tok, cfg
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    return model, tok, cfg


@contextlib.contextmanager
def side(model, which: str):
    """Yields the module to call for 'base' or 'tuned' (adapter off / on)."""
    if which == "tuned":
        yield model
    elif getattr(model, "_ftwb_base", None) is not None:
        yield model._ftwb_base  # noqa: SLF001
    elif hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        raise ValueError("this model has no adapter to switch off; cannot produce a base side")


def model_device(model):
    return next(model.parameters()).device


# ---------------------------------------------------------------- prompts

def split_prompt(messages: list[dict]) -> tuple[list[dict], str]:
    """(prompt messages, reference): everything before the last assistant turn, and that turn."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            return messages[:i], str(messages[i].get("content") or "")
    return list(messages), ""


def render_prompt(tok, messages: list[dict]) -> str:
    """The prompt exactly as the run's chat template renders it, assistant header opened."""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tok, messages: list[dict]) -> list[int]:
    # The template renders any BOS itself; adding special tokens again would double it.
    return tok(render_prompt(tok, messages), add_special_tokens=False)["input_ids"]


def stop_ids(tok, model=None) -> list[int]:
    """End-of-turn ids: the tokenizer's eos, the model's generation eos, and common turn ends."""
    ids: set[int] = set()
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    for e in (eos if isinstance(eos, (list, tuple)) else [eos]):
        if e is not None:
            ids.add(int(e))
    vocab = tok.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
        if t in vocab:
            ids.add(int(vocab[t]))
    return sorted(ids)


# ---------------------------------------------------------------- batch generation

def generate_batch(model, tok, prompts: list[list[int]], max_new_tokens: int, which: str = "tuned",
                   batch_size: int = 8) -> list[str]:
    """Greedy continuations of token-id prompts, batched with left padding."""
    import torch

    device = model_device(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    stops = stop_ids(tok, model)
    out: list[str] = [""] * len(prompts)
    # Similar lengths together: less padding per batch.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        idxs = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in idxs)
        ids = torch.full((len(idxs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idxs), width), dtype=torch.long)
        for r, i in enumerate(idxs):
            p = prompts[i]
            ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p):] = 1
        with side(model, which) as m, torch.no_grad():
            gen = m.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad,
                             use_cache=True)
        for r, i in enumerate(idxs):
            new = gen[r, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stops), len(new))
            out[i] = tok.decode(new[:cut], skip_special_tokens=True)
    return out


# ---------------------------------------------------------------- streaming

def sample_next(logits, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0, else nucleus sampling."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if 0 < top_p < 1:
        sorted_p, sorted_i = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        choice = torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)
        return int(sorted_i[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def stream_tokens(model, tok, prompt_ids: list[int], which: str, *, temperature: float = 0.0,
                  top_p: float = 1.0, max_new_tokens: int = 128, seed: int | None = None,
                  stats: dict | None = None) -> Iterator[str]:
    """Yields text pieces as they are decoded; a manual decode loop with a KV cache, one step
    per next(), so two sides can be interleaved by the caller. `stats`, when given, receives
    "tokens" (generated) and "finish" ("stop" at an end-of-turn token, else "length")."""
    import torch

    device = model_device(model)
    stops = set(stop_ids(tok, model))
    if stats is not None:
        stats.update(tokens=0, finish="length")
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    past = None
    new: list[int] = []
    shown = ""
    for _ in range(max_new_tokens):
        with side(model, which) as m, torch.no_grad():
            out = m(input_ids=ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = sample_next(out.logits[0, -1].to("cpu"), temperature, top_p, gen)
        if nxt in stops:
            if stats is not None:
                stats["finish"] = "stop"
            break
        new.append(nxt)
        if stats is not None:
            stats["tokens"] = len(new)
        ids = torch.tensor([[nxt]], dtype=torch.long, device=device)
        text = tok.decode(new, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until it completes;
        # text that rewrites what was already shown (tokenizer clean-up) waits for the end.
        if text.endswith("\ufffd") or not text.startswith(shown):
            continue
        piece, shown = text[len(shown):], text
        if piece:
            yield piece
    tail = tok.decode(new, skip_special_tokens=True)
    if tail.startswith(shown) and len(tail) > len(shown):
        yield tail[len(shown):]
