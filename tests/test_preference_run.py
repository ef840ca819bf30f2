"""The real engine through the real CLI on the preference demo (DPO, LoRA, CPU): margin and
accuracy rise, every event parses and carries the reward keys, and a run killed with
SIGKILL resumes to the same losses as an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import statistics

import pytest

from engine import rundir
from engine_helpers import events_of, ftwb, last_metric_step, only_run, wait_dead, wait_for, write_config

pytestmark = pytest.mark.slow

REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy")


def small_dpo_config(**train):
    from engine.demo import demo_config

    cfg = demo_config("dpo")
    cfg.train.max_steps = 24
    cfg.train.eval_every = 8
    cfg.train.save_every = 8
    cfg.eval.at_end = False
    cfg.eval.sample_prompts = 0
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    cfg = write_config(small_dpo_config(), tmp / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp / "runs"), "--name", "dpo")
    return res, only_run(tmp / "runs")


def test_dpo_run_completes_with_rising_margin_and_reward_keys_in_every_metric(dpo_run):
    res, run = dpo_run
    assert res.returncode == 0, res.stderr[-3000:]
    evs = [json.loads(line) for line in (run / rundir.EVENTS).read_text().splitlines()]  # every line parses
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    metrics = [e for e in evs if e["type"] == "metric"]
    assert len(metrics) == 24
    for m in metrics:
        assert all(isinstance(m[k], float) for k in REWARD_KEYS), m
        assert 0.0 <= m["reward_accuracy"] <= 1.0
        assert m["reward_margin"] == pytest.approx(m["rewards_chosen"] - m["rewards_rejected"], abs=1e-5)
    margins = [m["reward_margin"] for m in metrics]
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
    # Steps of 4 pairs are noisy (a prose pair alone moves the mean); the validation pairs are not.
    assert statistics.mean(margins[-12:]) > 0.2
    evals = [e for e in evs if e["type"] == "eval"]
    assert len(evals) >= 3 and all(all(k in e for k in REWARD_KEYS) for e in evals)
    assert evals[0]["reward_margin"] > 0
    assert evals[-1]["reward_margin"] > evals[0]["reward_margin"] + 0.1
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert all(0.5 < e["reward_accuracy"] <= 1.0 for e in evals)
    data = json.loads((run / rundir.DATA).read_text())
    assert data["format"] == "preference"


def test_resume_after_sigkill_mid_dpo_repeats_the_uninterrupted_losses(dpo_run, tmp_path):
    _, ref = dpo_run
    cfg = write_config(small_dpo_config(), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--detach")
    assert res.returncode == 0, res.stderr
    run = only_run(tmp_path / "runs")
    wait_for(lambda: any(p.name == "checkpoint-8" for p in rundir.checkpoints(run)))
    pid = rundir.read_pid(run)
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    wait_for(lambda: not rundir.is_alive(run), 30)
    assert last_metric_step(run) >= 8
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    hello = [e for e in evs if e["type"] == "hello"][-1]
    start = hello["resumed_from_step"]
    assert start >= 8
    resumed = {e["step"]: e for e in evs[evs.index(hello):] if e["type"] == "metric"}
    reference = {e["step"]: e for e in events_of(ref) if e["type"] == "metric"}
    assert sorted(resumed) == list(range(start + 1, 25))
    for step, e in resumed.items():
        for k in ("loss", "reward_margin", "reward_accuracy"):
            assert e[k] == pytest.approx(reference[step][k], rel=1e-4, abs=1e-5), (step, k)


def test_sft_on_a_preference_dataset_is_refused_before_the_engine_starts(tmp_path):
    cfg = small_dpo_config()
    cfg.train.objective = "sft"
    res = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "preference pairs" in res.stderr and "data.sft_on_chosen: true" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_dpo_on_chat_data_is_refused_before_the_engine_starts(tmp_path):
    from engine.demo import demo_config

    cfg = demo_config()
    cfg.train.objective = "dpo"
    res = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "chat data" in res.stderr and "needs preference pairs" in res.stderr
    assert "Traceback" not in res.stderr
