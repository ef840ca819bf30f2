"""Config import from Axolotl and LLaMA-Factory: real configs, every mapping case, refusals,
the key-path report (a property test walks every source key path), clamping and the CLI."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import config as C
from engine.config_import import import_config
from engine.importers.mapper import flash_attn_installed, leaf_paths
from tui.main import main

from engine_helpers import SHARED

AXOLOTL = sorted((SHARED / "configs" / "axolotl").glob("*.yml"))
OLD_FIXTURES = Path(__file__).parent / "fixtures" / "llamafactory"
CONFIGS = Path(__file__).parent / "fixtures" / "configs"
DATA = CONFIGS / "data"
IMPORTABLE = sorted(p for p in CONFIGS.glob("*.y*ml") if not p.name.startswith(("lf_simpo", "lf_ppo", "lf_rm")))


def covers(result, source: dict) -> None:
    """Every leaf path of the source is in the mapped or the ignored list (itself or an ancestor);
    no path is in both lists; every ignored path has a reason."""
    listed = {k for k, *_ in result.mapped} | {k for k, _ in result.ignored}
    for leaf in leaf_paths(source):
        parts = leaf.split(".")
        ancestors = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        assert ancestors & listed, f"{leaf} is in neither list"
    assert not ({k for k, *_ in result.mapped} & {k for k, _ in result.ignored})
    assert all(reason for _, reason in result.ignored)


def _imp(name: str):
    path = CONFIGS / name
    r = import_config(path)
    covers(r, yaml.safe_load(path.read_text()))
    assert C.from_dict(r.config.to_dict()) == r.config  # the result is a valid ftwb config
    return r


def _by_source(r) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for k, v, t, nv in r.mapped:
        out.setdefault(k, []).append((t, nv))
    return out


# ---------------------------------------------------------------- the real Axolotl configs

@pytest.mark.skipif(not AXOLOTL, reason="shared Axolotl configs not present")
@pytest.mark.parametrize("path", AXOLOTL, ids=lambda p: p.name)
def test_every_real_axolotl_config_imports(path):
    r = import_config(path)
    assert r.source_kind == "axolotl"
    covers(r, yaml.safe_load(path.read_text()))
    assert C.from_dict(r.config.to_dict()) == r.config
    assert r.config.method in ("lora", "qlora")
    assert r.config.data.path and r.config.model.name_or_path
    # attn_implementation: flash_attention_2 only where flash-attn can be imported, else auto with a note
    impl = r.config.model.attn_implementation
    assert impl == ("flash_attention_2" if flash_attn_installed() else "auto")
    if impl == "auto":
        assert "flash-attn is not installed" in r.notes["attn_implementation"]
    # evals/saves per epoch are carried over, converted to steps once the dataset size is known
    assert (r.config.train.evals_per_epoch, r.config.train.saves_per_epoch) == (4, 1)


def test_axolotl_qlora_values():
    r = import_config((SHARED / "configs" / "axolotl" / "llama-3-qlora-1b.yml"))
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
    assert "special_tokens" in dict(r.ignored)


def test_axolotl_lora_on_8bit_base_with_named_template():
    r = import_config((SHARED / "configs" / "axolotl" / "llama-3-instruct-lora-8b.yml"))
    assert (r.config.method, r.config.quant.bits) == ("qlora", 8)
    assert "8-bit" in r.notes["adapter"]
    assert r.config.lora.target_modules == "all-linear"
    assert r.config.model.chat_template == "llama3"  # the name, resolved at pre-flight, never dropped
    assert r.config.data.format == "chat"


def test_axolotl_target_linear_wins_over_module_list():
    r = import_config((SHARED / "configs" / "axolotl" / "mistral-qlora.yml"))
    assert r.config.lora.target_modules == "all-linear"
    assert "lora_target_linear" in dict(r.ignored)["lora_target_modules"]


# ---------------------------------------------------------------- Axolotl mapping cases

def test_axolotl_chat_template_mappings_roles_split_and_two_datasets():
    r = _imp("axolotl_chat_template_mapped.yml")
    d = r.config.data
    assert isinstance(d.path, list) and len(d.path) == 2
    first, second = d.path
    assert first["path"] == str((DATA / "chats_from_value.jsonl").resolve()) and first["format"] == "chat"
    assert first["columns"] == {"messages": "conversations", "role": "from", "content": "value"}
    assert first["roles"] == {"system": "system", "human": "user", "user": "user", "gpt": "assistant"}
    assert first["split"] == "train[:80%]"
    assert second["format"] == "alpaca" and second["path"].endswith("alpaca_small.json")
    by = _by_source(r)
    assert by["datasets.0.field_messages"] == [("data.path.0.columns.messages", "conversations")]
    assert by["datasets.0.message_property_mappings.role"] == [("data.path.0.columns.role", "from")]
    assert by["datasets.0.split"] == [("data.path.0.split", "train[:80%]")]
    assert by["datasets.1.type"] == [("data.path.1.format", "alpaca")]
    assert "ds_type" in dict(r.ignored)["datasets.1.ds_type"] or dict(r.ignored)["datasets.1.ds_type"]
    assert r.config.model.chat_template == "llama3"
    assert (r.config.train.evals_per_epoch, r.config.train.saves_per_epoch) == (4, 1)
    if not flash_attn_installed():
        assert r.config.model.attn_implementation == "auto" and "flash-attn" in r.notes["flash_attention"]


def test_axolotl_single_dataset_keeps_plain_data_fields():
    r = _imp("axolotl_ipo.yml")
    d = r.config.data
    assert d.path == str((DATA / "sharegpt_pairs.json").resolve())
    assert (d.format, d.columns) == ("preference", {"messages": "conversations", "role": "from", "content": "value"})
    assert _by_source(r)["datasets.0.field_messages"] == [("data.columns.messages", "conversations")]


@pytest.mark.parametrize("name, objective, pref", [
    ("axolotl_dpo.yml", "dpo", {"beta": 0.2, "rpo_alpha": 0.5, "label_smoothing": 0.1, "loss": "sigmoid"}),
    ("axolotl_ipo.yml", "dpo", {"beta": 0.3, "loss": "ipo"}),
    ("axolotl_orpo.yml", "orpo", {"beta": 0.1}),
    ("axolotl_kto.yml", "kto", {"beta": 0.5, "desirable_weight": 0.8, "undesirable_weight": 1.2}),
    ("lf_dpo.yaml", "dpo", {"beta": 0.2, "rpo_alpha": 0.5, "label_smoothing": 0.05, "loss": "sigmoid"}),
    ("lf_orpo.yaml", "orpo", {"beta": 0.1}),
    ("lf_kto.yaml", "kto", {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.5}),
    ("lf_v1_dpo.yaml", "dpo", {}),
])
def test_preference_stages_map_to_the_objective(name, objective, pref):
    r = _imp(name)
    assert r.config.train.objective == objective
    for k, v in pref.items():
        assert getattr(r.config.preference, k) == pytest.approx(v) if isinstance(v, float) else \
            getattr(r.config.preference, k) == v, k
    fmt = r.config.data.format
    assert fmt == ("kto" if objective == "kto" else "preference")  # never imported as SFT data


def test_axolotl_strategy_columns_and_template():
    r = _imp("axolotl_dpo.yml")
    assert r.config.data.columns == {"prompt": "question"}  # chatml.intel rows: question/chosen/rejected
    assert r.config.model.chat_template == "chatml" and r.config.data.split == "train"


@pytest.mark.parametrize("name, msg", [
    ("axolotl_grpo.yml", "rl: grpo is GRPO"),
    ("axolotl_reward_model.yml", "reward_model: true is reward-model training"),
    ("lf_ppo.yaml", "stage: ppo is PPO"),
    ("lf_rm.yaml", "stage: rm is reward-model training"),
    ("lf_simpo.yaml", "pref_loss: simpo is not a preference loss ftwb trains"),
    ("lf_v1_rm.yaml", "model_class: cls trains a reward"),
    ("lf_multimodal.yaml", "a vision-language run (image_max_pixels, template: qwen2_vl)"),
    ("lf_media_dataset.yaml", "dataset 'pictures' carries images"),
    ("lf_inference.yaml", "not a training config: this is a LLaMA-Factory inference (chat) config"),
    ("lf_merge.yaml", "not a training config: this is a LLaMA-Factory merge config"),
    ("lf_export_gptq.yaml", "not a training config: this is a LLaMA-Factory quantised export config"),
    ("lf_eval.yaml", "not a training config: this is a LLaMA-Factory evaluation config"),
    ("lf_predict.yaml", "not a training config: this is a LLaMA-Factory prediction config"),
    ("accelerate_fsdp.yaml", "not a training config: this is an accelerate launcher config"),
    ("ds_z3_config.json", "not a training config: this is a DeepSpeed config (ZeRO stage 3)"),
])
def test_refused_files_and_methods(name, msg):
    with pytest.raises(C.ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        import_config(CONFIGS / name)


def test_pretraining_configs_map_text_to_completion():
    for name in ("axolotl_pretrain.yml", "lf_pretrain.yaml", "axolotl_completion.yml"):
        r = _imp(name)
        assert r.config.data.format == "completion", name
        assert r.config.data.path.endswith("c4_small.jsonl")
    assert _imp("lf_pretrain.yaml").config.data.train_on == "all"
    # an eval_steps fraction of the whole run cannot be converted before the run: listed, with the fix
    assert "evals_per_epoch" in dict(_imp("axolotl_completion.yml").ignored)["eval_steps"]


# ---------------------------------------------------------------- LLaMA-Factory mapping cases

def test_llamafactory_several_datasets_through_dataset_info():
    r = _imp("lf_sft_several.yaml")
    c = r.config
    alpaca, chat, tags = c.data.path
    assert (alpaca["format"], alpaca["weight"], alpaca["max_rows"]) == ("alpaca", 0.5, 10)
    assert chat["format"] == "sharegpt" and chat["columns"] == {"messages": "conversations", "role": "from",
                                                                "content": "value"}
    assert tags["columns"] == {"messages": "dialog", "role": "speaker", "content": "says"}
    assert tags["roles"] == {"Q": "user", "A": "assistant"}
    assert all(Path(s["path"]).is_file() for s in c.data.path)
    assert c.model.chat_template.startswith("qwen")  # qwen3_nothink: ftwb's qwen family, never dropped
    assert (c.train.evals_per_epoch, c.train.saves_per_epoch) == (1, 1)
    assert "interleave_probs" in _by_source(r)


def test_llamafactory_v1_layout_is_detected_and_mapped():
    r = _imp("lf_v1_sft.yaml")
    c = r.config
    assert r.source_kind == "llamafactory_v1"
    assert (c.model.name_or_path, c.method, c.lora.r, c.lora.alpha) == ("Qwen/Qwen3-4B", "lora", 16, 32.0)
    assert (c.train.grad_accum, c.train.max_steps, c.data.max_seq_len) == (4, 10, 2048)
    assert c.data.path[0]["path"].endswith("alpaca_small.json") and c.data.path[0]["max_rows"] == 8


def test_llamafactory_lora_fixture():
    r = import_config(OLD_FIXTURES / "llama3_lora_sft.yaml")
    c = r.config
    assert r.source_kind == "llamafactory"
    assert (c.method, c.lora.r, c.lora.alpha, c.lora.target_modules) == ("lora", 8, 16.0, "all-linear")
    assert (c.data.max_seq_len, c.train.micro_batch_size, c.train.grad_accum) == (2048, 1, 8)
    assert (c.train.learning_rate, c.train.epochs, c.model.dtype) == (1e-4, 3.0, "bfloat16")
    assert [s["path"] for s in c.data.path] == ["identity", "alpaca_en_demo"]  # both datasets, not one
    assert "dataset_info.json" in r.notes["dataset"]
    covers(r, yaml.safe_load((OLD_FIXTURES / "llama3_lora_sft.yaml").read_text()))


def test_llamafactory_qlora_fixture():
    r = import_config(OLD_FIXTURES / "llama3_qlora_sft.yaml")
    c = r.config
    assert (c.method, c.quant.bits, c.quant.double_quant) == ("qlora", 4, True)
    assert c.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert c.train.scheduler == "cosine" and "cosine_with_restarts" in r.notes["lr_scheduler_type"]
    assert (c.train.optimizer, c.data.val_split, c.data.packing) == ("adamw_8bit", 0.05, False)
    assert (c.train.warmup_steps, c.train.keep_checkpoints, c.train.eval_every) == (20, 3, 200)
    covers(r, yaml.safe_load((OLD_FIXTURES / "llama3_qlora_sft.yaml").read_text()))


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
    assert r.config.data.format == "chat" and r.config.data.columns == {}


# ---------------------------------------------------------------- every fixture, and any config at all

@pytest.mark.parametrize("path", IMPORTABLE + sorted(OLD_FIXTURES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_fixture_reports_every_key_path(path):
    try:
        r = import_config(path)
    except C.ConfigError as e:
        assert "not a training config" in str(e) or "nothing was imported" in str(e)
        return
    covers(r, yaml.safe_load(path.read_text()))


_KEYS = ["base_model", "adapter", "lora_r", "lora_alpha", "sequence_len", "datasets", "chat_template",
         "attn_implementation", "flash_attention", "rl", "dpo_beta", "evals_per_epoch", "special_tokens",
         "model_name_or_path", "stage", "finetuning_type", "dataset", "template", "pref_beta", "max_samples",
         "eval_strategy", "interleave_probs", "bf16", "fp16", "load_in_4bit", "gradient_checkpointing",
         "output_dir", "learning_rate", "wandb_project", "weird_key", "trl", "fsdp_config", "val_set_size"]
_DS_KEYS = ["path", "type", "field_messages", "message_property_mappings", "roles", "split", "name",
            "roles_to_train", "train_on_eos", "field_chosen", "chat_template", "unknown_option"]
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(-1, 10, allow_nan=False),
                    st.sampled_from(["lora", "qlora", "dpo", "ipo", "orpo", "kto", "sft", "pt", "chat_template",
                                     "alpaca", "llama3", "qwen3_nothink", "flash_attention_2", "epoch", "2e-4",
                                     "data/x.jsonl", "", "from", "value", "train[:20%]", "a,b"]))
_leafy = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(["role", "content", "user",
                                                                                       "assistant", "x"]), inner,
                                                                      max_size=3)), max_leaves=6)
_dataset = st.dictionaries(st.sampled_from(_DS_KEYS), _leafy, max_size=6)
_config = st.dictionaries(st.sampled_from(_KEYS), st.one_of(_leafy, st.lists(_dataset, max_size=3)), min_size=2,
                          max_size=14)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config)
def test_property_every_source_key_path_is_mapped_or_ignored(source):
    """Any config: refused with a ConfigError, or every leaf path is in one of the two lists."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "any.yml"
        path.write_text(yaml.safe_dump(source))
        try:
            r = import_config(path)
        except C.ConfigError:
            return
        covers(r, yaml.safe_load(path.read_text()))
        assert C.from_dict(r.config.to_dict()) == r.config


# ---------------------------------------------------------------- clamping, bad files, the CLI

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
    src = OLD_FIXTURES / "llama3_qlora_sft.yaml"
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
    assert main(["config", "import", str(OLD_FIXTURES / "llama3_lora_sft.yaml")]) == 0
    cap = capsys.readouterr()
    assert C.from_dict(yaml.safe_load(cap.out)).lora.r == 8
    assert "ignored" in cap.err


def test_cli_json_report_with_dotted_key_paths(capsys):
    assert main(["config", "import", str(CONFIGS / "axolotl_chat_template_mapped.yml"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kind"] == "axolotl"
    row = next(x for x in rep["mapped"] if x["source"] == "datasets.0.field_messages")
    assert row == {"source": "datasets.0.field_messages", "value": "conversations",
                   "field": "data.path.0.columns.messages", "ftwb_value": "conversations", "note": None}
    assert {"source": "datasets.1.ds_type", "reason": "ftwb recognises the file type from its name and content"} \
        in rep["ignored"]
    assert C.from_dict(rep["config"]).data.path[0]["split"] == "train[:80%]"


def test_cli_json_refusal_exit_2(capsys):
    assert main(["config", "import", str(CONFIGS / "lf_merge.yaml"), "--json"]) == 2
    cap = capsys.readouterr()
    assert "not a training config" in json.loads(cap.out)["error"] and "Traceback" not in cap.err


def test_cli_bad_file_exit_2(tmp_path, capsys):
    assert main(["config", "import", str(tmp_path / "nope.yml")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err


def test_named_template_ftwb_does_not_ship_is_listed_with_the_fix(tmp_path):
    src = tmp_path / "glm.yaml"
    src.write_text("model_name_or_path: THUDM/glm-4-9b-chat\nstage: sft\nfinetuning_type: lora\ntemplate: glm4\n")
    r = import_config(src)
    assert r.config.model.chat_template is None
    reason = dict(r.ignored)["template"]
    assert "ftwb ships no 'glm4' template" in reason and "llama3" in reason  # names what it does ship


@pytest.mark.slow
def test_imported_config_trains_its_rows_as_meant(tmp_path):
    """Axolotl chat_template rows (conversations, from/value, human/gpt) plus an alpaca file,
    imported and trained for 3 steps on the demo model: every row is used, none rejected."""
    from engine import rundir
    from engine_helpers import events_of, ftwb, only_run, write_config

    cfg = import_config(CONFIGS / "axolotl_chat_template_mapped.yml").config
    cfg.model.name_or_path, cfg.model.chat_template, cfg.method = "demo", None, "lora"
    cfg.train.max_steps, cfg.train.evals_per_epoch, cfg.train.saves_per_epoch = 3, 0, 0
    cfg.train.learning_rate, cfg.eval.at_end = 1e-3, False
    r = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(tmp_path / "runs"),
             timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path / "runs")
    (data,) = [e for e in events_of(run) if e["type"] == "data"]
    assert data["problems"] == 0 and data["usable"] == data["rows"] == 10 + 12  # train[:80%] of 12 (9.6, rounded), and 12
    info = json.loads((run / rundir.DATA).read_text())
    assert [s["format"] for s in info["sources"]] == ["chat", "alpaca"]


@pytest.mark.parametrize("text, msg", [
    ("base_model: LiquidAI/LFM2-VL-450M\nmodel_type: AutoModelForImageTextToText\nprocessor_type: AutoProcessor\n"
     "adapter: lora\ndatasets:\n  - path: HuggingFaceH4/llava-instruct-mix-vsft\n    type: chat_template\n",
     "is a vision-language model; ftwb trains text models"),
    ("base_model: Qwen/Qwen3-0.6B\nplugins:\n  - axolotl.integrations.gkd.GKDPlugin\ngkd_trainer: true\n"
     "gkd_teacher: Qwen/Qwen3-4B\ndatasets:\n  - path: mlabonne/FineTome-100k\n    type: chat_template\n",
     "on-policy distillation (GKD, from teacher Qwen/Qwen3-4B)"),
    ("base_model: google/gemma-2-2b\nmodel_type: AutoModelForSequenceClassification\nnum_labels: 1\n"
     "datasets:\n  - path: argilla/distilabel-intel-orca-dpo-pairs\n    type: bradley_terry.chat_template\n",
     "trains a classifier"),
])
def test_axolotl_models_ftwb_does_not_train_are_refused(tmp_path, text, msg):
    src = tmp_path / "x.yml"
    src.write_text(text)
    with pytest.raises(C.ConfigError, match=re.escape(msg)):
        import_config(src)


def test_regex_lora_targets_are_listed_not_turned_into_names(tmp_path):
    src = tmp_path / "x.yml"
    src.write_text("base_model: org/m\nadapter: lora\n"
                   "lora_target_modules: 'model.language_model.layers.[\\d]+.(mlp|self_attn).(up|q)_proj'\n")
    r = import_config(src)
    assert r.config.lora.target_modules == "all-linear"
    assert "regular expression" in dict(r.ignored)["lora_target_modules"]
