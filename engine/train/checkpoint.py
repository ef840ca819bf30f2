"""Checkpoints for exact resume: weights, optimizer, scheduler, RNG and data position.

Each checkpoint is written to a temporary directory and renamed into place, and it counts
as complete only once its manifest (written last: every file with its size, and whether
the weights were all finite) is there. Resume verifies the manifest and falls back to the
newest intact checkpoint. Rotation keeps the last K plus the best by validation loss and
deletes a checkpoint's manifest first, so a kill mid-rotation leaves it incomplete, never
"complete" without its weights. A write that fails (a full disk) removes its temporary
directory and raises DiskError with the path and the free space.

A run on several processes saves from rank 0 alone (the weights and optimizer state are
the same on every rank) with every rank's RNG state: rng.pt is rank 0's, rng-rank<r>.pt
rank r's, so a resume on the same world size continues each rank's dropout exactly.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from engine import rundir
from engine.train.model import load_weights, save_weights

STATE = "trainer_state.json"
MANIFEST = rundir.MANIFEST
MANIFEST_VERSION = 1
# Test hook for disk faults where no small filesystem can be mounted: FTWB_FAIL_CHECKPOINT_AT=3
# makes the checkpoint of step 3 fail to write with ENOSPC, as a full disk would.
_FAIL_AT = os.environ.get("FTWB_FAIL_CHECKPOINT_AT", "")


class DiskError(OSError):
    """Writing to the run directory failed (full disk, quota, read-only); says where and how much is free."""

    def __init__(self, path: Path, cause: OSError):
        self.path, self.cause = Path(path), cause
        self.free_bytes = free_bytes(self.path)
        self.message = (f"cannot write {self.path}: {cause.strerror or cause} "
                        f"({_human(self.free_bytes)} free on that disk)")
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


def free_bytes(path: Path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _human(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


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


def weights_finite(model) -> bool:
    """True when every trainable weight is finite (one host sync)."""
    import torch

    flags = [torch.isfinite(p.detach()).all() for p in model.parameters() if p.requires_grad]
    return bool(torch.stack([f.to(flags[0].device) for f in flags]).all()) if flags else True


CONFIG = "config.yaml"  # the config this checkpoint was trained with (a resume diffs against it)


def path_of(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / rundir.CHECKPOINTS / f"checkpoint-{step}"


def shared_tmp(run_dir: Path, step: int) -> Path:
    """A temporary checkpoint directory whose name every rank of the group computes alike."""
    tag = os.environ.get("FTWB_AGENT_PID") or str(os.getpid())
    return Path(run_dir) / rundir.CHECKPOINTS / f".tmp-checkpoint-{step}-{tag}"


def rng_file(rank: int) -> str:
    return "rng.pt" if rank == 0 else f"rng-rank{rank}.pt"


def save(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, state: dict, method: str,
         config_text: str | None = None, rank_rngs: list | None = None, written: Path | None = None) -> Path:
    """`written`: a temporary directory that already holds the weights and optimizer state
    (FSDP2 gathers them collectively); the rest is added and it is renamed into place."""
    import torch

    root = run_dir / rundir.CHECKPOINTS
    final = path_of(run_dir, step)
    tmp = written or root / f".tmp-checkpoint-{step}-{os.getpid()}"
    try:
        root.mkdir(exist_ok=True)
        if written is None:
            shutil.rmtree(tmp, ignore_errors=True)
            save_weights(model, tokenizer, tmp, method)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        for r, rng in enumerate(rank_rngs or [rng_state()]):
            torch.save(rng, tmp / rng_file(r))
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        if config_text is not None:
            (tmp / CONFIG).write_text(config_text)
        if _FAIL_AT == str(step):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "optimizer.pt"))
        _write_manifest(tmp, step, bool(state.get("finite", True)))
        if final.exists():  # the same step saved twice (save-now right after a periodic save)
            _remove(final)
        os.replace(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a half checkpoint must not keep the disk full
        raise DiskError(Path(e.filename) if e.filename else tmp, e) from None
    except RuntimeError as e:
        # torch.save reports a short write as "[enforce fail at inline_container.cc] unexpected
        # pos ..." (a RuntimeError, no errno): on a full disk that is the disk's doing.
        shutil.rmtree(tmp, ignore_errors=True)
        if "unexpected pos" in str(e) or "write" in str(e).lower():
            raise DiskError(tmp, OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (torch: {e})")) from None
        raise
    return final


def _write_manifest(d: Path, step: int, finite: bool) -> None:
    files = {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file() and p.name != MANIFEST}
    text = json.dumps({"version": MANIFEST_VERSION, "step": step, "finite": finite, "files": files}, indent=1)
    with open(d / MANIFEST, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def verify(ckpt: Path) -> str | None:
    """None when the checkpoint is intact (every file of its manifest, at its size, and
    finite weights); otherwise what is wrong with it."""
    try:
        man = json.loads((ckpt / MANIFEST).read_text())
        files = man["files"]
    except FileNotFoundError:
        return "no manifest (the write did not finish)"
    except (OSError, ValueError, KeyError, TypeError):
        return "its manifest is unreadable"
    if not isinstance(files, dict) or not files:
        return "its manifest lists no files"
    for name, size in files.items():
        try:
            actual = (ckpt / name).stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as e:
            return f"{name} cannot be read ({e.strerror})"
        if actual != size:
            return f"{name} is {actual} bytes, the manifest says {size}"
    if man.get("finite") is False:
        return "its weights are not all finite"
    return None


def load(ckpt: Path, model, optimizer, scheduler, method: str, rank: int = 0, weights_loader=None) -> dict:
    """Weights, optimizer, scheduler and this rank's RNG state (rank 0's when the checkpoint
    was saved by fewer processes, then offset by the rank so ranks do not share dropout)."""
    import torch

    if weights_loader is not None:  # FSDP2: weights and optimizer state into every rank's shards
        weights_loader(ckpt)
    else:
        load_weights(model, ckpt, method)
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False, map_location="cpu"))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    own = ckpt / rng_file(rank)
    set_rng_state(torch.load(own if own.exists() else ckpt / "rng.pt", weights_only=False))
    if rank and not own.exists():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()) + rank)
    return json.loads((ckpt / STATE).read_text())


def _remove(p: Path) -> None:
    """Manifest first: from then on the checkpoint is incomplete, whatever else survives."""
    try:
        (p / MANIFEST).unlink(missing_ok=True)
    except OSError:
        pass
    shutil.rmtree(p, ignore_errors=True)


def rotate(run_dir: Path, keep: int, best_step: int | None) -> list[Path]:
    """Delete all but the newest `keep` checkpoints and the best one; return what was removed."""
    ckpts = rundir.checkpoints(run_dir)
    protected = {p for p in ckpts[-keep:]}
    if best_step is not None:
        protected |= {p for p in ckpts if p.name == f"checkpoint-{best_step}"}
    removed = []
    for p in ckpts:
        if p not in protected:
            _remove(p)
            removed.append(p)
    for stale in (run_dir / rundir.CHECKPOINTS).glob(".tmp-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return removed
