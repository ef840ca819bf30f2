"""Config presets: LoRA, QLoRA, full fine-tuning and a quick smoke test. Each preset
sets only the fields it is about; model and data paths are never touched. Plain Python."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import config as C


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    description: str
    values: dict[str, Any]  # dotted field -> value


PRESETS: tuple[Preset, ...] = (
    Preset("lora", "LoRA", "bf16 base, rank-16 adapters on all linears, lr 2e-4, cosine",
           {"method": "lora", "lora.r": 16, "lora.alpha": 32.0, "lora.dropout": 0.05,
            "lora.target_modules": "all-linear", "train.learning_rate": 2e-4, "train.scheduler": "cosine",
            "train.warmup_ratio": 0.03, "train.max_steps": 0, "train.gradient_checkpointing": True}),
    Preset("qlora", "QLoRA", "4-bit NF4 base (double quant), bf16 adapters, lr 2e-4",
           {"method": "qlora", "lora.r": 16, "lora.alpha": 32.0, "lora.dropout": 0.05,
            "lora.target_modules": "all-linear", "quant.bits": 4, "quant.type": "nf4",
            "quant.double_quant": True, "quant.compute_dtype": "bfloat16", "train.learning_rate": 2e-4,
            "train.scheduler": "cosine", "train.warmup_ratio": 0.03, "train.max_steps": 0,
            "train.gradient_checkpointing": True}),
    Preset("full", "Full fine-tune", "every weight trained, lr 2e-5, checkpointing on, weight decay 0.01",
           {"method": "full", "train.learning_rate": 2e-5, "train.scheduler": "cosine",
            "train.warmup_ratio": 0.03, "train.weight_decay": 0.01, "train.max_steps": 0,
            "train.gradient_checkpointing": True}),
    Preset("smoke", "Smoke test", "5 steps, evaluate and save once at the end: checks the whole pipeline",
           {"train.max_steps": 5, "train.eval_every": 0, "train.save_every": 0, "train.log_every": 1,
            "train.early_stopping_patience": 0, "eval.at_end": False, "eval.max_samples": 4}),
)
BY_KEY = {p.key: p for p in PRESETS}


def apply(cfg: C.RunConfig, key: str) -> C.RunConfig:
    """A new config with the preset's fields set (validated by engine.config)."""
    try:
        preset = BY_KEY[key]
    except KeyError:
        raise C.ConfigError(f"preset {key!r}: unknown; choose one of {', '.join(BY_KEY)}") from None
    d = cfg.to_dict()
    for path, value in preset.values.items():
        node = d
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return C.from_dict(d)
