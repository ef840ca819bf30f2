"""LLaMA-Factory training YAML (classic and the newer "v1" layout) -> ftwb config.

Dataset names are resolved through dataset_info.json next to the config (`dataset_dir`):
each becomes a source with the format, column names and role tags its entry declares.
`stage: sft|pt|dpo|kto` map onto train.objective; PPO and reward-model stages are refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from engine.config import ConfigError
from engine.importers import mapper as M
from engine.importers.mapper import Mapper

REASONS = {
    "do_train": "ftwb always trains",
    "do_eval": "ftwb evaluates on data.val_split every train.eval_every steps",
    "overwrite_output_dir": "run directories are never overwritten",
    "overwrite_cache": "ftwb's data cache is keyed by content",
    "preprocessing_num_workers": "ftwb picks its own workers",
    "dataloader_num_workers": "ftwb picks its own workers",
    "per_device_eval_batch_size": "evaluation uses the training micro-batch size",
    "ddp_timeout": "multi-GPU runs go through ftwb's launcher",
    "deepspeed": "multi-GPU runs go through ftwb's launcher, not DeepSpeed configs",
    "fsdp": "multi-GPU runs go through ftwb's launcher",
    "save_only_model": "ftwb checkpoints keep optimizer state for exact resume",
    "report_to": "ftwb logs every metric to the run's events.jsonl (train.report_to for trackers)",
    "plot_loss": "ftwb draws the loss live",
    "resume_from_checkpoint": "resume a run from its run directory (ftwb train --resume)",
    "load_best_model_at_end": "ftwb keeps the best checkpoint by validation loss",
    "metric_for_best_model": "ftwb keeps the best checkpoint by validation loss",
    "greater_is_better": "ftwb keeps the best checkpoint by validation loss",
    "predict_with_generate": "generation scores come from ftwb eval",
    "use_dora": "DoRA is not supported; plain LoRA",
    "use_rslora": "rsLoRA scaling is not supported; plain alpha / r",
    "pissa_init": "PiSSA initialisation is not supported; standard LoRA init",
    "pissa_iter": "PiSSA initialisation is not supported",
    "pissa_convert": "PiSSA initialisation is not supported",
    "loraplus_lr_ratio": "LoRA+ is not supported; one learning rate",
    "additional_target": "ftwb trains the adapter only",
    "create_new_adapter": "ftwb starts a new adapter each run",
    "adapter_name_or_path": "ftwb starts a new adapter; resume a run with ftwb train --resume",
    "flash_attn_cross_entropy": "ftwb computes the loss in chunks itself",
    "enable_liger_kernel": "ftwb uses the model's own kernels",
    "use_unsloth": "ftwb uses its own training loop",
    "use_unsloth_gc": "ftwb uses plain gradient checkpointing",
    "upcast_layernorm": "no ftwb equivalent",
    "shift_attn": "no ftwb equivalent",
    "rope_scaling": "ftwb uses the model's own RoPE settings",
    "mask_history": "ftwb trains every assistant turn (data.train_on: assistant)",
    "tokenized_path": "ftwb caches tokenised data itself",
    "streaming": "ftwb reads local files",
    "buffer_size": "ftwb reads local files",
    "mix_strategy": "ftwb mixes several sources deterministically by data.split_seed",
    "ref_model": "the reference is the base model with the adapter disabled",
    "ref_model_adapters": "the reference is the base model with the adapter disabled",
    "ref_model_quantization_bit": "the reference is the base model with the adapter disabled",
    "simpo_gamma": "only applies to SimPO, which ftwb does not train",
    "pref_bco_weight": "BCO is not supported",
    "lang": "no ftwb equivalent",
    "print_param_status": "ftwb logs the trainable parameter count",
    "include_num_input_tokens_seen": "ftwb counts tokens itself",
    "hf_hub_token": "ftwb reads local files or the hub cache",
    "ms_hub_token": "ftwb reads local files or the hub cache",
    # v1 layout
    "kernel_config": "ftwb picks its own kernels",
    "dist_config": "multi-GPU runs go through ftwb's launcher",
    "sample_backend": "ftwb generates samples at each eval itself (eval.sample_prompts)",
    "max_new_tokens": "sampling during training: see eval.sample_max_new_tokens",
    "model_class": "llm: a causal language model, what ftwb trains",
}

_STAGES_REFUSED = {"ppo": "PPO (online RL with a reward model)", "rm": "reward-model training"}
_PREF_LOSSES = {"sigmoid": ("dpo", "sigmoid"), "hinge": ("dpo", "hinge"), "ipo": ("dpo", "ipo"),
                "orpo": ("orpo", None)}
_MEDIA = ("images", "videos", "audios")
_VISION_KEYS = ("image_max_pixels", "image_min_pixels", "video_max_pixels", "video_fps", "freeze_vision_tower",
                "freeze_multi_modal_projector", "image_resolution", "audio_sampling_rate")


def refuse_unsupported(d: dict[str, Any], where: str) -> None:
    stage = str(d.get("stage") or "sft").lower()
    if stage in _STAGES_REFUSED:
        raise ConfigError(f"{where}: stage: {stage} is {_STAGES_REFUSED[stage]}, which ftwb does not train; "
                          "ftwb trains sft, pt, dpo and kto (train.objective); nothing was imported")
    if stage not in ("sft", "pt", "dpo", "kto"):
        raise ConfigError(f"{where}: stage: {stage} is not a stage ftwb trains (sft, pt, dpo, kto); "
                          "nothing was imported")
    loss = str(d.get("pref_loss") or "sigmoid").lower()
    if stage == "dpo" and loss not in _PREF_LOSSES:
        raise ConfigError(f"{where}: pref_loss: {loss} is not a preference loss ftwb trains (sigmoid, hinge, "
                          "ipo, orpo); set one of them to import this config; nothing was imported")
    vision = [k for k in _VISION_KEYS if k in d] + (["template: " + str(d["template"])]
                                                     if str(d.get("template") or "").endswith(("_vl", "vl")) else [])
    if vision:
        raise ConfigError(f"{where}: a vision-language run ({', '.join(vision[:3])}); ftwb trains text models and "
                          "never trains media rows as text; nothing was imported")
    if isinstance(d.get("model_class"), str) and d["model_class"] not in ("llm",):
        what = "a reward (classification) model" if d["model_class"] == "cls" else f"a {d['model_class']} model"
        raise ConfigError(f"{where}: model_class: {d['model_class']} trains {what}; ftwb trains causal language "
                          "models only (model_class: llm); nothing was imported")


# ---------------------------------------------------------------- classic layout

def map_config(m: Mapper) -> None:
    d = m.data
    if m.has("model_name_or_path"):
        m.set("model_name_or_path", "model.name_or_path", str(d["model_name_or_path"]))
    stage = str(d.get("stage") or "sft").lower()
    _stage(m, stage)
    _method(m, "finetuning_type", str(d.get("finetuning_type") or "lora"), d.get("quantization_bit"))
    if m.has("quantization_method") and str(d["quantization_method"]) not in ("bnb", "bitsandbytes"):
        m.ignore("quantization_method", f"{d['quantization_method']!r}: ftwb quantises with bitsandbytes")
    elif m.present("quantization_method"):
        m.ignore("quantization_method", "bitsandbytes: what ftwb uses")
    m.choice("quantization_type", "quant.type", {"nf4": "nf4", "fp4": "fp4"}, "nf4", "4-bit type")
    m.flag("double_quantization", "quant.double_quant")
    _lora(m, "lora_rank", "lora_alpha", "lora_dropout", "lora_target")
    m.number("cutoff_len", "data.max_seq_len", int)
    if d.get("neat_packing") is True:  # packing without cross-attention: what ftwb's packing does
        m.set("neat_packing", "data.packing", True)
        if m.present("packing"):
            m.ignore("packing", "neat_packing implies packing")
    else:
        m.flag("packing", "data.packing")
        if m.present("neat_packing"):
            m.ignore("neat_packing", "false: the packing setting applies")
    m.number("per_device_train_batch_size", "train.micro_batch_size", int)
    m.number("gradient_accumulation_steps", "train.grad_accum", int)
    _schedule(m)
    M.val_split(m, "val_size")
    _datasets(m, stage)
    if m.has("template"):
        M.template_name(m, "template", str(d["template"]))
    _dtype(m)
    if isinstance(d.get("disable_gradient_checkpointing"), bool):
        m.flag("disable_gradient_checkpointing", "train.gradient_checkpointing", invert=True)
    if m.has("flash_attn"):
        raw = str(d["flash_attn"])
        impl = M.ATTN.get(raw)
        if impl is None:
            m.set("flash_attn", "model.attn_implementation", "auto", f"attention {raw!r}: using auto (sdpa)")
        else:
            M.attention(m, "flash_attn", impl)
    m.flag("trust_remote_code", "model.trust_remote_code")
    if d.get("trust_remote_code") is True:
        m.note("trust_remote_code", "runs Python code shipped with the checkpoint; keep it only if you trust it")
    if isinstance(d.get("train_on_prompt"), bool) and "train_on" not in m.out.get("data", {}):
        m.set("train_on_prompt", "data.train_on", "all" if d["train_on_prompt"] else "assistant")
    elif m.present("train_on_prompt"):
        m.ignore("train_on_prompt", "pre-training trains every token anyway")
    _checkpoints(m)
    _preference(m, stage)
    if m.has("eval_dataset"):
        m.ignore("eval_dataset", "ftwb holds out data.val_split of the training data for validation")


def _stage(m: Mapper, stage: str) -> None:
    d = m.data
    if stage == "pt":
        m.set("stage", "data.train_on", "all", "pre-training stage: every token is trained")
        m.out.setdefault("train", {})["objective"] = "sft"
    elif stage == "dpo":
        loss = str(d.get("pref_loss") or "sigmoid").lower()
        objective, _ = _PREF_LOSSES[loss]
        m.set("stage", "train.objective", objective,
              "pref_loss: orpo is ftwb's orpo objective (reference-free)" if objective == "orpo" else None)
    elif stage == "kto":
        m.set("stage", "train.objective", "kto")
    elif m.present("stage"):
        m.set("stage", "train.objective", "sft")


def _method(m: Mapper, key: str, ft: str, qbits: Any) -> None:
    if ft == "full":
        if m.present(key):
            m.set(key, "method", "full")
        else:
            m.out["method"] = "full"
        if qbits:
            m.ignore("quantization_bit", "full fine-tuning of a quantised base is not supported")
        return
    method = "qlora" if qbits else "lora"
    note = None if ft == "lora" else f"{ft!r} tuning has no ftwb equivalent; using {method}"
    if m.present(key):
        m.set(key, "method", method, note)
    else:
        m.out["method"] = method
    if qbits:
        try:
            bits = int(qbits)
        except (TypeError, ValueError):
            bits = 4
        qkey = "quantization_bit" if m.present("quantization_bit") else "quant_config.quantization_bit"
        if bits in (4, 8):
            m.set(qkey, "quant.bits", bits)
        else:
            m.set(qkey, "quant.bits", 4, f"{qbits}-bit is not supported; using 4-bit NF4")


def _lora(m: Mapper, rank: str, alpha: str, dropout: str, target: str) -> None:
    m.number(rank, "lora.r", int)
    if m.has(alpha):
        m.number(alpha, "lora.alpha")
    elif m.has(rank):
        try:  # LLaMA-Factory's default alpha is twice the rank
            m.out.setdefault("lora", {})["alpha"] = float(m.val(rank)) * 2
            m.note(rank, "lora.alpha = 2 x rank (LLaMA-Factory's default)")
        except (TypeError, ValueError):
            pass
    m.number(dropout, "lora.dropout")
    if m.has(target):
        t = M.lora_targets(m.val(target))
        if t is None:
            m.ignore(target, f"{m.val(target)!r} is not a list of module names (a regular expression?); ftwb's "
                             "all-linear applies: set lora.target_modules to names such as [q_proj, v_proj]")
        else:
            m.set(target, "lora.target_modules", t)


def _schedule(m: Mapper) -> None:
    m.number("num_train_epochs", "train.epochs")
    m.number("max_steps", "train.max_steps", int)
    m.number("learning_rate", "train.learning_rate")
    M.scheduler(m, "lr_scheduler_type")
    m.number("warmup_ratio", "train.warmup_ratio")
    m.number("warmup_steps", "train.warmup_steps", int)
    m.number("weight_decay", "train.weight_decay")
    m.number("max_grad_norm", "train.max_grad_norm")
    m.number("seed", "train.seed", int)
    M.optimizer(m, "optim")


def _dtype(m: Mapper) -> None:
    d = m.data
    for k in ("pure_bf16", "bf16"):
        if d.get(k) is True and "dtype" not in m.out.get("model", {}):
            m.set(k, "model.dtype", "bfloat16")
        elif m.present(k) and k not in m.done:
            m.ignore(k, "false" if d[k] is False else "another precision key decides")
    if d.get("fp16") is True and "dtype" not in m.out.get("model", {}):
        m.set("fp16", "model.dtype", "float16")
    elif m.present("fp16") and "fp16" not in m.done:
        m.ignore("fp16", "false" if d["fp16"] is False else "bf16 takes precedence")


def _checkpoints(m: Mapper) -> None:
    d = m.data
    m.number("logging_steps", "train.log_every", int)
    for key, steps_key, target, per in (("eval_strategy", "eval_steps", "train.eval_every", "train.evals_per_epoch"),
                                        ("save_strategy", "save_steps", "train.save_every", "train.saves_per_epoch")):
        strategy = str(d.get(key) or ("steps" if key == "save_strategy" else "")).lower()
        if strategy == "epoch":
            m.set(key, per, 1, "once per epoch: converted to steps once the dataset size is known")
            if m.present(steps_key):
                m.ignore(steps_key, f"{key}: epoch decides")
        elif strategy == "no":
            m.set(key, target, 0, "0 = only at the end")
            if m.present(steps_key):
                m.ignore(steps_key, f"{key}: no decides")
        else:
            if m.present(key):
                m.ignore(key, f"{strategy}: {steps_key} (or ftwb's default) sets the interval")
            m.number(steps_key, target, int)
    if m.present("eval_on_each_dataset"):
        m.ignore("eval_on_each_dataset", "ftwb evaluates on one validation split")
    m.number("save_total_limit", "train.keep_checkpoints", int)
    M.output_name(m, "output_dir")


def _preference(m: Mapper, stage: str) -> None:
    pref = stage in ("dpo", "kto")
    for key, target in (("pref_beta", "preference.beta"), ("dpo_label_smoothing", "preference.label_smoothing"),
                        ("pref_ftx", "preference.rpo_alpha"), ("kto_chosen_weight", "preference.desirable_weight"),
                        ("kto_undesirable_weight", "preference.undesirable_weight"),
                        ("kto_rejected_weight", "preference.undesirable_weight")):
        if not m.present(key):
            continue
        if not pref:
            m.ignore(key, f"only applies to preference stages (dpo, kto), not stage {stage}")
            continue
        m.number(key, target)
        if key == "pref_ftx" and key in m.done and any(k == key for k, *_ in m.mapped):
            m.note(key, "the SFT loss on the chosen answers added to the DPO loss (RPO)")
    if m.present("pref_loss"):
        loss = str(m.data["pref_loss"]).lower()
        if not pref:
            m.ignore("pref_loss", f"only applies to stage dpo, not stage {stage}")
        elif loss == "orpo":
            m.record("pref_loss", "train.objective", "orpo")
        elif stage == "kto":
            m.ignore("pref_loss", "stage kto uses the KTO loss")
        else:
            m.set("pref_loss", "preference.loss", _PREF_LOSSES[loss][1])


# ---------------------------------------------------------------- datasets via dataset_info.json

def _datasets(m: Mapper, stage: str) -> None:
    if not m.has("dataset"):
        return
    raw = m.data["dataset"]
    listed = isinstance(raw, list)
    names = [str(s).strip() for s in (raw if listed else str(raw).split(",")) if str(s).strip()]
    info_file, info = _dataset_info(m, str(m.val("dataset_dir", "data")))
    if info_file is not None and m.present("dataset_dir"):
        m.record("dataset_dir", "data.path", str(info_file.parent), "where dataset_info.json was found")
    elif m.present("dataset_dir"):
        m.ignore("dataset_dir", "no dataset_info.json there to resolve the dataset names")
    probs = _numbers(m.val("interleave_probs"))
    if m.present("interleave_probs") and (probs is None or len(probs) != len(names)):
        m.ignore("interleave_probs", f"expected {len(names)} comma-separated weights")
        probs = None
    if info_file is not None:
        m.note("dataset", f"{', '.join(names)}: format, columns and role tags from {info_file}")
    for j, name in enumerate(names):
        path = f"dataset.{j}" if listed else "dataset"
        _one_dataset(m, path, name, info.get(name), info_file, stage)
        i = len(m.sources) - 1
        if probs is not None:
            m.set_source(i, "interleave_probs", "weight", probs[j])
        if m.has("max_samples"):
            m.number("max_samples", "max_rows", int, into=i)
            m.done.add("max_samples")


def _numbers(raw: Any) -> list[float] | None:
    if raw is None:
        return None
    try:
        return [float(x) for x in (raw if isinstance(raw, list) else str(raw).split(","))]
    except (TypeError, ValueError):  # a list holding null or a mapping
        return None


def _dataset_info(m: Mapper, ds_dir: str) -> tuple[Path | None, dict]:
    p = Path(ds_dir).expanduser()
    for base in ((p,) if p.is_absolute() else (m.base_dir / p, Path.cwd() / p)):
        f = base / "dataset_info.json"
        if f.is_file():
            try:
                info = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(info, dict):
                return f, info
    return None, {}


def _one_dataset(m: Mapper, path: str, name: str, entry: Any, info_file: Path | None, stage: str) -> None:
    i = m.source()
    if not isinstance(entry, dict):
        where = "dataset_info.json has no such entry" if info_file else "no dataset_info.json next to the config"
        m.set_source(i, path, "path", name, f"{name!r} is a LLaMA-Factory dataset name ({where}); point data.path "
                                            "at its file")
        return
    media = [k for k in _MEDIA if (entry.get("columns") or {}).get(k)]
    if media:
        raise ConfigError(f"dataset {name!r} carries {', '.join(media)} (dataset_info.json columns): ftwb trains "
                          "text models and never trains media rows as text; nothing was imported")
    if entry.get("file_name"):
        local, note = M.data_path(m, str(info_file.parent / str(entry["file_name"])))
    else:
        hub = entry.get("hf_hub_url") or entry.get("ms_hub_url") or entry.get("script_url") or name
        local, note = str(hub), "a hub dataset: download it and point data.path at the file"
    m.set_source(i, path, "path", local, note)
    fmt, columns, roles = translate_entry(entry, stage)
    m.set_source(i, path, "format", fmt)
    if columns:
        m.set_source(i, path, "columns", columns)
    if roles:
        m.set_source(i, path, "roles", roles)
    if entry.get("split") and str(entry["split"]) != "train":
        m.set_source(i, path, "split", str(entry["split"]))
    if entry.get("num_samples"):
        try:
            m.set_source(i, path, "max_rows", int(entry["num_samples"]))
        except (TypeError, ValueError):
            pass


def translate_entry(entry: dict, stage: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """A dataset_info.json entry -> (ftwb format, columns {ftwb name: source column}, roles)."""
    cols = entry.get("columns") or {}
    tags = entry.get("tags") or {}
    formatting = str(entry.get("formatting") or "alpaca")
    ranking = bool(entry.get("ranking"))
    kto = "kto_tag" in cols or stage == "kto"
    columns: dict[str, str] = {}
    roles: dict[str, str] = {}

    def col(ftwb: str, src: str | None) -> None:
        if src and src != ftwb:
            columns[ftwb] = str(src)

    for k in ("system", "tools"):
        col(k, cols.get(k))
    if stage == "pt":
        col("text", cols.get("prompt", "text"))
        return "completion", columns, roles
    if formatting == "alpaca":
        if ranking:
            col("prompt", cols.get("prompt", "instruction"))
            col("chosen", cols.get("chosen"))
            col("rejected", cols.get("rejected"))
            return "preference", columns, roles
        if kto:
            col("prompt", cols.get("prompt", "instruction"))
            col("completion", cols.get("response", "output"))
            col("label", cols.get("kto_tag", "label"))
            return "kto", columns, roles
        col("instruction", cols.get("prompt"))
        col("input", cols.get("query"))
        col("output", cols.get("response"))
        col("history", cols.get("history"))
        return "alpaca", columns, roles
    openai = formatting == "openai"
    col("messages", cols.get("messages", "messages" if openai else "conversations"))
    role_tag = tags.get("role_tag", "role" if openai else "from")
    content_tag = tags.get("content_tag", "content" if openai else "value")
    col("role", role_tag)
    col("content", content_tag)
    for tag, role in (("user_tag", "user"), ("assistant_tag", "assistant"), ("observation_tag", "tool"),
                      ("function_tag", "assistant"), ("system_tag", "system")):
        if tags.get(tag) and tags[tag] != role:
            roles[str(tags[tag])] = role
    if ranking:
        col("chosen", cols.get("chosen"))
        col("rejected", cols.get("rejected"))
        return "preference", columns, roles
    if kto:
        col("label", cols.get("kto_tag", "label"))
        return "kto", columns, roles
    return ("chat" if (role_tag, content_tag) == ("role", "content") else "sharegpt"), columns, roles


# ---------------------------------------------------------------- v1 layout

def map_v1(m: Mapper) -> None:
    d = m.data
    m.set("model", "model.name_or_path", str(d["model"]))
    if m.has("template"):
        M.template_name(m, "template", str(d["template"]))
    peft = d.get("peft_config")
    quant = d.get("quant_config") if isinstance(d.get("quant_config"), dict) else {}
    qbits = quant.get("quantization_bit") if quant else None
    if isinstance(peft, dict):
        _method(m, "peft_config.name", str(peft.get("name") or "lora"), qbits)
        _lora(m, "peft_config.r", "peft_config.lora_alpha", "peft_config.lora_dropout", "peft_config.target_modules")
    else:
        _method(m, "peft_config", "full", qbits)
        m.notes.setdefault("peft_config", "no peft_config: full fine-tuning")
    if quant and m.present("quant_config.name"):
        m.ignore("quant_config.name", "ftwb quantises with bitsandbytes")
    m.number("cutoff_len", "data.max_seq_len", int)
    m.number("micro_batch_size", "train.micro_batch_size", int)
    if m.has("global_batch_size") and m.has("micro_batch_size"):
        try:
            accum = max(1, round(float(d["global_batch_size"]) / float(d["micro_batch_size"])))
            m.set("global_batch_size", "train.grad_accum", accum, "global / micro batch size on one device")
        except (TypeError, ValueError, ZeroDivisionError):
            m.ignore("global_batch_size", "not a number")
    _schedule(m)
    _dtype(m)
    M.output_name(m, "output_dir")
    m.number("logging_steps", "train.log_every", int)
    m.number("save_steps", "train.save_every", int)
    m.number("eval_steps", "train.eval_every", int)
    if m.has("train_dataset"):
        _v1_datasets(m, str(d["train_dataset"]))
    if m.has("eval_dataset"):
        m.ignore("eval_dataset", "ftwb holds out data.val_split of the training data for validation")


_V1_CONVERTERS = {"alpaca": "alpaca", "sharegpt": "sharegpt", "openai": "chat", "pair": "preference",
                  "chat": "chat", "messages": "chat"}


def _v1_datasets(m: Mapper, ref: str) -> None:
    """train_dataset names a YAML of {name: {path | file_name, dataset_dir, converter, split, num_samples}}."""
    p = Path(ref).expanduser()
    spec = None
    for cand in ((p,) if p.is_absolute() else (m.base_dir / p, Path.cwd() / p)):
        if cand.is_file():
            try:
                spec = yaml.safe_load(cand.read_text(encoding="utf-8"))
                p = cand
                break
            except (OSError, yaml.YAMLError):
                continue
    if not isinstance(spec, dict):
        i = m.source()
        local, note = M.data_path(m, ref)
        m.set_source(i, "train_dataset", "path", local,
                     note if ref.endswith((".json", ".jsonl", ".parquet", ".csv")) else
                     "a LLaMA-Factory dataset list that was not found next to the config; point data.path at the "
                     "data file")
        return
    objective = None
    for name, entry in spec.items():
        if not isinstance(entry, dict):
            continue
        i = m.source()
        where = entry.get("file_name") or entry.get("path") or name
        base = Path(str(entry.get("dataset_dir") or ""))
        local, note = M.data_path(m, str((p.parent / base / str(where)) if entry.get("file_name") else where))
        if note and entry.get("file_name"):
            local, note = M.data_path(m, str(where))
        m.set_source(i, "train_dataset", "path", local, note)
        fmt = _V1_CONVERTERS.get(str(entry.get("converter") or ""), "auto")
        m.set_source(i, "train_dataset", "format", fmt, f"{name}: converter {entry.get('converter')!r}")
        if fmt == "preference":
            objective = "dpo"
        if entry.get("split") and str(entry["split"]) != "train":
            m.set_source(i, "train_dataset", "split", str(entry["split"]))
        if entry.get("num_samples"):
            m.set_source(i, "train_dataset", "max_rows", int(entry["num_samples"]))
    if objective:
        m.set("train_dataset", "train.objective", objective, "pair data with model_class llm: DPO")
