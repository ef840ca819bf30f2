"""TensorBoard: scalars and notes under RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR`)."""
from __future__ import annotations

from pathlib import Path

from engine.trackers import Tracker

LOG_DIR = "tensorboard"


class TensorBoardTracker(Tracker):
    def __init__(self, cfg, run_dir: Path):
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter

        self.where = str(Path(run_dir) / LOG_DIR)
        self.writer = SummaryWriter(log_dir=self.where, flush_secs=10)
        self.writer.add_text("config", "```\n" + cfg.to_yaml() + "\n```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)

    def note(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
