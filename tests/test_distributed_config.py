"""train.devices and --devices: validation, the processes they mean, and the torchrun command."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import config as C
from engine import launch
from engine_helpers import ftwb, small_demo_config, write_config


@pytest.mark.parametrize("value", [1, 2, "all", [0, 2]])
def test_devices_accepts_a_count_all_or_gpu_indices(value):
    assert C.from_dict({"train": {"devices": value}}).train.devices == value


@pytest.mark.parametrize("value, words", [
    (0, "at least 1"), ([0, 0], "distinct"), ([-1], "distinct"), ("some", "expected an integer"),
])
def test_devices_refuses_bad_values_naming_the_field(value, words):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"train": {"devices": value}})
    assert str(e.value).startswith("train.devices:") and words in str(e.value)


@pytest.mark.parametrize("objective", ["dpo", "orpo", "kto"])
def test_preference_objectives_train_on_several_devices(objective):
    for method in ("lora", "qlora", "full"):
        cfg = C.from_dict({"method": method, "train": {"devices": 2, "objective": objective}})
        assert cfg.train.devices == 2
    C.from_dict({"method": "full", "train": {"devices": 2, "objective": objective, "strategy": "fsdp2"}})


def test_preference_objectives_with_an_adapter_refuse_fsdp2_on_several_devices_naming_the_fix():
    data = {"method": "lora", "train": {"devices": [0, 1], "objective": "kto", "strategy": "fsdp2"}}
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(data)
    assert str(e.value).startswith("train.objective: kto with method: lora and train.strategy: fsdp2")
    assert "train.strategy: ddp" in str(e.value) and "train.devices: 1" in str(e.value)
    data["train"]["devices"] = 1  # one device: fine
    C.from_dict(data)


def test_devices_may_change_on_resume():
    old, new = C.RunConfig(), C.RunConfig()
    new.train.devices = 2
    allowed, refused = C.resume_changes(old, new)
    assert [k for k, _, _ in allowed] == ["train.devices"] and not refused


def test_processes_without_gpus_are_cpu_processes_and_indices_need_gpus():
    assert launch.plan_processes(3, gpus=0) == (3, None)
    assert launch.plan_processes("all", gpus=0) == (1, None)
    assert launch.plan_processes("all", gpus=4) == (4, None)
    with pytest.raises(C.ConfigError, match="has none"):
        launch.plan_processes([0, 1], gpus=0)
    with pytest.raises(C.ConfigError, match="more than the 2 GPU"):
        launch.plan_processes(3, gpus=2)


def test_gpu_indices_become_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch.plan_processes([1, 3], gpus=4) == (2, "1,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # indices count within what is visible
    assert launch.plan_processes([0, 2], gpus=4) == (2, "4,6")
    with pytest.raises(C.ConfigError, match="GPU 4 does not exist"):
        launch.plan_processes([4], gpus=4)


def test_parse_devices():
    assert launch.parse_devices("2") == 2 and launch.parse_devices("all") == "all"
    assert launch.parse_devices("0,2") == [0, 2]
    with pytest.raises(C.ConfigError, match="--devices"):
        launch.parse_devices("two")


def test_torchrun_command_one_machine_and_several(tmp_path):
    argv = launch.torchrun_argv(tmp_path, 2, launch.DistOptions(master_port=29555))
    assert argv[1:3] == ["-m", "engine.distributed"]
    assert argv[argv.index("--nproc-per-node") + 1] == "2" and argv[argv.index("--master-port") + 1] == "29555"
    assert argv[argv.index("--log-dir") + 1] == str(tmp_path / "ranks")
    assert argv[-4:] == ["-m", "engine", "run", str(tmp_path)]
    multi = launch.torchrun_argv(tmp_path, 8, launch.DistOptions(nnodes=2, node_rank=1, rdzv_endpoint="n0:29400",
                                                                  rdzv_id="job7"))
    for flag, value in (("--nnodes", "2"), ("--rdzv-endpoint", "n0:29400"), ("--rdzv-id", "job7"),
                        ("--rdzv-backend", "c10d"), ("--node-rank", "1")):
        assert multi[multi.index(flag) + 1] == value
    assert "--master-port" not in multi
    with pytest.raises(C.ConfigError, match="--rdzv-endpoint"):
        launch.torchrun_argv(tmp_path, 8, launch.DistOptions(nnodes=2))


def test_cli_refuses_dpo_with_a_sharded_adapter_on_two_devices_before_creating_a_run(tmp_path):
    from engine.demo import demo_config

    cfg = demo_config("dpo")
    cfg.train.strategy = "fsdp2"
    res = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--devices", "2",
               "--runs-dir", str(tmp_path / "runs"), timeout=120)
    assert res.returncode == 2, res.stderr
    assert "train.strategy: fsdp2" in res.stderr and "train.strategy: ddp" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_refuses_bad_devices_with_one_line(tmp_path):
    cfg = write_config(small_demo_config(), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--devices", "0,x", "--runs-dir", str(tmp_path / "runs"), timeout=120)
    assert res.returncode == 2 and "--devices" in res.stderr and "Traceback" not in res.stderr
