"""The real CUDA paths: 4-bit QLoRA training and memory events. Skipped without a GPU."""
from __future__ import annotations

import json

import pytest
from engine_helpers import events_of, ftwb, only_run, small_demo_config, write_config

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_qlora_demo_run_on_gpu_reports_memory_and_keeps_fp32_adapters(tmp_path):
    cfg = small_demo_config(max_steps=30)
    cfg.method = "qlora"
    res = ftwb("train", str(write_config(cfg, tmp_path / "q.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    hello = next(e for e in evs if e["type"] == "hello")
    assert hello["devices"][0]["type"] == "cuda"
    mem = [e for e in evs if e["type"] == "memory"]
    assert mem and mem[-1]["devices"][0]["peak"] > 0 and mem[-1]["devices"][0]["reserved"] >= mem[-1]["devices"][0]["allocated"]
    losses = [e["loss"] for e in evs if e["type"] == "metric"]
    assert losses[-1] < losses[0]
    from safetensors import safe_open

    with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float32}  # master weights: bf16 ones lose small updates
    att = next(e for e in evs if e["type"] == "attention")
    assert att["route"] in ("ftwb_varlen", "flash_attention_2", "sdpa") and att["probe_error"] <= att["tolerance"]
    fit = next(e for e in evs if e["type"] == "auto_fit")
    assert fit["status"] == "chosen" and fit["tokens_per_step"] <= fit["requested_tokens_per_step"]
    assert fit["peak_allocated"] <= fit["limit"] and fit["measured"]
    print(json.dumps({"peak_gib": mem[-1]["devices"][0]["peak"] / 2**30,
                      "tokens_per_s": [e["tokens_per_s"] for e in evs if e["type"] == "metric"][-1]}))


def test_lora_bf16_on_gpu_emits_memory_every_logged_step(tmp_path):
    cfg = small_demo_config(max_steps=10)
    res = ftwb("train", str(write_config(cfg, tmp_path / "l.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(only_run(tmp_path / "runs"))
    assert sum(e["type"] == "memory" for e in evs) == sum(e["type"] == "metric" for e in evs)
