"""Axolotl training YAML -> ftwb config: adapter, quantisation, LoRA, data, schedule, RL.

Datasets map one by one onto sources with their own format, column and role mappings
and split; `rl: dpo|ipo|orpo|kto` maps onto train.objective and the preference section.
What ftwb cannot train (GRPO and other online RL, reward models) is refused.
"""
from __future__ import annotations

from typing import Any

from engine.config import ConfigError
from engine.importers import mapper as M
from engine.importers.mapper import Mapper

REASONS = {
    "model_type": "ftwb reads the architecture from config.json",
    "tokenizer_type": "ftwb loads the model's own tokenizer",
    "tokenizer_config": "ftwb loads the tokenizer saved with the model",
    "special_tokens": "ftwb uses the tokenizer's special tokens (a pad token is set when missing)",
    "tokens": "ftwb adds no tokens (that would resize the embeddings)",
    "tf32": "left to PyTorch's defaults",
    "dataset_prepared_path": "ftwb caches tokenised data itself",
    "resume_from_checkpoint": "resume a run from its run directory (ftwb train --resume)",
    "auto_resume_from_checkpoints": "resume a run from its run directory (ftwb train --resume)",
    "lora_model_dir": "resume a run from its run directory (ftwb train --resume)",
    "loss_watchdog_threshold": "ftwb emits its own NaN and spike warnings",
    "loss_watchdog_patience": "ftwb emits its own NaN and spike warnings",
    "eval_sample_packing": "evaluation uses the training packing setting",
    "pad_to_sequence_len": "ftwb packs padding-free",
    "hub_model_id": "ftwb does not push to the hub; export the adapter with ftwb export",
    "push_to_hub": "ftwb does not push to the hub; export the adapter with ftwb export",
    "hub_strategy": "ftwb does not push to the hub; export the adapter with ftwb export",
    "deepspeed": "multi-GPU runs go through ftwb's launcher, not DeepSpeed configs",
    "fsdp": "multi-GPU runs go through ftwb's launcher",
    "fsdp_config": "multi-GPU runs go through ftwb's launcher",
    "fsdp_version": "multi-GPU runs go through ftwb's launcher",
    "ddp_timeout": "multi-GPU runs go through ftwb's launcher",
    "wandb_project": "ftwb logs every metric to the run's events.jsonl (train.report_to for trackers)",
    "wandb_entity": "ftwb logs every metric to the run's events.jsonl (train.report_to for trackers)",
    "wandb_watch": "ftwb logs every metric to the run's events.jsonl",
    "wandb_name": "ftwb logs every metric to the run's events.jsonl",
    "wandb_run_id": "ftwb logs every metric to the run's events.jsonl",
    "wandb_log_model": "ftwb logs every metric to the run's events.jsonl",
    "mlflow_tracking_uri": "set train.report_to: mlflow (MLFLOW_TRACKING_URI) instead",
    "strict": "no ftwb equivalent",
    "debug": "no ftwb equivalent",
    "xformers_attention": "ftwb uses PyTorch sdpa or flash-attn",
    "flash_attn_cross_entropy": "ftwb computes the loss in chunks itself",
    "flash_attn_rms_norm": "ftwb uses the model's own norms",
    "flash_attn_fuse_qkv": "ftwb does not fuse projections",
    "flash_attn_fuse_mlp": "ftwb does not fuse projections",
    "liger_rope": "ftwb uses the model's own kernels",
    "liger_rms_norm": "ftwb uses the model's own kernels",
    "liger_glu_activation": "ftwb uses the model's own kernels",
    "liger_fused_linear_cross_entropy": "ftwb computes the loss in chunks itself",
    "plugins": "Axolotl plugins have no ftwb equivalent",
    "torch_compile": "no ftwb equivalent",
    "group_by_length": "ftwb packs examples (or groups by length) itself",
    "save_safetensors": "ftwb always saves safetensors",
    "save_first_step": "no ftwb equivalent",
    "shuffle_merged_datasets": "ftwb mixes several sources deterministically by data.split_seed",
    "test_datasets": "ftwb holds out data.val_split of the training data for validation",
    "dataset_processes": "ftwb picks its own workers",
    "dataloader_num_workers": "ftwb picks its own workers",
    "dataloader_pin_memory": "ftwb picks its own data loading",
    "dataloader_prefetch_factor": "ftwb picks its own data loading",
    "eval_batch_size": "evaluation uses the training micro-batch size",
    "eval_table_size": "ftwb shows sample answers at each eval (eval.sample_prompts)",
    "do_bench_eval": "score benchmarks with ftwb eval",
    "bench_dataset": "score benchmarks with ftwb eval",
    "unfrozen_parameters": "full fine-tuning trains every parameter; LoRA trains the adapter",
    "peft_use_dora": "DoRA is not supported; plain LoRA",
    "peft_use_rslora": "rsLoRA scaling is not supported; plain alpha / r",
    "lora_modules_to_save": "ftwb trains the adapter only",
    "lora_fan_in_fan_out": "set by the model architecture",
    "bnb_config_kwargs": "ftwb quantises with its own NF4 settings (quant section)",
    "max_memory": "ftwb places the model itself",
    "gpu_memory_limit": "ftwb places the model itself",
    "low_cpu_mem_usage": "ftwb loads models with low memory use",
    "is_llama_derived_model": "ftwb reads the architecture from config.json",
    "is_mistral_derived_model": "ftwb reads the architecture from config.json",
    "is_qwen_derived_model": "ftwb reads the architecture from config.json",
    "hf_use_auth_token": "ftwb reads local files or the hub cache",
    "default_system_message": "put the system prompt in the data (data.columns.system)",
    "datasets.*.name": "a hub dataset configuration: download the files and point data.path at them",
    "datasets.*.ds_type": "ftwb recognises the file type from its name and content",
    "datasets.*.data_files": "hub loading option: point data.path at the file",
    "datasets.*.revision": "hub loading option: download that revision and point data.path at it",
    "datasets.*.shards": "subsample the dataset in ftwb's data view (or data.path max_rows)",
    "datasets.*.shards_idx": "subsample the dataset in ftwb's data view (or data.path max_rows)",
    "datasets.*.preprocess_shards": "ftwb caches tokenised data itself",
    "datasets.*.trust_remote_code": "ftwb reads plain data files only",
    "datasets.*.drop_system_message": "remove system turns in ftwb's data view",
    "datasets.*.conversation": "the chat template is model.chat_template",
    "datasets.*.train_on_split": "ftwb trains on the rows of data.split",
}

# rl values -> (objective, loss) ftwb trains.
RL = {"dpo": ("dpo", "sigmoid"), "ipo": ("dpo", "ipo"), "orpo": ("orpo", None), "kto": ("kto", None)}
_RL_REFUSED = {"grpo": "GRPO (online RL with reward functions)", "gspo": "GSPO (online RL)",
               "simpo": "SimPO", "ppo": "PPO (online RL with a reward model)", "gdpo": "online RL"}

# Axolotl `type:` names of SFT datasets -> ftwb formats.
SFT_TYPES = {"alpaca": "alpaca", "alpaca_chat": "alpaca", "alpaca_w_system": "alpaca", "alpaca_instruct": "alpaca",
             "chat_template": "chat", "sharegpt": "sharegpt", "completion": "completion",
             "pretrain": "completion"}
# Preference prompt strategies (`chatml.intel` ...): the columns their rows carry.
PAIR_STRATEGIES = {
    "intel": {"prompt": "question", "chosen": "chosen", "rejected": "rejected", "system": "system"},
    "argilla": {"prompt": "instruction", "chosen": "chosen_response", "rejected": "rejected_response"},
    "prompt_pairs": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "icr": {"prompt": "input", "chosen": "chosen", "rejected": "rejected"},
    "ultra": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "argilla_chat": {"chosen": "chosen", "rejected": "rejected"},
}
KTO_STRATEGIES = {
    "argilla": {"prompt": "instruction", "completion": "completion", "label": "label"},
    "intel": {"prompt": "question", "completion": "completion", "label": "label"},
    "prompt_pairs": {"prompt": "prompt", "completion": "completion", "label": "label"},
    "ultra": {"prompt": "prompt", "completion": "completion", "label": "label"},
    "argilla_chat": {"messages": "chosen", "label": "label"},
}
# Dataset keys that name source columns -> ftwb column names.
FIELD_KEYS = {"field_messages": "messages", "field_chosen": "chosen", "field_rejected": "rejected",
              "field_system": "system", "field_tools": "tools", "field_label": "label", "field_prompt": "prompt",
              "field_completion": "completion", "field_instruction": "instruction", "field_input": "input",
              "field_output": "output", "field": "text", "message_field_role": "role",
              "message_field_content": "content"}
MESSAGE_PROPERTIES = {"role", "content", "tool_calls", "name", "tool_call_id", "reasoning_content"}
FTWB_ROLES = ("system", "user", "assistant", "tool")


def refuse_unsupported(d: dict[str, Any], where: str) -> None:
    rl = str(d.get("rl") or "").lower()
    if rl in _RL_REFUSED:
        raise ConfigError(f"{where}: rl: {rl} is {_RL_REFUSED[rl]}, which ftwb does not train; ftwb trains "
                          "sft, dpo, ipo, orpo and kto (train.objective); nothing was imported")
    if rl and rl not in RL:
        raise ConfigError(f"{where}: rl: {rl} is not a method ftwb trains (it trains dpo, ipo, orpo and kto); "
                          "nothing was imported")
    for key, what in (("reward_model", "reward-model training"), ("process_reward_model",
                                                                   "process reward-model training")):
        if d.get(key) is True:
            raise ConfigError(f"{where}: {key}: true is {what}, which ftwb does not do (it trains the language "
                              "model itself: sft, dpo, orpo, kto); nothing was imported")
    if d.get("gkd_trainer") is True or any("gkd" in str(p).lower() for p in (d.get("plugins") or [])):
        raise ConfigError(f"{where}: on-policy distillation (GKD, from teacher {d.get('gkd_teacher', '?')}) is "
                          "not something ftwb trains; nothing was imported")
    model_type = str(d.get("model_type") or "")
    if d.get("processor_type") or any(w in model_type for w in ("ImageTextToText", "Vision2Seq", "Vision")):
        raise ConfigError(f"{where}: model_type {model_type or '?'} with processor_type "
                          f"{d.get('processor_type') or '?'} is a vision-language model; ftwb trains text models "
                          "and never trains media rows as text; nothing was imported")
    if "SequenceClassification" in model_type:
        raise ConfigError(f"{where}: model_type {model_type} trains a classifier (a reward model), which ftwb does "
                          "not do (it trains causal language models); nothing was imported")


def map_config(m: Mapper) -> None:
    d = m.data
    if m.has("base_model"):
        m.set("base_model", "model.name_or_path", str(d["base_model"]))
    _method(m)
    m.number("lora_r", "lora.r", int)
    m.number("lora_alpha", "lora.alpha")
    m.number("lora_dropout", "lora.dropout")
    _lora_targets(m)
    m.number("sequence_len", "data.max_seq_len", int)
    m.flag("sample_packing", "data.packing")
    m.number("micro_batch_size", "train.micro_batch_size", int)
    m.number("gradient_accumulation_steps", "train.grad_accum", int)
    m.number("num_epochs", "train.epochs")
    m.number("max_steps", "train.max_steps", int)
    m.number("learning_rate", "train.learning_rate")
    M.scheduler(m, "lr_scheduler")
    m.number("warmup_ratio", "train.warmup_ratio")
    m.number("warmup_steps", "train.warmup_steps", int)
    m.number("weight_decay", "train.weight_decay")
    m.number("max_grad_norm", "train.max_grad_norm")
    M.val_split(m, "val_set_size")
    gc = d.get("gradient_checkpointing")
    if isinstance(gc, bool):
        m.flag("gradient_checkpointing", "train.gradient_checkpointing")
    elif gc is not None:
        m.set("gradient_checkpointing", "train.gradient_checkpointing", True,
              f"{gc!r}: ftwb uses plain gradient checkpointing")
    _rl(m)
    _datasets(m)
    _chat_template(m)
    _dtype(m)
    m.number("seed", "train.seed", int)
    M.optimizer(m, "optimizer")
    _attention(m)
    m.flag("trust_remote_code", "model.trust_remote_code")
    if isinstance(d.get("train_on_inputs"), bool):
        m.set("train_on_inputs", "data.train_on", "all" if d["train_on_inputs"] else "assistant")
    m.number("logging_steps", "train.log_every", int)
    _steps_or_fraction(m, "eval_steps", "train.eval_every")
    _steps_or_fraction(m, "save_steps", "train.save_every")
    m.number("evals_per_epoch", "train.evals_per_epoch", int)
    m.number("saves_per_epoch", "train.saves_per_epoch", int)
    m.number("save_total_limit", "train.keep_checkpoints", int)
    m.number("early_stopping_patience", "train.early_stopping_patience", int)
    M.output_name(m, "output_dir")


def _method(m: Mapper) -> None:
    d = m.data
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
        m.out["method"] = "full"
        if m.present("adapter"):
            m.record("adapter", "method", "full", "no adapter: full fine-tuning")
        else:
            m.notes["adapter"] = "no adapter: full fine-tuning"
    for k in ("load_in_4bit", "load_in_8bit"):
        if m.present(k) and k not in m.done:
            m.ignore(k, "false: no quantisation" if d[k] is False else "only applies with adapter lora/qlora")


def _lora_targets(m: Mapper) -> None:
    d = m.data
    if d.get("lora_target_linear") is True:
        m.set("lora_target_linear", "lora.target_modules", "all-linear")
        if m.has("lora_target_modules"):
            m.ignore("lora_target_modules", "covered by lora_target_linear: true (all linear layers)")
    elif m.present("lora_target_linear") and not m.has("lora_target_modules"):
        m.ignore("lora_target_linear", "false and no lora_target_modules: ftwb's default all-linear kept")
    elif m.present("lora_target_linear"):
        m.ignore("lora_target_linear", "false: lora_target_modules lists the targets")
    if m.has("lora_target_modules") and "lora_target_modules" not in m.done:
        t = M.lora_targets(d["lora_target_modules"])
        if t is None:
            m.ignore("lora_target_modules", f"{d['lora_target_modules']!r} is not a list of module names (a regular "
                                            "expression?); ftwb's all-linear applies: set lora.target_modules to "
                                            "names such as [q_proj, v_proj] to narrow it")
        else:
            m.set("lora_target_modules", "lora.target_modules", t)


def _steps_or_fraction(m: Mapper, key: str, target: str) -> None:
    """eval_steps/save_steps below 1 are a fraction of all steps (HF semantics): not knowable here."""
    v = m.val(key)
    if isinstance(v, float) and 0 < v < 1:
        per = "evals_per_epoch" if key.startswith("eval") else "saves_per_epoch"
        m.ignore(key, f"{v:g} is a fraction of the run's steps; set train.{per} (or train.{target.split('.')[1]} "
                      "in steps) instead")
        return
    m.number(key, target, int)


def _rl(m: Mapper) -> None:
    rl = str(m.val("rl", "")).lower()
    if rl not in RL:
        return
    objective, loss = RL[rl]
    m.set("rl", "train.objective", objective, "IPO is DPO with preference.loss: ipo" if rl == "ipo" else None)
    if loss:
        m.out.setdefault("preference", {})["loss"] = loss
    losses = m.val("dpo_loss_type")
    if losses is not None:
        first = losses[0] if isinstance(losses, list) and losses else losses
        if objective == "dpo" and str(first) in ("sigmoid", "ipo", "hinge"):
            m.set("dpo_loss_type", "preference.loss", str(first),
                  "only the first loss type is used" if isinstance(losses, list) and len(losses) > 1 else None)
        else:
            m.ignore("dpo_loss_type", f"{losses!r}: ftwb's DPO losses are sigmoid, ipo and hinge")
    for key in ("dpo_beta", "rl_beta", "beta"):
        if m.has(key) and "preference.beta" not in {t for _, _, t, _ in m.mapped}:
            m.number(key, "preference.beta")
        elif m.has(key):
            m.ignore(key, "the other beta key is used")
    if m.has("orpo_alpha"):
        if objective == "orpo":
            m.number("orpo_alpha", "preference.beta")
            m.note("orpo_alpha", "ORPO's odds-ratio weight is ftwb's preference.beta")
        else:
            m.ignore("orpo_alpha", "only applies with rl: orpo")
    m.number("dpo_label_smoothing", "preference.label_smoothing")
    m.number("rpo_alpha", "preference.rpo_alpha")
    m.number("kto_desirable_weight", "preference.desirable_weight")
    m.number("kto_undesirable_weight", "preference.undesirable_weight")
    for key, why in (("rl_adapter_ref_model", "the reference is the base model with the adapter disabled"),
                     ("precompute_ref_log_probs", "ftwb computes reference log-probs as it needs them"),
                     ("dpo_use_weighting", "no ftwb equivalent"), ("dpo_use_logits_to_keep", "no ftwb equivalent"),
                     ("dpo_padding_free", "ftwb packs preference pairs padding-free itself"),
                     ("dpo_norm_loss", "no ftwb equivalent")):
        if m.present(key):
            m.ignore(key, why)


def _datasets(m: Mapper) -> None:
    ds = m.data.get("datasets")
    if m.has("datasets"):
        if not isinstance(ds, list) or not all(isinstance(x, dict) for x in ds):
            m.ignore("datasets", "expected a list of {path, type} entries")
        else:
            for i, entry in enumerate(ds):
                _dataset(m, i, entry)
    pre = m.data.get("pretraining_dataset")
    if m.has("pretraining_dataset"):
        entries = pre if isinstance(pre, list) else [pre]
        for j, entry in enumerate(entries):
            base = f"pretraining_dataset.{j}" if isinstance(pre, list) else "pretraining_dataset"
            path = entry.get("path") if isinstance(entry, dict) else entry
            if not path:
                m.ignore(base, "no path")
                continue
            local, note = M.data_path(m, str(path))
            i = m.source()
            m.set_source(i, f"{base}.path" if isinstance(entry, dict) else base, "path", local, note)
            m.sources[i]["format"] = "completion"
            m.note(base, "pre-training text: every token is trained (format completion)")
            if isinstance(entry, dict):
                if entry.get("text_column"):
                    m.set_source(i, f"{base}.text_column", "columns.text", str(entry["text_column"]))
                if entry.get("split"):
                    m.set_source(i, f"{base}.split", "split", str(entry["split"]))
                if entry.get("type"):
                    m.set_source(i, f"{base}.type", "format", "completion")


def _dataset(m: Mapper, i: int, entry: dict) -> None:
    p = f"datasets.{i}"
    if not entry.get("path"):
        m.ignore(p, "a dataset without a path")
        return
    rl = str(m.val("rl", "")).lower()
    objective = RL.get(rl, ("sft", None))[0]
    s = m.source()
    local, note = M.data_path(m, str(entry["path"]))
    m.set_source(s, f"{p}.path", "path", local, note)
    typ = entry.get("type")
    columns: dict[str, str] = {}
    if isinstance(typ, dict):
        m.ignore(f"{p}.type", "a user-defined prompt format (format strings): ftwb has none; data.format auto "
                              "detects the rows and the chat template formats them")
        fmt = "auto"
    else:
        raw = str(typ or "")
        base, _, variant = raw.partition(".")
        base = base.split(":")[0]
        fmt, columns = _format_of(m, p, base, variant, objective)
        columns = {k: v for k, v in columns.items() if k != v}  # the strategy's rows already use ftwb's name
    if isinstance(typ, str) and typ:
        m.set_source(s, f"{p}.type", "format", fmt)
    else:  # no type, or a custom one already reported as ignored
        m.sources[s]["format"] = fmt
    if fmt == "auto" and isinstance(typ, str) and typ:
        m.note(f"{p}.type", f"type {typ!r} is not an ftwb format; data.format auto detects it from the rows")
    for key, col in FIELD_KEYS.items():
        if m.present(f"{p}.{key}") and m.has(f"{p}.{key}"):
            columns[col] = str(entry[key])
            m.record(f"{p}.{key}", _col_target(s, col), str(entry[key]))
    props = entry.get("message_property_mappings")
    if isinstance(props, dict):
        for prop, src in props.items():
            path = f"{p}.message_property_mappings.{prop}"
            if prop in MESSAGE_PROPERTIES and isinstance(src, str):
                columns[prop] = src
                m.record(path, _col_target(s, prop), src)
            else:
                m.ignore(path, f"message property {prop!r} has no ftwb column")
    if columns:
        m.sources[s]["columns"] = columns
    _roles(m, p, s, entry)
    if m.has(f"{p}.split"):
        m.set_source(s, f"{p}.split", "split", str(entry["split"]))
    _train_roles(m, p, entry)
    if m.has(f"{p}.chat_template"):
        glob = m.val("chat_template")
        if glob and str(glob) == str(entry["chat_template"]):
            m.ignore(f"{p}.chat_template", "the same as the top-level chat_template")
        else:
            m.ignore(f"{p}.chat_template", "ftwb uses one chat template for all sources (model.chat_template)")


def _col_target(s: int, col: str) -> str:
    return f"@{s}.columns.{col}"


def _format_of(m: Mapper, p: str, base: str, variant: str, objective: str) -> tuple[str, dict[str, str]]:
    """(format, the strategy's own column mapping) of an Axolotl dataset type."""
    if objective in ("dpo", "orpo"):
        if base == "chat_template" or base == "user_defined":
            return "preference", ({"chosen": "chosen", "rejected": "rejected"} if variant == "argilla_chat" else {})
        if variant in PAIR_STRATEGIES:
            _strategy_template(m, p, base)
            return "preference", dict(PAIR_STRATEGIES[variant])
        return "auto", {}
    if objective == "kto":
        if base in ("chat_template", "user_defined"):
            return "kto", {}
        if variant in KTO_STRATEGIES:
            _strategy_template(m, p, base)
            return "kto", dict(KTO_STRATEGIES[variant])
        return "auto", {}
    if base in SFT_TYPES:
        fmt = SFT_TYPES[base]
        if base == "chat_template":
            fmt = "chat"
        return fmt, {}
    return "auto", {}


def _strategy_template(m: Mapper, p: str, base: str) -> None:
    """`chatml.intel`, `llama3.argilla`: the prefix names the chat template the strategy renders with."""
    if m.has("chat_template") or base in ("user_defined",):
        return
    if "model.chat_template" not in {t for _, _, t, _ in m.mapped}:
        M.template_name(m, f"{p}.type", base)


def _roles(m: Mapper, p: str, s: int, entry: dict) -> None:
    """Axolotl roles: {ftwb role: [source roles]} -> ftwb data.roles {source role: ftwb role}."""
    roles = entry.get("roles")
    if not isinstance(roles, dict):
        if roles is not None:
            m.ignore(f"{p}.roles", f"{roles!r} is not a mapping of roles")
        return
    out: dict[str, str] = {}
    for role, names in roles.items():
        path = f"{p}.roles.{role}"
        if str(role) not in FTWB_ROLES:
            m.ignore(path, f"role {role!r} is not one ftwb trains with ({', '.join(FTWB_ROLES)})")
            continue
        names = names if isinstance(names, list) else [names]
        names = [str(n) for n in names if n is not None]
        for n in names:
            out[n] = str(role)
        m.record(path, f"@{s}.roles", {n: str(role) for n in names})
    if out:
        m.sources[s]["roles"] = out


def _train_roles(m: Mapper, p: str, entry: dict) -> None:
    rtt = entry.get("roles_to_train")
    if rtt is not None:
        rtt = [str(r) for r in (rtt if isinstance(rtt, list) else [rtt])]
        if rtt == ["assistant"] or rtt == ["gpt"]:
            m.record(f"{p}.roles_to_train", "data.train_on", "assistant")
            m.out.setdefault("data", {}).setdefault("train_on", "assistant")
        else:
            m.ignore(f"{p}.roles_to_train", f"{rtt}: ftwb trains assistant turns (data.train_on: assistant) "
                                            "or every token (all)")
    eos = entry.get("train_on_eos")
    if eos is not None:
        if str(eos) == "turn":
            m.record(f"{p}.train_on_eos", "data.train_on", "assistant",
                     "ftwb trains each assistant turn's end-of-turn token")
        else:
            m.ignore(f"{p}.train_on_eos", f"{eos!r}: ftwb always trains each assistant turn's end-of-turn token")


def _chat_template(m: Mapper) -> None:
    if not m.has("chat_template"):
        return
    raw = str(m.data["chat_template"])
    if raw == "jinja" and m.has("chat_template_jinja"):
        m.set("chat_template", "model.chat_template", str(m.data["chat_template_jinja"]))
        m.consume("chat_template_jinja")
    elif raw == "jinja":
        m.ignore("chat_template", "jinja without chat_template_jinja: the tokenizer's own template is used")
    elif raw == "tokenizer_default":
        m.set("chat_template", "model.chat_template", None)
    elif raw.startswith("tokenizer_default_fallback_"):
        fallback = raw.removeprefix("tokenizer_default_fallback_")
        m.set("chat_template", "model.chat_template", None,
              f"the tokenizer's own template; ftwb falls back to ChatML (not {fallback}) when there is none"
              if fallback != "chatml" else "the tokenizer's own template, else ChatML")
    else:
        M.template_name(m, "chat_template", raw)


def _dtype(m: Mapper) -> None:
    d = m.data
    bf16, fp16 = d.get("bf16"), d.get("fp16")
    if bf16 == "auto":
        m.set("bf16", "model.dtype", "auto", "auto: bf16 where the GPU supports it")
    elif bf16 is True:
        m.set("bf16", "model.dtype", "bfloat16")
    elif fp16 is True:
        m.set("fp16", "model.dtype", "float16")
        if m.present("bf16"):
            m.ignore("bf16", "fp16 is on")
    elif bf16 is False:
        m.set("bf16", "model.dtype", "float32", "bf16 and fp16 off: full precision")
    if m.present("fp16") and "fp16" not in m.done:
        m.ignore("fp16", "bf16 takes precedence" if d["fp16"] else "false")


def _attention(m: Mapper) -> None:
    d = m.data
    if m.has("attn_implementation"):
        raw = str(d["attn_implementation"])
        impl = M.ATTN.get(raw)
        if impl is None:
            m.set("attn_implementation", "model.attn_implementation", "auto",
                  f"attention {raw!r} has no ftwb equivalent; using auto (sdpa)")
        else:
            M.attention(m, "attn_implementation", impl)
        for k in ("flash_attention", "sdp_attention", "flex_attention"):
            if m.present(k):
                m.ignore(k, "attn_implementation decides")
    elif d.get("flash_attention") is True:
        M.attention(m, "flash_attention", "flash_attention_2")
    elif d.get("sdp_attention") is True:
        m.set("sdp_attention", "model.attn_implementation", "sdpa")
    elif d.get("flex_attention") is True:
        m.set("flex_attention", "model.attn_implementation", "auto",
              "flex attention is not an ftwb choice; auto (sdpa, packing still isolated)")
    for k in ("flash_attention", "sdp_attention", "flex_attention"):
        if m.present(k) and k not in m.done:
            m.ignore(k, "false" if d[k] is False else "another attention setting decides")
