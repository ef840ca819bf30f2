"""The run config: defaults, round trip, and one clear message per mistake."""
import pytest

from engine import config as C


def test_defaults_follow_common_lora_practice():
    cfg = C.RunConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.train.learning_rate, cfg.train.scheduler) == (16, 32, 2e-4, "cosine")
    assert cfg.lora.target_modules == "all-linear" and cfg.model.trust_remote_code is False


def test_yaml_round_trip(tmp_path):
    cfg = C.RunConfig()
    cfg.lora.target_modules = ["q_proj", "v_proj"]
    cfg.train.learning_rate = 1e-4
    C.save(cfg, tmp_path / "c.yaml")
    back = C.load(tmp_path / "c.yaml")
    assert back == cfg and back.hash() == cfg.hash()


@pytest.mark.parametrize("data, needle", [
    ({"train": {"learnin_rate": 1e-4}}, "train.learnin_rate: unknown key (did you mean 'learning_rate'?)"),
    ({"lora": {"r": "sixteen"}}, "lora.r: 'sixteen' is not allowed; expected an integer"),
    ({"lora": {"r": 0}}, "lora.r: 0 is out of range; it must be between 1 and 1024"),
    ({"method": "qlorra"}, "method: 'qlorra' is not allowed; expected one of 'lora', 'qlora', 'full'"),
    ({"train": {"learning_rate": -1}}, "train.learning_rate: -1.0 is out of range; it must be greater than 0"),
    ({"data": {"packing": "yes"}}, "data.packing: 'yes' is not allowed; expected true or false"),
    ({"modle": {}}, "modle: unknown key (did you mean 'model'?)"),
    ({"lora": {"target_modules": "q_proj"}}, "lora.target_modules: 'q_proj' is not allowed"),
    ({"data": {"val_split": 0.5, "test_split": 0.45}}, "leaves almost nothing to train on"),
    # optional fields (`str | None`) are checked too, not taken as given
    ({"model": {"chat_template": True}}, "model.chat_template: True is not allowed; expected a string"),
    ({"data": {"split": 3}}, "data.split: 3 is not allowed; expected a string"),
    ({"output": {"name": ["a"]}}, "output.name: ['a'] is not allowed; expected a string"),
])
def test_bad_values_name_field_value_and_allowed(data, needle):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(data)
    assert needle in str(e.value)


def test_yaml_string_numbers_are_read_as_floats():
    # YAML 1.1 reads 2e-4 (no dot) as a string; users write it that way all the time.
    assert C.from_dict({"train": {"learning_rate": "2e-4"}}).train.learning_rate == 2e-4


def test_load_reports_file_and_yaml_position(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: [1\n")
    with pytest.raises(C.ConfigError, match=r"bad.yaml: not valid YAML at line"):
        C.load(p)
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load(tmp_path / "missing.yaml")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    C.save(C.RunConfig(), tmp_path / "a.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]


def test_diff_lists_changed_fields():
    a, b = C.RunConfig(), C.RunConfig()
    b.lora.r = 32
    b.train.epochs = 3
    assert C.diff(a, b) == [("lora.r", 16, 32), ("train.epochs", 1.0, 3.0)]


def test_field_help_covers_every_field():
    helps = C.field_help()
    assert "train.learning_rate" in helps and "1e-4" in helps["train.learning_rate"]["help"]
    assert all(h.get("help") for h in helps.values())
