"""One short demo run trained once per test session and shared by the eval, export and
playground tests (a file lock makes pytest-xdist workers share it too)."""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from engine import config as C
from engine import rundir
from engine_helpers import events_of, ftwb, only_run, write_config

STEPS = 40
EVAL_SAMPLES = 16
EVAL_NEW_TOKENS = 64


def eval_test_config() -> C.RunConfig:
    """The demo task with a test split, trained just long enough to beat its base model."""
    cfg = C.RunConfig()
    cfg.model.name_or_path = "demo"
    cfg.data.path = "demo"
    cfg.data.val_split, cfg.data.test_split, cfg.data.max_seq_len = 0.1, 0.1, 256
    t = cfg.train
    t.max_steps, t.learning_rate, t.micro_batch_size, t.warmup_steps = STEPS, 3e-3, 4, 3
    t.eval_every, t.save_every, t.gradient_checkpointing = 0, 0, False
    cfg.eval.at_end, cfg.eval.max_samples, cfg.eval.max_new_tokens = False, EVAL_SAMPLES, EVAL_NEW_TOKENS
    return cfg


def _shared_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def trained_run(tmp_path_factory) -> Path:
    root = _shared_root(tmp_path_factory) / "ftwb-eval-run"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = root / "runs"
        if runs.is_dir():
            run = only_run(runs)
            if (run / rundir.ADAPTER).is_dir():
                return run
        cfg_path = write_config(eval_test_config(), root / "config.yaml")
        res = ftwb("train", str(cfg_path), "--runs-dir", str(runs), "--name", "eval-test")
        assert res.returncode == 0, res.stderr[-2000:]
        run = only_run(runs)
        done = [e for e in events_of(run) if e.get("type") == "done"]
        assert done and done[-1]["status"] == "completed", done
        return run


def private_run(tmp_path_factory, name: str) -> Path:
    """A copy of the shared run for tests that write into it (eval results, exports):
    pytest-xdist may run tests of one module on two workers at once, and one worker's
    `ftwb eval` must not rewrite the results another is reading."""
    src = trained_run(tmp_path_factory)
    dst = tmp_path_factory.mktemp(name) / "runs" / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(rundir.LOCK))
    return dst
