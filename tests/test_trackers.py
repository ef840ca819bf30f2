"""Trackers mirror the engine's events: TensorBoard files a real run writes are read back
with TensorBoard's own reader; a tracker whose package is missing is refused up front."""
from __future__ import annotations

import importlib.util

import pytest

from engine import config as C
from engine_helpers import events_of, ftwb, only_run, small_demo_config, write_config


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_mirrors_metrics_val_and_eval_scores_of_a_real_run(tmp_path):
    cfg = small_demo_config(max_steps=6, eval_every=3, save_every=0)
    cfg.train.report_to = ["tensorboard"]
    cfg.eval.at_end, cfg.eval.max_samples, cfg.eval.max_new_tokens = True, 2, 8
    cfg.eval.sets = ["test", "regression"]
    res = ftwb("train", str(write_config(cfg, tmp_path / "c.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-2000:]
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    assert [e for e in evs if e["type"] == "done"][-1]["status"] == "completed"
    acc, scalars = _scalars(run / "tensorboard")
    metric_losses = [(e["step"], e["loss"]) for e in evs if e["type"] == "metric"]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in metric_losses]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in metric_losses], rel=1e-6)
    vals = [(e["step"], e["val_loss"]) for e in evs if e["type"] == "eval"]
    assert [(s, pytest.approx(v, rel=1e-6)) for s, v in scalars["val/loss"]] == vals
    result = [e for e in evs if e["type"] == "eval_result"][-1]
    for name in ("test", "regression"):
        for side in ("base", "tuned"):
            (step, value), = scalars[f"eval/{name}/loss/{side}"]
            assert step == 6 and value == pytest.approx(result["sets"][name][side]["loss"], rel=1e-6)
    assert "config" in " ".join(acc.Tags()["tensors"])  # the config as text


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_is_refused_before_the_run_starts(tmp_path, name):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    cfg = small_demo_config()
    cfg.train.report_to = [name]
    res = ftwb("train", str(write_config(cfg, tmp_path / "c.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert f"train.report_to: {name} is not installed" in res.stderr and f"ftwb[{name}]" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()


def test_report_to_names_are_validated_with_the_allowed_ones():
    with pytest.raises(C.ConfigError, match="report_to.*'tensorboard', 'wandb', 'mlflow'"):
        C.from_dict({"train": {"report_to": ["tensorbord"]}})
    with pytest.raises(C.ConfigError, match="twice"):
        C.from_dict({"train": {"report_to": ["tensorboard", "tensorboard"]}})
    assert C.from_dict({"train": {"report_to": "tensorboard"}}).train.report_to == "tensorboard"


def test_scalars_of_events():
    from engine.trackers import scalars

    assert scalars({"type": "metric", "step": 3, "loss": 1.5, "lr": 1e-3, "grad_norm": None})[1] == {
        "train/loss": 1.5, "train/lr": 1e-3}
    step, vals = scalars({"type": "eval_result", "sets": {"t": {"base": {"loss": 2.0, "tokens": 9},
                                                                "tuned": {"refusal_rate": 1.0}}},
                          "judge": {"win_rate": 0.75}})
    assert step is None and vals == {"eval/t/loss/base": 2.0, "eval/t/refusal_rate/tuned": 1.0,
                                     "eval/judge/win_rate": 0.75}
