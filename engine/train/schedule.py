"""Learning-rate schedule: linear warmup, then cosine, linear or constant."""
from __future__ import annotations

import math

from engine.config import TrainConfig


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    if cfg.warmup_steps > 0:
        return min(cfg.warmup_steps, total_steps)
    return int(math.ceil(cfg.warmup_ratio * total_steps))


def lr_factor(step: int, total_steps: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    from torch.optim.lr_scheduler import LambdaLR

    w = warmup_steps(cfg, total_steps)
    return LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, w, cfg.scheduler))
