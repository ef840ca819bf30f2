"""Model set-up and the loss, in process on the demo model: LoRA with and without
gradient checkpointing, full fine-tuning, and the chunked loss against the plain one."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.data import pack  # noqa: E402
from engine.demo import demo_config  # noqa: E402
from engine.train import loss as L  # noqa: E402
from engine.train.model import ModelError, load_model, resolve_model_path, trainable_parameters  # noqa: E402


@pytest.fixture(scope="module")
def batch():
    from engine.data.prepare import prepare

    cfg = demo_config()
    _, tok = load_model(cfg, "cpu")
    prepared = prepare(cfg, tok)
    return pack.collate(prepared.train[:6], True, tok.pad_token_id, "sdpa")


def _cfg(**kw):
    cfg = demo_config()
    for k, v in kw.items():
        section, _, name = k.partition("__")
        if name:
            setattr(getattr(cfg, section), name, v)
        else:
            setattr(cfg, section, v)
    return cfg


def test_chunked_loss_equals_the_models_own_loss(batch, monkeypatch):
    model, _ = load_model(_cfg(), "cpu")
    model.eval()
    monkeypatch.setattr(L, "CHUNK_TOKENS", 64)  # several chunks on a small batch
    loss_sum, n = L.batch_loss(model, batch)
    with torch.no_grad():
        ref = model(**pack.model_inputs(batch)).loss  # HF shifts labels and averages over targets
    assert n == batch["num_trained"]
    assert float(loss_sum.detach()) / n == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("gc", [False, True])
def test_lora_trains_only_adapters_and_gradients_reach_them(batch, gc):
    model, _ = load_model(_cfg(train__gradient_checkpointing=gc), "cpu")
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total / 5
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    loss_sum, n = L.batch_loss(model, batch)
    (loss_sum / n).backward()
    grads = [p.grad for n_, p in model.named_parameters() if p.requires_grad and "lora_B" in n_]  # B starts at 0, so A gets no gradient yet
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_full_fine_tuning_trains_every_parameter(batch):
    model, _ = load_model(_cfg(method="full"), "cpu")
    trainable, total = trainable_parameters(model)
    assert trainable == total


def test_target_module_list_is_honoured():
    model, _ = load_model(_cfg(lora__target_modules=["q_proj", "v_proj"]), "cpu")
    names = {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"q_proj", "v_proj"}


def test_qlora_without_cuda_says_so():
    from engine.config import ConfigError

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(ConfigError, match="qlora' needs a CUDA GPU"):
        load_model(_cfg(method="qlora"), "cpu")


def test_missing_or_bad_model_paths_have_clear_messages(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    assert resolve_model_path("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"


def test_early_stopping_after_patience_evals_without_improvement(tmp_path):
    from engine.data.prepare import prepare
    from engine.train.control import Control
    from engine.train.loop import Trainer

    cfg = _cfg(train__early_stopping_patience=2)
    model, tok = load_model(cfg, "cpu")
    prepared = prepare(cfg, tok)
    events = []
    trainer = Trainer(cfg, tmp_path, model, tok, prepared.train[:8], prepared.val[:2], "cpu",
                      lambda t, **f: events.append((t, f)), Control())
    vals = iter([2.0, 1.5, 1.6, 1.55])
    trainer.evaluate = lambda: (next(vals), 1.0)
    assert [trainer._eval_and_track(s) for s in (10, 20, 30, 40)] == [False, False, False, True]
    assert (trainer.state.best_val_loss, trainer.state.best_step) == (1.5, 20)
    assert any(t == "warning" and f["kind"] == "early_stop" for t, f in events)


def test_rotation_keeps_the_last_k_and_the_best(tmp_path):
    from engine import rundir
    from engine.train.checkpoint import rotate

    for step in (5, 10, 15, 20, 25):
        d = tmp_path / rundir.CHECKPOINTS / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / rundir.MANIFEST).write_text("{}")
    (tmp_path / rundir.CHECKPOINTS / "checkpoint-30").mkdir()  # incomplete: no manifest
    rotate(tmp_path, keep=2, best_step=10)
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-20", "checkpoint-25"]
