"""Config holes: every value finite and in range, empty files and duplicate keys refused,
no silent substitutions, memory and template failures named as such. Plus a fuzz test over
the config schema: whatever comes in, one ConfigError message or a valid config."""
from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import config as C
from engine_helpers import events_of, ftwb, only_run, small_demo_config, write_config


@pytest.mark.parametrize("data, needle", [
    ({"train": {"warmup_ratio": float("nan")}}, "train.warmup_ratio: nan is not allowed; expected a finite number"),
    ({"lora": {"alpha": float("inf")}}, "lora.alpha: inf is not allowed"),
    ({"lora": {"dropout": float("nan")}}, "lora.dropout: nan"),
    ({"train": {"max_grad_norm": float("nan")}}, "train.max_grad_norm: nan"),
    ({"train": {"max_grad_norm": "inf"}}, "train.max_grad_norm: inf"),
    ({"train": {"seed": 10**30}}, "train.seed: 1000000000000000000000000000000 is out of range"),
    ({"data": {"split_seed": 2**32}}, "data.split_seed"),
    ({"train": {"max_steps": 10**40}}, "below 2**63"),
])
def test_non_finite_and_huge_values_are_refused(data, needle):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(data)
    assert needle in str(e.value)


def test_yaml_nan_and_inf_are_refused_from_a_file(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  warmup_ratio: .nan\nlora:\n  alpha: .inf\n")
    with pytest.raises(C.ConfigError, match="warmup_ratio: nan"):
        C.load(p)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n"])
def test_empty_or_comment_only_config_is_an_error(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError, match="the config file is empty"):
        C.load(p)


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  seed: 1\n  learning_rate: 1e-4\n  seed: 2\n")
    with pytest.raises(C.ConfigError) as e:
        C.load(p)
    assert "duplicate key 'seed' at line 4 (first given at line 2)" in str(e.value)
    p.write_text("train: {seed: 1}\nmethod: lora\ntrain: {seed: 2}\n")
    with pytest.raises(C.ConfigError, match="duplicate key 'train' at line 3 .first given at line 1"):
        C.load(p)


@pytest.mark.slow
def test_cli_refuses_an_empty_config_and_adamw_8bit_without_cuda(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    res = ftwb("train", str(empty), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and "the config file is empty" in res.stderr and "Traceback" not in res.stderr
    import torch

    if torch.cuda.is_available():
        pytest.skip("adamw_8bit is allowed with CUDA")
    cfg = small_demo_config()
    cfg.train.optimizer = "adamw_8bit"
    res = ftwb("train", str(write_config(cfg, tmp_path / "8bit.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and "adamw_8bit needs a CUDA GPU" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_broken_chat_template_is_a_template_error(tmp_path):
    cfg = small_demo_config()
    cfg.model.chat_template = "{% for m in messages %}{{ m.content }"  # unclosed expression
    res = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr
    assert "chat_template" in res.stderr or "chat template" in res.stderr, res.stderr[-2000:]
    assert "max_seq_len" not in res.stderr


@pytest.mark.slow
def test_cpu_out_of_memory_is_reported_as_memory_with_shape_and_hint(tmp_path):
    # The CPU allocator's failure, injected at step 2: a real huge batch would take the
    # shared test machine down with it.
    cfg = write_config(small_demo_config(max_steps=5, eval_every=0, save_every=0), tmp_path / "run.yaml")
    res = ftwb("train", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"FTWB_INJECT_FAULT": "cpuoom@2"})
    assert res.returncode == 1
    err = next(e for e in events_of(only_run(tmp_path / "runs")) if e["type"] == "error")
    assert err["kind"] == "oom" and err["device"] == "cpu" and len(err["batch_shape"]) == 2
    assert "CPU out of memory on a batch of shape" in err["message"] and "micro_batch_size" in err["hint"]
    assert "Traceback" not in res.stderr and "error (oom)" in res.stderr


# ---------------------------------------------------------------- fuzz

FIELDS = C.field_help()
_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from([".nan", "-.inf", "1e-4", "1e400", "all-linear", "chatml", "demo", "4"]),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def _configs(draw):
    out: dict = {}
    for path in draw(st.lists(st.sampled_from(sorted(FIELDS) + ["train.nope", "bogus", "model"]), max_size=8)):
        *sections, leaf = path.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {}) if isinstance(node.get(s, {}), dict) else node
        node[leaf] = draw(_values)
    return out


def _numbers(d, prefix=""):
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            yield from _numbers(v, p)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield p, v


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs())
def test_fuzz_config_schema_one_message_or_a_valid_config(data):
    t0 = time.perf_counter()
    try:
        cfg = C.from_dict(data)
    except C.ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return
    finally:
        assert time.perf_counter() - t0 < 5.0  # milliseconds quiet: catches a hang, not a loaded machine
    for path, v in _numbers(cfg.to_dict()):  # whatever was accepted is finite and in range
        meta = FIELDS.get(path, {})
        assert math.isfinite(v), path
        if "min" in meta:
            assert v >= meta["min"], path
        if "max" in meta:
            assert v <= meta["max"], path
        if "gt" in meta:
            assert v > meta["gt"], path


@settings(max_examples=200, deadline=1000)
@given(st.text(alphabet=st.sampled_from(list("train:seed{}[]- \n#.,'\"&*!|>%@`0123456789nafiNAF")), max_size=80))
def test_fuzz_yaml_text_never_escapes_as_anything_but_a_config_error(tmp_path_factory, text):
    p = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    p.write_text(text)
    try:
        C.load(p)
    except C.ConfigError as e:
        assert str(e)
