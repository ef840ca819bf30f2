"""The training step waits on the GPU once per optimizer step, however many micro-batches it
accumulates: counts, trained positions and boundaries come from the host, the loss is
summed on the device. Needs CUDA (torch's sync debug mode sees the waits)."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _syncs_in_one_step(grad_accum: int, tmp_path) -> int:
    from engine.data.prepare import prepare
    from engine.demo import demo_config
    from engine.train.control import Control
    from engine.train.loop import Trainer
    from engine.train.model import load_model

    cfg = demo_config()
    cfg.train.grad_accum, cfg.train.micro_batch_size, cfg.train.auto_fit = grad_accum, 1, "off"
    model, tok = load_model(cfg, "cuda")
    prepared = prepare(cfg, tok)
    trainer = Trainer(cfg, tmp_path, model, tok, prepared.train, [], "cuda", lambda *a, **k: None, Control())
    trainer.train_step()  # warm-up: allocator, kernels, optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def test_host_syncs_do_not_grow_with_micro_batches(tmp_path):
    one = _syncs_in_one_step(1, tmp_path / "a")
    four = _syncs_in_one_step(4, tmp_path / "b")
    assert four == one and one <= 2, (one, four)
