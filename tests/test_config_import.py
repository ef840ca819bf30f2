"""Config import from Axolotl and LLaMA-Factory: real configs, the report, clamping, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine import config as C
from engine.config_import import import_config
from tui.main import main

AXOLOTL = sorted(Path("/work/shared/configs/axolotl").glob("*.yml"))
FIXTURES = Path(__file__).parent / "fixtures" / "llamafactory"
LLAMAFACTORY = sorted(FIXTURES.glob("*.yaml"))


def _report_covers_every_key(result, path):
    source = yaml.safe_load(Path(path).read_text())
    mapped = {k for k, *_ in result.mapped}
    ignored = {k for k, _ in result.ignored}
    assert set(source) <= mapped | ignored, set(source) - mapped - ignored
    assert not ({k for k in source} & mapped & ignored)  # each key lands in one list
    assert all(reason for _, reason in result.ignored)


@pytest.mark.skipif(not AXOLOTL, reason="shared Axolotl configs not present")
@pytest.mark.parametrize("path", AXOLOTL, ids=lambda p: p.name)
def test_every_real_axolotl_config_imports(path):
    r = import_config(path)
    assert r.source_kind == "axolotl"
    _report_covers_every_key(r, path)
    again = C.from_dict(r.config.to_dict())  # the result is a valid ftwb config
    assert again == r.config
    assert r.config.method in ("lora", "qlora")
    assert r.config.data.path and r.config.model.name_or_path


def _by_key(r):
    return {k: (v, t, nv) for k, v, t, nv in r.mapped}


def test_axolotl_qlora_values():
    r = import_config(Path("/work/shared/configs/axolotl/llama-3-qlora-1b.yml"))
    c = r.config
    assert (c.model.name_or_path, c.method, c.quant.bits) == ("NousResearch/Llama-3.2-1B", "qlora", 4)
    assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (32, 16.0, 0.05)
    assert c.lora.target_modules == ["gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"]
    assert (c.data.max_seq_len, c.data.packing, c.data.val_split, c.data.format) == (2048, True, 0.1, "alpaca")
    assert (c.train.micro_batch_size, c.train.grad_accum, c.train.epochs) == (2, 4, 1.0)
    assert (c.train.optimizer, c.train.scheduler, c.train.warmup_ratio) == ("adamw_8bit", "cosine", 0.1)
    assert c.model.dtype == "auto" and "bf16" in r.notes
    assert dict(r.ignored)["wandb_project"] == "empty"
    assert "NaN" in dict(r.ignored)["loss_watchdog_threshold"]


def test_axolotl_lora_on_8bit_base_becomes_qlora_8bit_with_note():
    r = import_config(Path("/work/shared/configs/axolotl/llama-3-instruct-lora-8b.yml"))
    assert (r.config.method, r.config.quant.bits) == ("qlora", 8)
    assert "8-bit" in r.notes["adapter"]
    assert r.config.lora.target_modules == "all-linear"
    assert r.config.model.chat_template is None and "llama3" in r.notes["chat_template"]
    assert r.config.data.format == "chat"


def test_axolotl_target_linear_wins_over_module_list():
    r = import_config(Path("/work/shared/configs/axolotl/mistral-qlora.yml"))
    assert r.config.lora.target_modules == "all-linear"
    assert "lora_target_linear" in dict(r.ignored)["lora_target_modules"]


def test_llamafactory_lora_fixture():
    r = import_config(FIXTURES / "llama3_lora_sft.yaml")
    c = r.config
    assert r.source_kind == "llamafactory"
    assert (c.method, c.lora.r, c.lora.alpha, c.lora.target_modules) == ("lora", 8, 16.0, "all-linear")
    assert (c.data.max_seq_len, c.train.micro_batch_size, c.train.grad_accum) == (2048, 1, 8)
    assert (c.train.learning_rate, c.train.epochs, c.model.dtype) == (1e-4, 3.0, "bfloat16")
    assert c.data.path == "identity" and "1 more dataset" in r.notes["dataset"]
    _report_covers_every_key(r, FIXTURES / "llama3_lora_sft.yaml")


def test_llamafactory_qlora_fixture():
    r = import_config(FIXTURES / "llama3_qlora_sft.yaml")
    c = r.config
    assert (c.method, c.quant.bits, c.quant.double_quant) == ("qlora", 4, True)
    assert c.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert c.train.scheduler == "cosine" and "cosine_with_restarts" in r.notes["lr_scheduler_type"]
    assert (c.train.optimizer, c.data.val_split, c.data.packing) == ("adamw_8bit", 0.05, False)
    assert (c.train.warmup_steps, c.train.keep_checkpoints, c.train.eval_every) == (20, 3, 200)
    _report_covers_every_key(r, FIXTURES / "llama3_qlora_sft.yaml")


def test_out_of_range_values_are_clamped_with_notes(tmp_path):
    src = tmp_path / "wild.yml"
    src.write_text(yaml.safe_dump({
        "base_model": "org/model", "adapter": "lora", "lora_r": 4096, "lora_dropout": 0.95,
        "warmup_ratio": 0.9, "learning_rate": "2e-4", "lr_scheduler": "cosine_with_min_lr",
        "val_set_size": 200, "sequence_len": 8, "micro_batch_size": "lots", "optimizer": "lion_8bit",
        "gradient_checkpointing": "unsloth", "bf16": False, "fp16": True,
    }))
    r = import_config(src)
    c = r.config
    assert (c.lora.r, c.lora.dropout, c.train.warmup_ratio) == (1024, 0.9, 0.5)
    assert c.train.learning_rate == 2e-4 and c.data.max_seq_len == 16
    assert c.train.scheduler == "cosine" and "cosine_with_min_lr" in r.notes["lr_scheduler"]
    assert "clamped" in r.notes["lora_r"] and "clamped" in r.notes["sequence_len"]
    ignored = dict(r.ignored)
    assert "row count" in ignored["val_set_size"] and "not a number" in ignored["micro_batch_size"]
    assert c.train.optimizer == "adamw" and "lion_8bit" in r.notes["optimizer"]
    assert c.train.gradient_checkpointing is True and c.model.dtype == "float16"


def test_no_adapter_means_full_finetuning(tmp_path):
    src = tmp_path / "full.yml"
    src.write_text("base_model: org/model\nsequence_len: 1024\nmicro_batch_size: 1\nnum_epochs: 2\n")
    r = import_config(src)
    assert r.config.method == "full" and "full fine-tuning" in r.notes["adapter"]


def test_llamafactory_dataset_resolved_through_dataset_info(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "my_chats.json").write_text("[]")
    (data / "dataset_info.json").write_text(json.dumps({"my_chats": {
        "file_name": "my_chats.json", "formatting": "sharegpt",
        "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content"}}}))
    src = tmp_path / "train.yaml"
    src.write_text("model_name_or_path: org/model\nstage: sft\nfinetuning_type: lora\n"
                   "dataset: my_chats\ndataset_dir: data\ncutoff_len: 1024\n")
    r = import_config(src)
    assert r.config.data.path == str((data / "my_chats.json").resolve())
    assert r.config.data.format == "chat"
    assert "dataset" not in r.notes


@pytest.mark.parametrize("text, msg", [
    ("model:\n  name_or_path: demo\n", "already an ftwb config"),
    ("foo: 1\nbar: 2\n", "neither an Axolotl config"),
    ("base_model: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "expected a YAML mapping"),
])
def test_bad_inputs_get_one_clear_message(tmp_path, text, msg):
    src = tmp_path / "x.yml"
    src.write_text(text)
    with pytest.raises(C.ConfigError, match=msg):
        import_config(src)
    with pytest.raises(C.ConfigError, match="file not found"):
        import_config(tmp_path / "missing.yml")


def test_cli_writes_atomically_refuses_overwrite_and_keeps_original(tmp_path, capsys):
    src = FIXTURES / "llama3_qlora_sft.yaml"
    before = src.read_bytes()
    out = tmp_path / "run.yaml"
    assert main(["config", "import", str(src), "-o", str(out)]) == 0
    report = capsys.readouterr().out
    assert "mapped" in report and "ignored" in report and "quantization_bit" in report
    assert C.load(out).method == "qlora"
    out.write_text("mine\n")
    assert main(["config", "import", str(src), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "mine\n"
    assert main(["config", "import", str(src), "-o", str(out), "--force"]) == 0
    assert C.load(out).quant.bits == 4
    assert src.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.yaml"]  # no temp files left


def test_cli_without_output_prints_yaml_on_stdout_report_on_stderr(capsys):
    assert main(["config", "import", str(FIXTURES / "llama3_lora_sft.yaml")]) == 0
    cap = capsys.readouterr()
    assert C.from_dict(yaml.safe_load(cap.out)).lora.r == 8
    assert "ignored" in cap.err


def test_cli_bad_file_exit_2(tmp_path, capsys):
    assert main(["config", "import", str(tmp_path / "nope.yml")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err
