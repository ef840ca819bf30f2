"""Preference objectives (DPO, KTO) on the demo pairs, trained by 2 CPU processes (gloo)
through the real torchrun from the real CLI, against one process with twice the
accumulation: the same global batch, so the same losses, rewards and validation figures."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine_helpers import events_of, ftwb, only_run, write_config

pytestmark = pytest.mark.slow

STEPS = 4
STEP_KEYS = ("loss", "reward_margin", "reward_accuracy", "rewards_chosen", "rewards_rejected", "logps_chosen")
EVAL_KEYS = ("val_loss", "reward_margin", "reward_accuracy", "rewards_chosen")


def _config(path: Path, objective: str, grad_accum: int) -> Path:
    from engine.demo import demo_config

    cfg = demo_config("dpo")
    cfg.train.objective = objective
    cfg.train.max_steps, cfg.train.eval_every, cfg.train.save_every = STEPS, 2, 0
    cfg.train.grad_accum = grad_accum
    cfg.data.max_seq_len = 128  # micro-batches of 4 x 128 tokens: a few pairs each
    cfg.lora.dropout = 0.0  # the 1- and 2-process runs then differ only in summation order
    cfg.eval.at_end = False
    cfg.eval.sample_prompts = 0
    return write_config(cfg, path)


@pytest.fixture(scope="module", params=["dpo", "kto"])
def runs(request, tmp_path_factory):
    """(objective, 2-process run, 1-process run with twice the accumulation)."""
    objective = request.param
    tmp = tmp_path_factory.mktemp(objective)
    two = ftwb("train", str(_config(tmp / "two.yaml", objective, 1)), "--devices", "2",
               "--runs-dir", str(tmp / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = ftwb("train", str(_config(tmp / "one.yaml", objective, 2)), "--runs-dir", str(tmp / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    return objective, events_of(only_run(tmp / "two")), events_of(only_run(tmp / "one"))


def _by_step(evs: list[dict], type_: str) -> dict[int, dict]:
    return {e["step"]: e for e in evs if e["type"] == type_}


def test_two_processes_match_one_process_with_twice_the_accumulation(runs):
    objective, two, one = runs
    hello = next(e for e in two if e["type"] == "hello")
    assert hello["world_size"] == 2 and hello["strategy"] == "ddp"
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
