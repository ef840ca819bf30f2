"""QLoRA DPO on CUDA: the reference is the 4-bit base with the adapter off, the margin
rises, and memory and tokens/s are reported. Skipped without a GPU."""
from __future__ import annotations

import json

import pytest
from engine_helpers import events_of, ftwb, only_run, write_config

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_qlora_dpo_demo_on_gpu(tmp_path):
    from engine.demo import demo_config

    cfg = demo_config("dpo")
    cfg.method = "qlora"
    cfg.train.max_steps = 40
    cfg.train.eval_every = 20
    cfg.eval.at_end = False
    res = ftwb("train", str(write_config(cfg, tmp_path / "q.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(only_run(tmp_path / "runs"))
    metrics = [e for e in evs if e["type"] == "metric"]
    assert len(metrics) == 40 and metrics[0]["reward_margin"] == pytest.approx(0.0, abs=1e-3)
    first = sum(e["reward_margin"] for e in metrics[:10]) / 10
    last = sum(e["reward_margin"] for e in metrics[-10:]) / 10
    assert last > first
    mem = [e for e in evs if e["type"] == "memory"]
    assert mem and mem[-1]["devices"][0]["peak"] > 0
    print(json.dumps({"peak_gib": mem[-1]["devices"][0]["peak"] / 2**30,
                      "tokens_per_s": metrics[-1]["tokens_per_s"], "margin": [first, last]}))
