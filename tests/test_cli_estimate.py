"""`ftwb estimate`: exit codes, the --json shape, --auto-fit, and the GPU-measured check."""
from __future__ import annotations

import json

import pytest
import yaml

from engine import config as C
from engine import memory as M
from tui.main import main

LLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "tie_word_embeddings": True}


@pytest.fixture
def run_config(tmp_path):
    model = tmp_path / "llama-1b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA_1B))
    cfg = C.from_dict({"model": {"name_or_path": str(model)}, "method": "lora",
                       "data": {"max_seq_len": 2048}, "train": {"micro_batch_size": 4, "grad_accum": 4}})
    path = tmp_path / "run.yaml"
    C.save(cfg, path)
    return path


def test_fits_exit_0_and_table(run_config, capsys):
    assert main(["estimate", str(run_config), "--gpu-gb", "80"]) == 0
    out = capsys.readouterr().out
    for term in ("weights", "lora_params", "optimizer_states", "activations", "logits", "cuda_context"):
        assert term in out
    assert "fits" in out and "will not fit" not in out


def test_will_not_fit_exit_1(run_config, capsys):
    assert main(["estimate", str(run_config), "--gpu-gb", "4"]) == 1
    assert "will not fit" in capsys.readouterr().out


def test_json_shape(run_config, capsys):
    assert main(["estimate", str(run_config), "--gpu-gb", "80", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"total_bytes", "peak_allocated_bytes", "breakdown", "gpu_total_bytes", "headroom", "fits",
            "n_params", "trainable_params", "tokens_per_micro_batch", "measured", "auto_fit"} <= set(data)
    assert data["fits"] is True and data["gpu_total_bytes"] == 80 * 1024 ** 3
    assert sum(t["bytes"] for t in data["breakdown"]) == data["total_bytes"]
    assert all(set(t) == {"name", "bytes", "note"} for t in data["breakdown"])
    assert data["tokens_per_micro_batch"] == 4 * 2048


def test_auto_fit_suggests_batch_and_keeps_effective_batch(run_config, capsys):
    assert main(["estimate", str(run_config), "--gpu-gb", "24", "--auto-fit", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)["auto_fit"]
    cfg = C.load(run_config)
    mbs = fit["micro_batch_size"]
    assert mbs >= 1 and fit["by"] == "estimate"
    c = cfg.copy()
    c.train.micro_batch_size = mbs
    assert M.estimate(c, LLAMA_1B).fits(24 * 1024 ** 3)
    # The effective batch (16) is kept exactly: the micro-batch is the largest divisor of it
    # that fits, and the next divisor up does not fit.
    assert fit["effective_batch_after"] == 16 and fit["micro_batch_size"] * fit["grad_accum"] == 16
    bigger = next((d for d in range(mbs + 1, 17) if 16 % d == 0), None)
    if bigger is not None:
        c.train.micro_batch_size = bigger
        assert not M.estimate(c, LLAMA_1B).fits(24 * 1024 ** 3)
    assert main(["estimate", str(run_config), "--gpu-gb", "24", "--auto-fit"]) == 0
    assert "train.micro_batch_size 4 ->" in capsys.readouterr().out


def test_auto_fit_nothing_fits_exit_1(run_config, capsys):
    assert main(["estimate", str(run_config), "--gpu-gb", "1", "--auto-fit"]) == 1
    assert "even micro_batch_size 1" in capsys.readouterr().out


def test_imported_axolotl_config_is_estimated(tmp_path, capsys, run_config):
    model_dir = C.load(run_config).model.name_or_path
    src = tmp_path / "axolotl.yml"
    src.write_text(yaml.safe_dump({"base_model": model_dir, "adapter": "qlora", "load_in_4bit": True,
                                   "sequence_len": 1024, "micro_batch_size": 1, "lora_r": 8}))
    assert main(["estimate", str(src), "--gpu-gb", "24", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "qlora" and "Axolotl" in data["source_note"]


@pytest.mark.parametrize("argv, msg", [
    (["--gpu-gb", "0"], "--gpu-gb"),
    (["--headroom", "1.5"], "--headroom"),
])
def test_bad_flags_exit_2(run_config, capsys, argv, msg):
    assert main(["estimate", str(run_config), *argv]) == 2
    assert msg in capsys.readouterr().err


def test_bad_config_and_missing_model_exit_2(tmp_path, capsys):
    assert main(["estimate", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  micro_batch_size: 0\n")
    assert main(["estimate", str(bad)]) == 2
    assert "micro_batch_size" in capsys.readouterr().err
    nomodel = tmp_path / "nomodel.yaml"
    nomodel.write_text(f"model:\n  name_or_path: {tmp_path / 'no-such-model'}\n")
    assert main(["estimate", str(nomodel)]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and "Traceback" not in err


def test_auto_fit_without_gpu_size_exit_2(run_config, capsys, monkeypatch):
    monkeypatch.setattr(M, "detect_gpu_total", lambda: None)
    assert main(["estimate", str(run_config), "--auto-fit"]) == 2
    assert "--gpu-gb" in capsys.readouterr().err


def _cuda() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


def test_measure_without_cuda_exit_2(run_config, capsys):
    if _cuda():
        pytest.skip("a CUDA GPU is present")
    assert main(["estimate", str(run_config), "--measure"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def _save_random_llama(path, hidden=1024, layers=8, vocab=32000):
    """A Llama with random weights and a small word-level tokenizer, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                      num_attention_heads=hidden // 128, num_key_value_heads=hidden // 512,
                      vocab_size=vocab, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(path)
    vocab_map = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 200)}}
    tok = Tokenizer(models.WordLevel(vocab_map, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="</s>").save_pretrained(path)
    return cfg.to_dict()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_estimate_within_15_percent_of_measured_peak(tmp_path, method):
    if not _cuda():
        pytest.skip("needs a CUDA GPU")
    from engine.memory_probe import measure

    model_config = _save_random_llama(tmp_path / "model")
    cfg = C.from_dict({"model": {"name_or_path": str(tmp_path / "model")}, "method": method,
                       "data": {"max_seq_len": 2048, "packing": True},
                       "train": {"micro_batch_size": 4, "gradient_checkpointing": True}})
    est = M.estimate(cfg, model_config)
    peak = measure(cfg, steps=3)[0]
    assert not peak.oom
    err = abs(est.peak_allocated - peak.peak_allocated) / peak.peak_allocated
    assert err <= 0.15, (est.peak_allocated, peak.peak_allocated, est.breakdown)
