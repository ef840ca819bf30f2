"""Preference objectives on the demo pairs, trained by 2 CPU processes (gloo) through the
real torchrun from the real CLI, against one process with twice the accumulation: the same
global batch, so the same losses, rewards and validation figures. DPO with LoRA (DDP, the
adapter-off reference) and KTO with full fine-tuning (FSDP2, the cached reference, which a
resume reads back)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import rundir
from engine_helpers import events_of, ftwb, only_run, write_config

pytestmark = pytest.mark.slow

STEPS = 4
STEP_KEYS = ("loss", "reward_margin", "reward_accuracy", "rewards_chosen", "rewards_rejected", "logps_chosen")
EVAL_KEYS = ("val_loss", "reward_margin", "reward_accuracy", "rewards_chosen")


def _config(path: Path, objective: str, method: str, grad_accum: int) -> Path:
    from engine.demo import demo_config

    cfg = demo_config("dpo")
    cfg.method, cfg.train.objective = method, objective
    cfg.train.max_steps, cfg.train.eval_every, cfg.train.save_every = STEPS, 2, 2 if method == "full" else 0
    if method == "full":
        cfg.train.learning_rate = 1e-4
    cfg.train.grad_accum = grad_accum
    cfg.data.max_seq_len = 128  # micro-batches of 4 x 128 tokens: a few pairs each
    cfg.lora.dropout = 0.0  # the 1- and 2-process runs then differ only in summation order
    cfg.eval.at_end = False
    cfg.eval.sample_prompts = 0
    return write_config(cfg, path)


@pytest.fixture(scope="module", params=[("dpo", "lora"), ("kto", "full")], ids=["dpo-lora", "kto-full"])
def runs(request, tmp_path_factory):
    """(objective, method, 2-process run directory, its events, the 1-process run's events)."""
    objective, method = request.param
    tmp = tmp_path_factory.mktemp(objective)
    two = ftwb("train", str(_config(tmp / "two.yaml", objective, method, 1)), "--devices", "2",
               "--runs-dir", str(tmp / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = ftwb("train", str(_config(tmp / "one.yaml", objective, method, 2)), "--runs-dir", str(tmp / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    run = only_run(tmp / "two")
    return objective, method, run, events_of(run), events_of(only_run(tmp / "one"))


def _by_step(evs: list[dict], type_: str) -> dict[int, dict]:
    return {e["step"]: e for e in evs if e["type"] == type_}


def test_two_processes_match_one_process_with_twice_the_accumulation(runs):
    objective, method, _, two, one = runs
    hello = next(e for e in two if e["type"] == "hello")
    assert hello["world_size"] == 2 and hello["strategy"] == ("fsdp2" if method == "full" else "ddp")
    a, b = _by_step(two, "metric"), _by_step(one, "metric")
    assert sorted(a) == list(range(1, STEPS + 1)) == sorted(b)
    assert all(len(m["ranks_tokens_per_s"]) == 2 for m in a.values())
    for step in a:
        for k in STEP_KEYS:
            assert a[step][k] == pytest.approx(b[step][k], rel=1e-3, abs=1e-5), (objective, step, k)
    # the figures compared move: a rank's own share alone, or its own counts, would differ
    assert any(abs(m["reward_margin"]) > 0.05 for m in a.values())
    assert len({round(m["loss"], 4) for m in a.values()}) == STEPS
    ea, eb = _by_step(two, "eval"), _by_step(one, "eval")
    assert sorted(ea) == [2, 4] == sorted(eb)
    for step in ea:  # validation split over the ranks, the sums reduced
        for k in EVAL_KEYS:
            assert ea[step][k] == pytest.approx(eb[step][k], rel=1e-3, abs=1e-5), (objective, step, k)
    if objective == "kto":
        assert all("kl" in m for m in a.values())
    tokens = [e["tokens_seen"] for e in two if e["type"] == "progress"][-1]
    assert tokens == [e["tokens_seen"] for e in one if e["type"] == "progress"][-1]  # the same pairs
    assert two[-1]["type"] == "done" and two[-1]["status"] == "completed"


def test_a_full_fine_tune_resumed_on_two_processes_reads_its_cached_reference_and_repeats_the_losses(runs):
    objective, method, run, two, _ = runs
    if method != "full":
        pytest.skip("the cached reference is full fine-tuning's")
    assert (run / "reference_logps.json").exists()
    assert [p.name for p in rundir.checkpoints(run)] == ["checkpoint-2"]
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)
    hello = [e for e in evs if e["type"] == "hello"][1]
    assert hello["world_size"] == 2 and hello["resumed_from_step"] == 2
    after = evs[evs.index(hello):]
    assert not any("computing reference" in e.get("message", "") for e in after if e["type"] == "log")
    again, before = _by_step(after, "metric"), _by_step(two, "metric")
    assert sorted(again) == [3, 4]
    for step in again:
        for k in STEP_KEYS:
            assert again[step][k] == pytest.approx(before[step][k], rel=1e-4, abs=1e-5), (step, k)
