"""Faults that used to lose a run: NaN gradients, a full disk, corrupt checkpoints, two
resumes of one run. Real engine processes on real files; each test asserts what survives."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import rundir
from engine.train import checkpoint as ckpt
from engine_helpers import ROOT, events_of, ftwb, only_run, small_demo_config, wait_for, write_config

pytestmark = pytest.mark.slow


def _all_finite(safetensors_file: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for t in load_file(str(safetensors_file)).values())


def test_nan_gradient_norm_is_skipped_and_only_finite_checkpoints_exist(tmp_path):
    """The reported case: learning rate 1.0 without clipping sends the gradient norm to NaN
    within ten steps on the demo. The NaN update is never applied, every checkpoint holds
    finite weights (and says so), and the run stops naming one of them."""
    cfg = write_config(small_demo_config(learning_rate=1.0, max_grad_norm=0.0, save_every=5, max_steps=20),
                       tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    skips = [e for e in evs if e["type"] == "warning" and e.get("kind") == "nan" and e.get("skipped")]
    assert skips and {e["what"] for e in skips} <= {"loss", "grad_norm"}
    metrics = [e for e in evs if e["type"] == "metric"]
    assert all(isinstance(e["loss"], float) for e in metrics)  # no NaN step was logged as trained
    ckpts = rundir.checkpoints(run)
    assert ckpts
    for c in ckpts:
        assert ckpt.verify(c) is None
        assert json.loads((c / ckpt.MANIFEST).read_text())["finite"] is True
        assert _all_finite(c / "adapter_model.safetensors"), c
    done = evs[-1]
    if done["status"] == "completed":
        assert res.returncode == 0 and _all_finite(run / rundir.ADAPTER / "adapter_model.safetensors")
    else:
        assert res.returncode == 1 and not (run / rundir.ADAPTER).exists()
        good = Path(done["summary"]["last_good_checkpoint"])
        assert good in ckpts and "last good checkpoint" in res.stderr
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 7 MiB tmpfs: room for the run and two 2.6 MB checkpoints, not for a third."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=7m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# `ftwb train` without its pre-flight (which would refuse a disk this small): the real
# launcher and the real follower, for the disk to fill up mid-run.
_NO_PREFLIGHT = """
import sys
from engine import config as C, launch, rundir
from engine.cli.train import _err, follow
try:
    launched = launch.start(C.load(sys.argv[1]), runs_dir=sys.argv[2])
except rundir.RunDirError as e:
    sys.exit(_err(str(e)))
sys.exit(follow(launched))
"""


def _train_without_preflight(cfg: Path, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_PREFLIGHT, str(cfg), str(runs)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_full_disk_during_a_checkpoint_stops_cleanly_with_the_last_complete_one(tmp_path, small_disk):
    cfg = write_config(small_demo_config(max_steps=30, save_every=5, eval_every=0, keep_checkpoints=5),
                       tmp_path / "run.yaml")
    res = _train_without_preflight(cfg, small_disk / "runs")
    assert res.returncode == 1, res.stderr[-3000:]
    run = only_run(small_disk / "runs")
    evs = events_of(run)
    err = next(e for e in evs if e["type"] == "error")
    assert err["kind"] == "disk" and err["path"].startswith(str(run)) and isinstance(err["free_bytes"], int)
    assert "free" in err["message"] and "--resume" in err["hint"]
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "failed"
    ckpts = rundir.checkpoints(run)
    assert ckpts and all(ckpt.verify(c) is None for c in ckpts)
    assert err["last_checkpoint"] == str(ckpts[-1])
    assert not list((run / rundir.CHECKPOINTS).glob(".tmp-*"))  # the failed write was removed
    assert "Traceback" not in res.stderr and res.stderr.count("error (disk)") == 1

    # A new run on the full disk: refused before anything starts, no run directory left.
    filler = small_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
        except OSError:
            pass
    before = sorted(p.name for p in (small_disk / "runs").iterdir())
    res2 = ftwb("train", str(cfg), "--runs-dir", str(small_disk / "runs"))
    assert res2.returncode == 2 and "Traceback" not in res2.stderr and "free" in res2.stderr, res2.stderr
    assert sorted(p.name for p in (small_disk / "runs").iterdir()) == before
    res3 = _train_without_preflight(cfg, small_disk / "runs")  # past the pre-flight too
    assert res3.returncode == 2 and "Traceback" not in res3.stderr, res3.stderr
    assert sorted(p.name for p in (small_disk / "runs").iterdir()) == before


# ---------------------------------------------------------------- corrupt checkpoints

@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A 20-step run with checkpoints at 10 and 15, copied afresh by each test."""
    tmp = tmp_path_factory.mktemp("stopped")
    cfg = write_config(small_demo_config(max_steps=20, keep_checkpoints=2), tmp / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp / "runs"))
    assert res.returncode == 0, res.stderr[-3000:]
    run = only_run(tmp / "runs")
    assert {"checkpoint-10", "checkpoint-15"} <= {c.name for c in rundir.checkpoints(run)}
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / run.name
    shutil.copytree(run, dst)
    return dst


def test_truncated_newest_checkpoint_falls_back_to_the_older_intact_one(stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path)
    weights = run / rundir.CHECKPOINTS / "checkpoint-15" / "adapter_model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    assert "adapter_model.safetensors" in ckpt.verify(weights.parent)
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)
    hello = [e for e in evs if e["type"] == "hello"][-1]
    assert hello["resumed_from_step"] == 10
    warn = next(e for e in evs if e["type"] == "warning" and e.get("kind") == "checkpoint_corrupt")
    assert "checkpoint-15" in warn["message"] and "checkpoint-15" in res.stderr
    # Exact resume from 10: steps 11-20 repeat the first attempt's losses.
    first = {e["step"]: e["loss"] for e in evs[:evs.index(hello)] if e["type"] == "metric"}
    again = {e["step"]: e["loss"] for e in evs[evs.index(hello):] if e["type"] == "metric"}
    assert sorted(again) == list(range(11, 21))
    for step, loss in again.items():
        assert loss == pytest.approx(first[step], rel=1e-4, abs=1e-5), step
    assert evs[-1]["status"] == "completed"


def test_rotation_deletes_the_manifest_first(tmp_path, monkeypatch):
    """A kill in the middle of rotating must never leave a checkpoint that looks complete
    but lacks its weights: the manifest goes before anything else."""
    root = tmp_path / rundir.CHECKPOINTS
    for step in (5, 10, 15):
        d = root / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"w" * 100)
        ckpt._write_manifest(d, step, True)
    manifest_left = []
    real_rmtree = shutil.rmtree

    def spy(path, *a, **kw):  # was the manifest already gone when the files went?
        manifest_left.append((Path(path) / ckpt.MANIFEST).exists())
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(ckpt.shutil, "rmtree", spy)
    ckpt.rotate(tmp_path, keep=1, best_step=None)
    assert manifest_left == [False, False]
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["checkpoint-15"]
    # A checkpoint whose files do not match its manifest is not intact.
    (root / "checkpoint-15" / "adapter_model.safetensors").write_bytes(b"w" * 99)
    assert "99 bytes" in ckpt.verify(root / "checkpoint-15")
    (root / "checkpoint-15" / ckpt.MANIFEST).unlink()
    assert rundir.checkpoints(tmp_path) == []


# ---------------------------------------------------------------- two resumes

def test_two_resumes_of_one_run_one_trains_the_other_is_refused(stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tui.main", "train", "--resume", str(run)]
    a = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (a, b)]
    codes = sorted(p.returncode for p in (a, b))
    assert codes == [0, 2], [o[1][-1500:] for o in outs]
    refused = outs[[a.returncode, b.returncode].index(2)][1]
    assert "already being trained" in refused or "still running" in refused
    assert "completed" not in refused  # never the other attempt's (or an earlier) result


def test_detached_resume_reports_an_engine_that_refused(stopped_run, tmp_path):
    """The lock is held by another engine that the pre-spawn check cannot see (no pid
    file yet): the detached engine refuses, and --detach says so with exit 2."""
    import fcntl

    run = _copy(stopped_run, tmp_path)
    fd = os.open(run / rundir.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (run / rundir.PID).unlink(missing_ok=True)
    try:
        from engine import launch

        launched = launch.spawn(run, resume=True, pipe=False)
        why = launch.wait_started(launched)
        assert launched.proc.returncode == launch.ENGINE_REFUSED
        assert why and "already being trained" in why
        # With the pid file there too (a live engine), ftwb refuses before spawning anything.
        (run / rundir.PID).write_text(str(os.getpid()))
        det = ftwb("train", "--resume", str(run), "--detach")
        assert det.returncode == 2 and "still running" in det.stderr and "Traceback" not in det.stderr
    finally:
        os.close(fd)


# ---------------------------------------------------------------- edited config, exit codes

def test_resume_with_an_edited_config_shows_the_diff_applies_what_can_change_and_refuses_the_rest(
        stopped_run, tmp_path):
    import yaml

    run = _copy(stopped_run, tmp_path)
    cfg_path = run / rundir.CONFIG
    original = cfg_path.read_text()
    frozen = yaml.safe_load(original)
    frozen["train"]["micro_batch_size"] = 8
    cfg_path.write_text(yaml.safe_dump(frozen, sort_keys=False))
    n_events = len(events_of(run))
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 2 and "cannot change in the middle of a run" in res.stderr
    assert "train.micro_batch_size: 4 -> 8" in res.stderr and "Traceback" not in res.stderr
    assert len(events_of(run)) == n_events  # refused before any engine started

    edited = yaml.safe_load(original)
    edited["train"]["max_steps"] = 24
    edited["train"]["learning_rate"] = 1e-4
    cfg_path.write_text(yaml.safe_dump(edited, sort_keys=False))
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)[n_events:]
    warn = next(e for e in evs if e["type"] == "warning" and e.get("kind") == "config_changed")
    assert {c["field"] for c in warn["changes"]} == {"train.max_steps", "train.learning_rate"}
    assert "train.max_steps: 20 -> 24" in res.stderr
    metrics = [e for e in evs if e["type"] == "metric"]
    assert [e["step"] for e in metrics] == list(range(16, 25))  # the new max_steps applied
    assert all(e["lr"] <= 1e-4 + 1e-12 for e in metrics)  # and the new peak LR
    assert evs[-1]["status"] == "completed" and evs[-1]["summary"]["steps"] == 24
    # The checkpoints written after the resume record the config they were trained with.
    newest = rundir.checkpoints(run)[-1]
    assert yaml.safe_load((newest / ckpt.CONFIG).read_text())["train"]["max_steps"] == 24


def test_a_stopped_run_exits_3_not_0(tmp_path):
    import signal

    from engine_helpers import follow_in_background

    cfg = write_config(small_demo_config(max_steps=400, save_every=0, eval_every=0), tmp_path / "run.yaml")
    cli, run = follow_in_background(cfg, tmp_path / "runs", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
    os.kill(rundir.read_pid(run), signal.SIGTERM)  # a stop from the TUI or another terminal
    _, err = cli.communicate(timeout=300)
    assert cli.returncode == 3, err[-2000:]
    assert events_of(run)[-1]["status"] == "stopped" and "Resume with: ftwb train --resume" in err


def test_nan_weights_give_a_nan_validation_loss_that_stops_the_run_and_no_checkpoint(tmp_path):
    """In process, on the real demo model: weights poisoned with one NaN make the real
    validation loss NaN; the trainer warns, refuses to go on, and refuses to save them."""
    import torch

    from engine.data.prepare import prepare
    from engine.train.control import Control
    from engine.train.loop import NonFiniteLoss, Trainer
    from engine.train.model import load_model

    cfg = small_demo_config()
    model, tok = load_model(cfg, "cpu")
    prepared = prepare(cfg, tok)
    events = []
    trainer = Trainer(cfg, tmp_path, model, tok, prepared.train[:8], prepared.val[:4], "cpu",
                      lambda t, **f: events.append((t, f)), Control())
    assert ckpt.weights_finite(model)
    trainer.save_checkpoint()  # finite: saved, and says so
    (good,) = rundir.checkpoints(tmp_path)
    assert json.loads((good / ckpt.MANIFEST).read_text())["finite"] is True
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="weights are no longer finite"):
        trainer._eval_and_track(1)
    warn = next(f for t, f in events if t == "warning" and f.get("kind") == "nan")
    assert warn["what"] == "val_loss" and warn["message"].startswith("validation loss was nan")
    assert not any(t == "eval" for t, _ in events[len(events) - 3:])  # no NaN recorded as a result
    with pytest.raises(NonFiniteLoss, match="checkpoint not saved"):
        trainer.save_checkpoint()
    assert rundir.checkpoints(tmp_path) == [good]


def test_an_engine_killed_by_sigkill_is_said_with_the_memory_hint(tmp_path):
    """What the kernel's OOM killer does to a CPU run: no event can say it, so the
    follower does, and names the way on."""
    import signal

    from engine_helpers import follow_in_background, wait_dead

    cfg = write_config(small_demo_config(max_steps=400, save_every=0, eval_every=0), tmp_path / "run.yaml")
    cli, run = follow_in_background(cfg, tmp_path / "runs", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
    pid = rundir.read_pid(run)
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    _, err = cli.communicate(timeout=300)
    assert cli.returncode == 1 and "killed (SIGKILL)" in err and "micro_batch_size" in err, err[-2000:]
    assert rundir.summarize(run).status == "crashed"
