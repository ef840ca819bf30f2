"""The real engine, through the real CLI, on the demo model and task (CPU)."""
from __future__ import annotations

import json
import os
import signal
import statistics

import pytest

from engine import rundir
from engine_helpers import (events_of, follow_in_background, ftwb, last_metric_step, only_run, pid_running,
                            small_demo_config, wait_dead, wait_for, write_config)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 20-step run; several tests read it."""
    tmp = tmp_path_factory.mktemp("full")
    cfg = write_config(small_demo_config(), tmp / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp / "runs"), "--name", "full")
    return res, only_run(tmp / "runs")


def test_run_completes_with_falling_loss_and_well_formed_events(full_run):
    res, run = full_run
    assert res.returncode == 0, res.stderr[-3000:]
    raw = (run / rundir.EVENTS).read_text().splitlines()
    evs = [json.loads(line) for line in raw]  # every line parses
    assert all(e["v"] == 1 and e["type"] and isinstance(e["ts"], float) for e in evs)
    types = [e["type"] for e in evs]
    for t in ("hello", "phase", "data", "progress", "metric", "eval", "checkpoint", "done"):
        assert t in types, t
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    losses = [e["loss"] for e in evs if e["type"] == "metric"]
    assert len(losses) == 20
    assert statistics.mean(losses[-4:]) < 0.8 * statistics.mean(losses[:4])
    vals = [e["val_loss"] for e in evs if e["type"] == "eval"]
    assert len(vals) >= 3 and vals[-1] < vals[0]
    m = next(e for e in evs if e["type"] == "metric")
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= m.keys()
    assert "completed" in res.stderr


def test_run_directory_layout(full_run):
    _, run = full_run
    for name in (rundir.CONFIG, rundir.DATA, rundir.EVENTS, rundir.LOG):
        assert (run / name).exists(), name
    assert not (run / rundir.PID).exists()  # removed when the engine exits
    data = json.loads((run / rundir.DATA).read_text())
    assert data["format"] == "chat" and data["splits"]["train"] > 0 and data["content_hash"]
    ckpts = rundir.checkpoints(run)
    # keep_checkpoints=2 plus possibly the best one
    assert 2 <= len(ckpts) <= 3
    for c in ckpts:
        assert {"optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json",
                "adapter_model.safetensors"} <= {p.name for p in c.iterdir()}
    assert (run / rundir.ADAPTER / "adapter_config.json").exists()
    s = rundir.summarize(run)
    assert s.status == "completed" and s.step == 20 and s.best_val_loss is not None


def test_adapter_loads_with_plain_peft_and_changes_outputs(full_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.demo import ensure_demo_model

    _, run = full_run
    base_dir = ensure_demo_model()
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok("My order #A12345 never arrived and I am furious", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, run / rundir.ADAPTER)
    with torch.no_grad():
        after = tuned(ids).logits
    assert torch.isfinite(after).all()
    assert (after - before).abs().max() > 1e-3


def test_resume_after_sigkill_reaches_the_same_final_step_and_losses(full_run, tmp_path):
    _, ref = full_run
    cfg = write_config(small_demo_config(), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--detach")
    assert res.returncode == 0, res.stderr
    run = only_run(tmp_path / "runs")
    assert res.stdout.strip() == str(run)
    wait_for(lambda: any(p.name == "checkpoint-10" for p in rundir.checkpoints(run)))
    pid = rundir.read_pid(run)
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    # The leader can show as a zombie while its other threads still hold the lock's fd.
    wait_for(lambda: not rundir.is_alive(run), 30)
    assert rundir.summarize(run).status == "crashed"
    killed_at = last_metric_step(run)
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    assert evs[-1]["summary"]["steps"] == 20
    hellos = [e for e in evs if e["type"] == "hello"]
    assert len(hellos) == 2 and hellos[1]["resumed_from_step"] >= 10
    # Exact resume: the steps after the checkpoint repeat the uninterrupted run's losses.
    resumed = {e["step"]: e["loss"] for e in evs[evs.index(hellos[1]):] if e["type"] == "metric"}
    reference = {e["step"]: e["loss"] for e in events_of(ref) if e["type"] == "metric"}
    assert sorted(resumed) == list(range(hellos[1]["resumed_from_step"] + 1, 21))
    for step, loss in resumed.items():
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step
    assert killed_at >= 10


def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path):
    cfg = write_config(small_demo_config(max_steps=500, save_every=0, eval_every=0), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--detach")
    assert res.returncode == 0, res.stderr
    run = only_run(tmp_path / "runs")
    wait_for(lambda: last_metric_step(run) >= 3)
    pid = rundir.read_pid(run)
    os.kill(pid, signal.SIGTERM)
    wait_dead(pid)
    wait_for(lambda: not rundir.is_alive(run), 30)
    evs = events_of(run)
    done = evs[-1]
    assert done["type"] == "done" and done["status"] == "stopped"
    step = done["summary"]["steps"]
    assert 3 <= step < 500
    assert [c.name for c in rundir.checkpoints(run)] == [f"checkpoint-{step}"]
    assert rundir.summarize(run).status == "stopped"


def test_sigusr1_checkpoints_now_and_hangup_does_not_stop_the_engine(tmp_path):
    cfg = write_config(small_demo_config(max_steps=400, save_every=0, eval_every=0), tmp_path / "run.yaml")
    # Start a following (not detached) CLI in its own process group, then kill it the way a
    # dropped SSH link would: the engine must go on.
    import subprocess

    cli, run = follow_in_background(cfg, tmp_path / "runs", stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(cli.pid, signal.SIGHUP)
    cli.wait(timeout=30)
    pid = rundir.read_pid(run)
    step_then = last_metric_step(run)
    wait_for(lambda: last_metric_step(run) >= step_then + 3)
    assert pid_running(pid) and rundir.is_alive(run)
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: rundir.checkpoints(run))
    assert pid_running(pid)  # save-now does not stop the run
    os.kill(pid, signal.SIGTERM)
    wait_dead(pid)
    wait_for(lambda: not rundir.is_alive(run), 30)
    assert events_of(run)[-1]["status"] == "stopped"


def test_oom_reports_batch_shape_and_hint_without_a_traceback_flood(tmp_path):
    cfg = write_config(small_demo_config(max_steps=10), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"FTWB_INJECT_FAULT": "oom@3"})
    assert res.returncode == 1
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    err = next(e for e in evs if e["type"] == "error")
    assert err["kind"] == "oom" and len(err["batch_shape"]) == 2
    assert "micro_batch_size" in err["hint"] and "gradient_checkpointing" in err["hint"] and "qlora" in err["hint"]
    assert evs[-1]["status"] == "failed"
    assert "Traceback" not in res.stderr and "hint:" in res.stderr


def test_nan_loss_warns_and_stops_with_the_last_good_checkpoint(tmp_path):
    cfg = write_config(small_demo_config(max_steps=20, save_every=3), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"FTWB_INJECT_FAULT": "nan@5+"})
    assert res.returncode == 1
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    skips = [e for e in evs if e["type"] == "warning" and e["kind"] == "nan" and e.get("skipped")]
    assert [(e["step"], e["what"]) for e in skips] == [(5, "loss"), (6, "loss"), (7, "loss")]
    warn = next(e for e in evs if e["type"] == "warning" and e["kind"] == "nan" and e["what"] == "run")
    assert "checkpoint-3" in warn["message"] and "3 times in a row" in warn["message"]
    assert evs[-1]["status"] == "failed" and evs[-1]["summary"]["last_good_checkpoint"].endswith("checkpoint-3")
    assert max(e["step"] for e in evs if e["type"] == "metric") == 4


def test_ctrl_c_in_ftwb_train_stops_with_a_checkpoint_and_exits_130(tmp_path):
    import subprocess

    cfg = write_config(small_demo_config(max_steps=400, save_every=0, eval_every=0), tmp_path / "run.yaml")
    cli, run = follow_in_background(cfg, tmp_path / "runs", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cli.send_signal(signal.SIGINT)  # what Ctrl+C in the terminal sends to the foreground CLI
    _, err = cli.communicate(timeout=120)
    assert cli.returncode == 130, err[-2000:]
    done = events_of(run)[-1]
    assert done["type"] == "done" and done["status"] == "stopped"
    assert rundir.checkpoints(run) and "Resume with: ftwb train --resume" in err
