"""Bad input to `ftwb train`: one clear message each, a non-zero exit, no traceback."""
from __future__ import annotations

import pytest

from engine import rundir
from engine_helpers import ftwb, small_demo_config, write_config


def test_typo_in_a_config_key(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  learnin_rate: 1e-4\n")
    res = ftwb("train", str(p), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "train.learnin_rate: unknown key (did you mean 'learning_rate'?)" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()


def test_missing_model_path(tmp_path):
    cfg = small_demo_config()
    cfg.model.name_or_path = str(tmp_path / "no-such-model")
    res = ftwb("train", str(write_config(cfg, tmp_path / "r.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "model.name_or_path" in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_dataset_path(tmp_path):
    cfg = small_demo_config()
    cfg.data.path = str(tmp_path / "nope.jsonl")
    res = ftwb("train", str(write_config(cfg, tmp_path / "r.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and "data.path" in res.stderr and "nope.jsonl: file not found" in res.stderr
    assert not (tmp_path / "runs").exists()  # refused by pre-flight, before any run directory


def test_runs_dir_not_writable(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    res = ftwb("train", "--demo", "--runs-dir", str(blocker / "runs"))
    assert res.returncode == 2 and "runs directory" in res.stderr and "--runs-dir" in res.stderr


def test_config_and_demo_are_exclusive(tmp_path):
    res = ftwb("train")
    assert res.returncode == 2 and "pass a config file or --demo" in res.stderr


def test_dataset_with_no_usable_rows(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": []}\nnot json\n')
    cfg = small_demo_config()
    cfg.data.path = str(data)
    res = ftwb("train", str(write_config(cfg, tmp_path / "r.yaml")), "--runs-dir", str(tmp_path / "runs"))
    # refused by pre-flight: before any model loads, and no failed run directory left behind
    assert res.returncode == 2 and not (tmp_path / "runs").exists()
    assert "bad.jsonl" in res.stderr and "line" in res.stderr and "Traceback" not in res.stderr


def test_unrecognised_format(tmp_path):
    data = tmp_path / "odd.jsonl"
    data.write_text("".join('{"question": "q%d", "answer": "a"}\n' % i for i in range(20)))
    cfg = small_demo_config()
    cfg.data.path = str(data)
    res = ftwb("train", str(write_config(cfg, tmp_path / "r.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and not (tmp_path / "runs").exists()
    assert "odd.jsonl" in res.stderr and "format" in res.stderr


def test_second_run_never_reuses_a_directory(tmp_path):
    from engine import config as C
    from engine import launch

    cfg = C.RunConfig()
    a = launch.prepare_run(cfg, runs_dir=str(tmp_path), name="same")
    b = launch.prepare_run(cfg, runs_dir=str(tmp_path), name="same")
    assert a != b and (a / rundir.CONFIG).exists() and (b / rundir.CONFIG).exists()
