"""Import an Axolotl or LLaMA-Factory training YAML as an ftwb RunConfig.

Every source key ends up in exactly one of two lists: `mapped` (what it became) or
`ignored` (why not). Values outside ftwb's ranges or choices are clamped or mapped to the
nearest choice with a note, never rejected, so any real config of those tools imports.
Plain Python: PyYAML only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from engine import config as C
from engine.config import ConfigError, RunConfig, read_yaml

AXOLOTL_KEYS = {"base_model", "adapter", "lora_r", "sequence_len", "micro_batch_size", "num_epochs",
                "sample_packing", "lora_target_linear", "val_set_size", "datasets", "load_in_4bit"}
LLAMAFACTORY_KEYS = {"model_name_or_path", "finetuning_type", "lora_rank", "lora_target", "cutoff_len",
                     "per_device_train_batch_size", "num_train_epochs", "stage", "template",
                     "quantization_bit", "val_size", "dataset"}


@dataclass
class ImportResult:
    config: RunConfig
    mapped: list[tuple[str, Any, str, Any]]   # (source key, source value, ftwb field, ftwb value)
    ignored: list[tuple[str, str]]            # (source key, reason)
    source_kind: str                          # "axolotl" | "llamafactory"
    notes: dict[str, str] = field(default_factory=dict)  # source key -> what was adjusted and why


def detect_kind(data: dict[str, Any]) -> str | None:
    """'axolotl', 'llamafactory', or None when neither tool's keys are there."""
    keys = set(data)
    ax, lf = len(keys & AXOLOTL_KEYS), len(keys & LLAMAFACTORY_KEYS)
    if "base_model" in keys and "model_name_or_path" not in keys:
        ax += 3
    if "model_name_or_path" in keys and "base_model" not in keys:
        lf += 3
    if max(ax, lf) < 2:
        return None
    return "axolotl" if ax >= lf else "llamafactory"


def read_source(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = read_yaml(p, "pass the path of an Axolotl or LLaMA-Factory YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a YAML mapping of settings, got {type(data).__name__}")
    return data


def import_config(path: str | Path) -> ImportResult:
    """Read an Axolotl or LLaMA-Factory YAML and map it onto a RunConfig."""
    p = Path(path)
    data = read_source(p)
    kind = detect_kind(data)
    if kind is None:
        if set(data) & set(C.SECTIONS) or "method" in data:
            raise ConfigError(f"{p}: this is already an ftwb config; use it as it is")
        raise ConfigError(f"{p}: neither an Axolotl config (no base_model/adapter/lora_r ...) nor a "
                          "LLaMA-Factory config (no model_name_or_path/finetuning_type ...)")
    m = _Mapper(data, p.parent)
    (_axolotl if kind == "axolotl" else _llamafactory)(m)
    m.finish()
    try:
        cfg = C.from_dict(m.out)
    except ConfigError as e:  # should not happen: every value was clamped to the schema
        raise ConfigError(f"{p}: imported values do not validate: {e}") from None
    return ImportResult(config=cfg, mapped=m.mapped, ignored=m.ignored, source_kind=kind, notes=m.notes)


# ---------------------------------------------------------------- the mapping machinery

_HELP = C.field_help()


class _Mapper:
    """Collects target values, the mapped/ignored report and notes for one source dict."""

    def __init__(self, data: dict[str, Any], base_dir: Path):
        self.data = data
        self.base_dir = base_dir
        self.out: dict[str, dict[str, Any]] = {}
        self.mapped: list[tuple[str, Any, str, Any]] = []
        self.ignored: list[tuple[str, str]] = []
        self.notes: dict[str, str] = {}
        self.done: set[str] = set()

    def has(self, key: str) -> bool:
        v = self.data.get(key)
        return key in self.data and v is not None and v != "" and v != []

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if self.has(key) else default

    def set(self, key: str, target: str, value: Any, note: str | None = None) -> None:
        """Record `key` -> `target` = value (value already converted and in range)."""
        section, _, name = target.partition(".")
        if name:
            self.out.setdefault(section, {})[name] = value
        else:
            self.out[section] = value
        self.mapped.append((key, self.data.get(key), target, value))
        self.done.add(key)
        if note:
            self.note(key, note)

    def note(self, key: str, text: str) -> None:
        self.notes[key] = f"{self.notes[key]}; {text}" if key in self.notes else text

    def ignore(self, key: str, reason: str) -> None:
        if key not in self.done:
            self.ignored.append((key, reason))
            self.done.add(key)

    def consume(self, key: str) -> None:
        """Mark a key as folded into another key's mapping (e.g. chat_template_jinja)."""
        self.done.add(key)

    def number(self, key: str, target: str, kind: type = float,
               convert: Callable[[float], float] | None = None) -> None:
        """Map a numeric key, converting strings like '2e-4' and clamping to ftwb's range."""
        if not self.has(key):
            return
        raw = self.data[key]
        try:
            if isinstance(raw, bool):
                raise ValueError
            v = float(raw)
        except (TypeError, ValueError):
            self.ignore(key, f"{raw!r} is not a number")
            return
        if convert:
            v = convert(v)
        meta = _HELP[target]
        note = None
        lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
        if kind is int and v != int(v):
            note = f"rounded {v:g} to {round(v)}"
            v = round(v)
        clamped = v
        if lo is not None and clamped < lo:
            clamped = lo
        if hi is not None and clamped > hi:
            clamped = hi
        if gt is not None and not clamped > gt:
            self.ignore(key, f"{raw!r} must be greater than {gt}; kept ftwb's default")
            return
        if clamped != v:
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            note = f"clamped {v:g} to {clamped:g} (ftwb allows {rng})"
        self.set(key, target, kind(clamped), note)

    def flag(self, key: str, target: str, invert: bool = False) -> None:
        if key not in self.data or self.data[key] is None:
            return
        raw = self.data[key]
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            raw = raw.lower() == "true"
        if not isinstance(raw, bool):
            self.ignore(key, f"{raw!r} is not true or false")
            return
        self.set(key, target, (not raw) if invert else raw)

    def choice(self, key: str, target: str, table: dict[str, str], fallback: str, what: str) -> None:
        if not self.has(key):
            return
        raw = str(self.data[key])
        if raw in table:
            self.set(key, target, table[raw])
        else:
            self.set(key, target, fallback, f"{what} {raw!r} has no ftwb equivalent; using {fallback!r}")

    def finish(self) -> None:
        for key, value in self.data.items():
            if key in self.done:
                continue
            if value is None or value == "" or value == [] or value == {}:
                self.ignored.append((key, "empty"))
            else:
                self.ignored.append((key, _IGNORE_REASONS.get(key, "no ftwb equivalent")))
        self.ignored.sort(key=lambda kv: (kv[1] == "empty", kv[0]))


_IGNORE_REASONS = {
    "model_type": "ftwb reads the architecture from config.json",
    "tokenizer_type": "ftwb loads the model's own tokenizer",
    "special_tokens": "ftwb uses the tokenizer's special tokens (a pad token is set when missing)",
    "tf32": "left to PyTorch's defaults",
    "dataset_prepared_path": "ftwb caches tokenised data itself",
    "resume_from_checkpoint": "resume a run from its run directory (ftwb train --resume)",
    "lora_model_dir": "resume a run from its run directory (ftwb train --resume)",
    "evals_per_epoch": "depends on the dataset size; set train.eval_every (steps)",
    "saves_per_epoch": "depends on the dataset size; set train.save_every (steps)",
    "loss_watchdog_threshold": "ftwb emits its own NaN and spike warnings",
    "loss_watchdog_patience": "ftwb emits its own NaN and spike warnings",
    "eval_sample_packing": "evaluation uses the training packing setting",
    "hub_model_id": "ftwb does not push to the hub; export the adapter with ftwb export",
    "push_to_hub": "ftwb does not push to the hub; export the adapter with ftwb export",
    "deepspeed": "multi-GPU runs go through ftwb's launcher, not DeepSpeed configs",
    "fsdp": "multi-GPU runs go through ftwb's launcher",
    "fsdp_config": "multi-GPU runs go through ftwb's launcher",
    "report_to": "ftwb logs every metric to the run's events.jsonl",
    "plot_loss": "ftwb draws the loss live",
    "do_train": "ftwb always trains",
    "overwrite_output_dir": "run directories are never overwritten",
    "overwrite_cache": "ftwb's data cache is keyed by content",
    "preprocessing_num_workers": "ftwb picks its own workers",
    "dataloader_num_workers": "ftwb picks its own workers",
    "per_device_eval_batch_size": "evaluation uses the training micro-batch size",
    "eval_strategy": "set train.eval_every (steps)",
    "ddp_timeout": "multi-GPU runs go through ftwb's launcher",
    "save_only_model": "ftwb checkpoints keep optimizer state for exact resume",
    "strict": "no ftwb equivalent",
    "dataset_dir": "no dataset_info.json found there to resolve the dataset name",
    "max_samples": "subsample the dataset in ftwb's data view instead",
}

_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant",
               "constant_with_warmup": "constant"}
_APPROX_SCHEDULERS = {"cosine_with_restarts": "cosine", "cosine_with_min_lr": "cosine", "one_cycle": "cosine",
                      "rex": "cosine", "warmup_stable_decay": "linear", "polynomial": "linear",
                      "inverse_sqrt": "linear", "reduce_lr_on_plateau": "constant"}
_OPTIMIZERS = {"adamw": "adamw", "adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw",
               "adamw_apex_fused": "adamw", "paged_adamw_32bit": "adamw", "adamw_bnb_8bit": "adamw_8bit",
               "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "adamw_8bit", "adamw_torch_8bit": "adamw_8bit"}
_ATTN = {"flash_attention_2": "flash_attention_2", "sdpa": "sdpa", "eager": "eager", "fa2": "flash_attention_2",
         "disabled": "eager", "auto": "auto"}


def _scheduler(m: _Mapper, key: str) -> None:
    if not m.has(key):
        return
    raw = str(m.data[key])
    if raw in _SCHEDULERS:
        note = "warmup is set separately in ftwb" if raw == "constant_with_warmup" else None
        m.set(key, "train.scheduler", _SCHEDULERS[raw], note)
    else:
        target = _APPROX_SCHEDULERS.get(raw, "cosine")
        m.set(key, "train.scheduler", target,
              f"{raw!r} is not an ftwb schedule; mapped to the nearest, {target!r}")


def _optimizer(m: _Mapper, key: str) -> None:
    if not m.has(key):
        return
    raw = str(m.data[key])
    if raw in _OPTIMIZERS:
        note = "paged optimizers are not used; plain 8-bit AdamW" if raw == "paged_adamw_8bit" else None
        m.set(key, "train.optimizer", _OPTIMIZERS[raw], note)
    else:
        m.set(key, "train.optimizer", "adamw", f"optimizer {raw!r} has no ftwb equivalent; using AdamW")


def _val_split(m: _Mapper, key: str) -> None:
    if not m.has(key):
        return
    raw = m.data[key]
    try:
        v = float(raw)
    except (TypeError, ValueError):
        m.ignore(key, f"{raw!r} is not a number")
        return
    if v >= 1:
        m.ignore(key, f"{raw!r} is a row count; ftwb takes a fraction: set data.val_split (e.g. 0.05)")
        return
    m.number(key, "data.val_split")


def _output_name(m: _Mapper, key: str) -> None:
    if not m.has(key):
        return
    name = Path(str(m.data[key]).rstrip("/")).name
    if name and name not in (".", ".."):
        m.set(key, "output.name", name, "the run directory is runs/<timestamp>-<name>")


def _data_path(m: _Mapper, key: str, path: str) -> tuple[str, str | None]:
    """The dataset path as ftwb should see it, and a note when it is not a local file."""
    p = Path(path).expanduser()
    for cand in ((p,) if p.is_absolute() else (m.base_dir / p, Path.cwd() / p)):
        if cand.exists():
            return str(cand.resolve()), None
    return path, "not a local file (a hub dataset id?); download it and point data.path at the file"


def _lora_targets(value: Any) -> list[str] | str | None:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return None
    return "all-linear" if value in (["all"], ["all-linear"]) else value


# ---------------------------------------------------------------- Axolotl

_AX_DATA_TYPES = {"alpaca": "alpaca", "alpaca_chat": "alpaca", "alpaca_w_system": "alpaca",
                  "chat_template": "chat", "sharegpt": "sharegpt", "completion": "completion",
                  "pretrain": "completion", "input_output": "completion"}


def _axolotl(m: _Mapper) -> None:
    d = m.data
    if m.has("base_model"):
        m.set("base_model", "model.name_or_path", str(d["base_model"]))
    # Method: adapter + quantisation flags decide it together.
    adapter = str(d.get("adapter") or "").lower()
    four, eight = d.get("load_in_4bit") is True, d.get("load_in_8bit") is True
    if adapter in ("lora", "qlora"):
        if adapter == "qlora" or four:
            method, bits = "qlora", 4
        elif eight:
            method, bits = "qlora", 8
        else:
            method, bits = "lora", None
        m.set("adapter", "method", method,
              "LoRA on an 8-bit base is ftwb's qlora with quant.bits 8" if bits == 8 else None)
        if bits == 8:
            m.set("load_in_8bit", "quant.bits", 8)
        elif bits == 4:
            m.out.setdefault("quant", {})["bits"] = 4
            if four:
                m.set("load_in_4bit", "quant.bits", 4)
    elif adapter:
        m.set("adapter", "method", "lora", f"adapter {adapter!r} is not supported; using LoRA")
    else:
        m.set("adapter", "method", "full", "no adapter: full fine-tuning")
        m.consume("adapter")
    for k in ("load_in_4bit", "load_in_8bit"):
        if k in d and k not in m.done:
            m.ignore(k, "false: no quantisation" if d[k] is False else "only applies with adapter lora/qlora")
    m.number("lora_r", "lora.r", int)
    m.number("lora_alpha", "lora.alpha")
    m.number("lora_dropout", "lora.dropout")
    if d.get("lora_target_linear") is True:
        m.set("lora_target_linear", "lora.target_modules", "all-linear")
        if m.has("lora_target_modules"):
            m.ignore("lora_target_modules", "covered by lora_target_linear: true (all linear layers)")
    elif "lora_target_linear" in d and not m.has("lora_target_modules"):
        m.ignore("lora_target_linear", "false and no lora_target_modules: ftwb's default all-linear kept")
    elif "lora_target_linear" in d:
        m.ignore("lora_target_linear", "false: lora_target_modules lists the targets")
    if m.has("lora_target_modules") and "lora_target_modules" not in m.done:
        t = _lora_targets(d["lora_target_modules"])
        if t is None:
            m.ignore("lora_target_modules", f"{d['lora_target_modules']!r} is not a list of module names")
        else:
            m.set("lora_target_modules", "lora.target_modules", t)
    m.number("sequence_len", "data.max_seq_len", int)
    m.flag("sample_packing", "data.packing")
    m.number("micro_batch_size", "train.micro_batch_size", int)
    m.number("gradient_accumulation_steps", "train.grad_accum", int)
    m.number("num_epochs", "train.epochs")
    m.number("max_steps", "train.max_steps", int)
    m.number("learning_rate", "train.learning_rate")
    _scheduler(m, "lr_scheduler")
    m.number("warmup_ratio", "train.warmup_ratio")
    m.number("warmup_steps", "train.warmup_steps", int)
    m.number("weight_decay", "train.weight_decay")
    m.number("max_grad_norm", "train.max_grad_norm")
    _val_split(m, "val_set_size")
    gc = d.get("gradient_checkpointing")
    if isinstance(gc, bool):
        m.flag("gradient_checkpointing", "train.gradient_checkpointing")
    elif gc is not None:
        m.set("gradient_checkpointing", "train.gradient_checkpointing", True,
              f"{gc!r}: ftwb uses plain gradient checkpointing")
    _axolotl_datasets(m)
    _axolotl_chat_template(m)
    _axolotl_dtype(m)
    m.number("seed", "train.seed", int)
    _optimizer(m, "optimizer")
    if m.has("attn_implementation"):
        m.choice("attn_implementation", "model.attn_implementation", _ATTN, "auto", "attention")
    elif d.get("flash_attention") is True:
        m.set("flash_attention", "model.attn_implementation", "flash_attention_2")
    elif d.get("sdp_attention") is True:
        m.set("sdp_attention", "model.attn_implementation", "sdpa")
    m.flag("trust_remote_code", "model.trust_remote_code")
    if isinstance(d.get("train_on_inputs"), bool):
        m.set("train_on_inputs", "data.train_on", "all" if d["train_on_inputs"] else "assistant")
    m.number("logging_steps", "train.log_every", int)
    m.number("eval_steps", "train.eval_every", int)
    m.number("save_steps", "train.save_every", int)
    m.number("save_total_limit", "train.keep_checkpoints", int)
    m.number("early_stopping_patience", "train.early_stopping_patience", int)
    _output_name(m, "output_dir")


def _axolotl_datasets(m: _Mapper) -> None:
    ds = m.data.get("datasets")
    if not m.has("datasets"):
        return
    if not isinstance(ds, list) or not all(isinstance(x, dict) for x in ds):
        m.ignore("datasets", "expected a list of {path, type} entries")
        return
    first = ds[0]
    if not first.get("path"):
        m.ignore("datasets", "the first dataset has no path")
        return
    path, note = _data_path(m, "datasets", str(first["path"]))
    m.set("datasets", "data.path", path, note)
    kind = str(first.get("type") or "")
    fmt = _AX_DATA_TYPES.get(kind.split(":")[0])
    m.mapped.append(("datasets[0].type", first.get("type"), "data.format", fmt or "auto"))
    m.out.setdefault("data", {})["format"] = fmt or "auto"
    if fmt is None:
        m.note("datasets", f"type {kind!r} is not an ftwb format; data.format auto detects it from the rows")
    if kind == "chat_template" and first.get("field_messages", "messages") != "messages":
        m.note("datasets", f"rows use field {first['field_messages']!r}; ftwb's chat format reads 'messages'")
    if len(ds) > 1:
        m.ignored.append(("datasets[1:]", f"{len(ds) - 1} more dataset(s): ftwb trains on one file; merge them first"))


def _axolotl_chat_template(m: _Mapper) -> None:
    if not m.has("chat_template"):
        return
    raw = str(m.data["chat_template"])
    if raw == "chatml":
        m.set("chat_template", "model.chat_template", "chatml")
    elif raw == "jinja" and m.has("chat_template_jinja"):
        m.set("chat_template", "model.chat_template", str(m.data["chat_template_jinja"]))
        m.consume("chat_template_jinja")
    elif raw == "tokenizer_default":
        m.set("chat_template", "model.chat_template", None)
    else:
        m.set("chat_template", "model.chat_template", None,
              f"named template {raw!r}: ftwb uses the tokenizer's own template (models of that family ship it)")


def _axolotl_dtype(m: _Mapper) -> None:
    d = m.data
    bf16, fp16 = d.get("bf16"), d.get("fp16")
    if bf16 == "auto":
        m.set("bf16", "model.dtype", "auto", "auto: bf16 where the GPU supports it")
    elif bf16 is True:
        m.set("bf16", "model.dtype", "bfloat16")
    elif fp16 is True:
        m.set("fp16", "model.dtype", "float16")
        if "bf16" in d:
            m.ignore("bf16", "fp16 is on")
    elif bf16 is False:
        m.set("bf16", "model.dtype", "float32", "bf16 and fp16 off: full precision")
    if "fp16" in d and "fp16" not in m.done:
        m.ignore("fp16", "bf16 takes precedence" if d["fp16"] else "false")


# ---------------------------------------------------------------- LLaMA-Factory

def _llamafactory(m: _Mapper) -> None:
    d = m.data
    if m.has("model_name_or_path"):
        m.set("model_name_or_path", "model.name_or_path", str(d["model_name_or_path"]))
    stage = str(d.get("stage") or "sft")
    if stage == "pt":
        m.set("stage", "data.train_on", "all", "pre-training stage: every token is trained")
    elif stage != "sft":
        m.ignore("stage", f"{stage!r} training is not supported; imported as supervised fine-tuning")
    elif "stage" in d:
        m.ignore("stage", "sft: supervised fine-tuning is what ftwb trains")
    ft = str(d.get("finetuning_type") or "lora")
    qbits = d.get("quantization_bit")
    if ft == "full":
        m.set("finetuning_type", "method", "full")
        if qbits:
            m.ignore("quantization_bit", "full fine-tuning of a quantised base is not supported")
    else:
        method = "qlora" if qbits else "lora"
        note = None if ft == "lora" else f"{ft!r} tuning has no ftwb equivalent; using {method}"
        if "finetuning_type" in d:
            m.set("finetuning_type", "method", method, note)
        else:
            m.out["method"] = method
        if qbits:
            try:
                bits = int(qbits)
            except (TypeError, ValueError):
                bits = 4
            if bits in (4, 8):
                m.set("quantization_bit", "quant.bits", bits)
            else:
                m.set("quantization_bit", "quant.bits", 4, f"{qbits}-bit is not supported; using 4-bit NF4")
    if m.has("quantization_method") and str(d["quantization_method"]) not in ("bnb", "bitsandbytes"):
        m.ignore("quantization_method", f"{d['quantization_method']!r}: ftwb quantises with bitsandbytes")
    elif "quantization_method" in d:
        m.ignore("quantization_method", "bitsandbytes: what ftwb uses")
    m.choice("quantization_type", "quant.type", {"nf4": "nf4", "fp4": "fp4"}, "nf4", "4-bit type")
    m.flag("double_quantization", "quant.double_quant")
    m.number("lora_rank", "lora.r", int)
    if m.has("lora_alpha"):
        m.number("lora_alpha", "lora.alpha")
    elif m.has("lora_rank"):
        # LLaMA-Factory's default alpha is twice the rank.
        try:
            m.out.setdefault("lora", {})["alpha"] = float(d["lora_rank"]) * 2
        except (TypeError, ValueError):
            pass
    m.number("lora_dropout", "lora.dropout")
    if m.has("lora_target"):
        t = _lora_targets(d["lora_target"])
        if t is None:
            m.ignore("lora_target", f"{d['lora_target']!r} is not a module name list")
        else:
            m.set("lora_target", "lora.target_modules", t)
    m.number("cutoff_len", "data.max_seq_len", int)
    if d.get("neat_packing") is True:  # packing without cross-attention: what ftwb's packing does
        m.set("neat_packing", "data.packing", True)
        if "packing" in d:
            m.ignore("packing", "neat_packing implies packing")
    else:
        m.flag("packing", "data.packing")
        if "neat_packing" in d:
            m.ignore("neat_packing", "false: the packing setting applies")
    m.number("per_device_train_batch_size", "train.micro_batch_size", int)
    m.number("gradient_accumulation_steps", "train.grad_accum", int)
    m.number("num_train_epochs", "train.epochs")
    m.number("max_steps", "train.max_steps", int)
    m.number("learning_rate", "train.learning_rate")
    _scheduler(m, "lr_scheduler_type")
    m.number("warmup_ratio", "train.warmup_ratio")
    m.number("warmup_steps", "train.warmup_steps", int)
    m.number("weight_decay", "train.weight_decay")
    m.number("max_grad_norm", "train.max_grad_norm")
    _val_split(m, "val_size")
    m.number("seed", "train.seed", int)
    _optimizer(m, "optim")
    _llamafactory_dataset(m)
    if m.has("template"):
        raw = str(d["template"])
        if raw == "chatml":
            m.set("template", "model.chat_template", "chatml")
        else:
            m.set("template", "model.chat_template", None,
                  f"template {raw!r}: ftwb uses the tokenizer's own chat template")
    for k in ("pure_bf16", "bf16"):
        if d.get(k) is True and "dtype" not in m.out.get("model", {}):
            m.set(k, "model.dtype", "bfloat16")
    if d.get("fp16") is True and "dtype" not in m.out.get("model", {}):
        m.set("fp16", "model.dtype", "float16")
    if isinstance(d.get("disable_gradient_checkpointing"), bool):
        m.flag("disable_gradient_checkpointing", "train.gradient_checkpointing", invert=True)
    if m.has("flash_attn"):
        m.choice("flash_attn", "model.attn_implementation", _ATTN, "auto", "attention")
    m.flag("trust_remote_code", "model.trust_remote_code")
    if d.get("trust_remote_code") is True:
        m.note("trust_remote_code", "runs Python code shipped with the checkpoint; keep it only if you trust it")
    if isinstance(d.get("train_on_prompt"), bool) and "train_on" not in m.out.get("data", {}):
        m.set("train_on_prompt", "data.train_on", "all" if d["train_on_prompt"] else "assistant")
    m.number("logging_steps", "train.log_every", int)
    m.number("eval_steps", "train.eval_every", int)
    m.number("save_steps", "train.save_every", int)
    m.number("save_total_limit", "train.keep_checkpoints", int)
    _output_name(m, "output_dir")
    if m.has("eval_dataset"):
        m.ignore("eval_dataset", "ftwb holds out data.val_split of the training file for validation")


_LF_FORMATS = {"alpaca": "alpaca", "sharegpt": "sharegpt"}


def _llamafactory_dataset(m: _Mapper) -> None:
    """`dataset` names entries of dataset_info.json in dataset_dir; resolve the first one."""
    if not m.has("dataset"):
        return
    raw = m.data["dataset"]
    names = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if str(s).strip()]
    if not names:
        m.ignore("dataset", "empty")
        return
    name = str(names[0])
    ds_dir = Path(str(m.get("dataset_dir", "data")))
    info_file = None
    for base in ((ds_dir,) if ds_dir.is_absolute() else (m.base_dir / ds_dir, Path.cwd() / ds_dir)):
        if (base / "dataset_info.json").is_file():
            info_file = base / "dataset_info.json"
            break
    entry = None
    if info_file:
        try:
            entry = json.loads(info_file.read_text(encoding="utf-8")).get(name)
        except (OSError, ValueError):
            entry = None
    if isinstance(entry, dict) and entry.get("file_name"):
        path, note = _data_path(m, "dataset", str(info_file.parent / entry["file_name"]))
        m.set("dataset", "data.path", path, note)
        fmt = _LF_FORMATS.get(str(entry.get("formatting", "alpaca")), "auto")
        if fmt == "sharegpt" and (entry.get("tags") or {}).get("role_tag") == "role":
            fmt = "chat"  # OpenAI-style messages with role/content
        m.mapped.append((f"dataset_info[{name}].formatting", entry.get("formatting", "alpaca"), "data.format", fmt))
        m.out.setdefault("data", {})["format"] = fmt
        if "dataset_dir" in m.data:
            m.mapped.append(("dataset_dir", m.data["dataset_dir"], "data.path", path))
            m.done.add("dataset_dir")
    else:
        m.set("dataset", "data.path", name,
              f"{name!r} is a LLaMA-Factory dataset name (dataset_info.json not found next to the config); "
              "point data.path at its file")
    if len(names) > 1:
        m.note("dataset", f"{len(names) - 1} more dataset(s) not imported: ftwb trains on one file; merge them first")
