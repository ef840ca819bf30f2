"""What a YAML/JSON file is: an Axolotl or LLaMA-Factory training config, or something else.

Files that are not training configs (inference, merge/export, evaluation, prediction,
accelerate or DeepSpeed launcher settings, a model's config.json, an ftwb config) are
recognised by their own keys and refused with a message naming what they are, so they
are never imported as a run on default data.
"""
from __future__ import annotations

from typing import Any

AXOLOTL_KEYS = {"base_model", "adapter", "lora_r", "sequence_len", "micro_batch_size", "num_epochs",
                "sample_packing", "lora_target_linear", "val_set_size", "datasets", "load_in_4bit", "rl",
                "chat_template", "pretraining_dataset"}
LLAMAFACTORY_KEYS = {"model_name_or_path", "finetuning_type", "lora_rank", "lora_target", "cutoff_len",
                     "per_device_train_batch_size", "num_train_epochs", "stage", "template",
                     "quantization_bit", "val_size", "dataset"}
# LLaMA-Factory's newer ("v1") trainer: `model` is a hub id and the sections are *_config mappings.
LLAMAFACTORY_V1_KEYS = {"model_class", "peft_config", "dist_config", "kernel_config", "quant_config",
                        "train_dataset", "global_batch_size", "sample_backend"}

KIND_NAMES = {"axolotl": "Axolotl", "llamafactory": "LLaMA-Factory", "llamafactory_v1": "LLaMA-Factory (v1)"}

_TRAINS = "ftwb imports training configs only"


def not_training(data: dict[str, Any]) -> str | None:
    """What the file is, when it is not a training config of a tool ftwb imports; else None."""
    keys = set(map(str, data))
    if {"compute_environment", "distributed_type"} & keys or {"num_processes", "machine_rank"} <= keys:
        return (f"an accelerate launcher config (distributed_type: {data.get('distributed_type', '?')}); "
                f"{_TRAINS}; ftwb starts multi-GPU runs itself")
    if {"zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size"} & keys and not (
            {"base_model", "model_name_or_path", "datasets", "dataset"} & keys):
        stage = (data.get("zero_optimization") or {}).get("stage") if isinstance(
            data.get("zero_optimization"), dict) else None
        return (f"a DeepSpeed config{f' (ZeRO stage {stage})' if stage is not None else ''}; {_TRAINS}; "
                "ftwb starts multi-GPU runs itself")
    if {"architectures", "hidden_size", "num_hidden_layers"} & keys and "model_type" in keys and not (
            {"base_model", "model_name_or_path"} & keys):
        return "a model's config.json (its architecture); point model.name_or_path at the model's directory"
    if "model_name_or_path" in keys:
        if "export_dir" in keys:
            if data.get("export_quantization_bit"):
                what = f"a LLaMA-Factory quantised export config ({data['export_quantization_bit']}-bit GPTQ)"
            elif data.get("adapter_name_or_path"):
                what = "a LLaMA-Factory merge config (merges an adapter into the base model)"
            else:
                what = "a LLaMA-Factory export config"
            return f"{what}, to {data['export_dir']}; {_TRAINS}; export a trained ftwb run with `ftwb export RUN_DIR`"
        if "infer_backend" in keys or ("adapter_name_or_path" in keys and not {"stage", "dataset", "do_train"} & keys
                                       and "task" not in keys):
            backend = data.get("infer_backend") or "huggingface"
            return (f"a LLaMA-Factory inference (chat) config (infer_backend: {backend}); {_TRAINS}; "
                    "try a trained ftwb run in the Playground instead")
        if "task" in keys and ("n_shot" in keys or "save_dir" in keys) and "stage" not in keys:
            return (f"a LLaMA-Factory evaluation config (task: {data['task']}); {_TRAINS}; "
                    "evaluate a trained ftwb run with `ftwb eval RUN_DIR`")
        if data.get("do_predict") is True and data.get("do_train") is not True:
            return (f"a LLaMA-Factory prediction config (do_predict on {data.get('eval_dataset', 'a dataset')}); "
                    f"{_TRAINS}; evaluate a trained ftwb run with `ftwb eval RUN_DIR`")
    return None


def is_ftwb(data: dict[str, Any]) -> bool:
    """ftwb's own layout: sections that are mappings (`model:` as a mapping, not a hub id)."""
    from engine import config as C

    sections = [k for k in data if k in C.SECTIONS]
    if not sections and "method" not in data:
        return False
    return all(isinstance(data[k], dict) or data[k] is None for k in sections) and not (
        set(map(str, data)) & (AXOLOTL_KEYS | LLAMAFACTORY_KEYS | LLAMAFACTORY_V1_KEYS))


def detect_kind(data: dict[str, Any]) -> str | None:
    """'axolotl', 'llamafactory', 'llamafactory_v1', or None when no tool's keys are there."""
    keys = set(map(str, data))
    if isinstance(data.get("model"), str) and len(keys & LLAMAFACTORY_V1_KEYS) >= 1:
        return "llamafactory_v1"
    ax, lf = len(keys & AXOLOTL_KEYS), len(keys & LLAMAFACTORY_KEYS)
    if "base_model" in keys and "model_name_or_path" not in keys:
        ax += 3
    if "model_name_or_path" in keys and "base_model" not in keys:
        lf += 3
    if max(ax, lf) < 2:
        return None
    return "axolotl" if ax >= lf else "llamafactory"
