"""Checkpoints for exact resume: weights, optimizer, scheduler, RNG and data position.

Each checkpoint is written to a temporary directory and renamed into place, so a crash
mid-save never leaves a half checkpoint that resume would pick up. Rotation keeps the
last K plus the best by validation loss.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from engine import rundir
from engine.train.model import load_weights, save_weights

STATE = "trainer_state.json"


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, state: dict, method: str) -> Path:
    import torch

    root = run_dir / rundir.CHECKPOINTS
    root.mkdir(exist_ok=True)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(model, tokenizer, tmp, method)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    # The state file goes last: its presence marks the checkpoint complete.
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    if final.exists():  # the same step saved twice (save-now right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load(ckpt: Path, model, optimizer, scheduler, method: str) -> dict:
    import torch

    load_weights(model, ckpt, method)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return json.loads((ckpt / STATE).read_text())


def rotate(run_dir: Path, keep: int, best_step: int | None) -> list[Path]:
    """Delete all but the newest `keep` checkpoints and the best one; return what was removed."""
    ckpts = rundir.checkpoints(run_dir)
    protected = {p for p in ckpts[-keep:]}
    if best_step is not None:
        protected |= {p for p in ckpts if p.name == f"checkpoint-{best_step}"}
    removed = []
    for p in ckpts:
        if p not in protected:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for stale in (run_dir / rundir.CHECKPOINTS).glob(".tmp-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return removed
