"""Weights & Biases, offline by default (RUN_DIR/wandb; `wandb sync` uploads it later).
WANDB_MODE=online in the environment logs straight to the server."""
from __future__ import annotations

import os
from pathlib import Path

from engine.trackers import Tracker


class WandbTracker(Tracker):
    def __init__(self, cfg, run_dir: Path):
        super().__init__()
        import wandb

        mode = os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "ftwb", name=Path(run_dir).name,
                              dir=str(run_dir), mode=mode, config=cfg.to_dict(), reinit=True)
        self.where = f"{mode} run in {Path(run_dir) / 'wandb'}"

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def note(self, tag: str, text: str, step: int) -> None:
        self.run.summary[tag] = text

    def close(self) -> None:
        self.run.finish()
