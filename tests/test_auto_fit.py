"""Throughput-aware auto-fit: which micro-batches it tries (tokens per step kept), that it
is off on CPU and says so, and that a forced run on CPU measures real steps, picks the
fastest and records the choice for a resumed run."""
from __future__ import annotations

import json

import pytest

from engine import config as C
from engine import memory_probe as P


def _cfg(**train):
    cfg = C.RunConfig()
    cfg.data.max_seq_len = 512
    cfg.train.micro_batch_size = 4
    cfg.train.grad_accum = 2
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_candidates_keep_tokens_per_step_and_try_checkpointing_both_ways():
    cands = P.auto_fit_candidates(_cfg())
    assert P.requested_tokens_per_step(_cfg()) == 4 * 512 * 2
    assert {tok * ga for tok, _, ga in cands} == {4096}
    assert [tok for tok, gc, _ in cands if not gc] == [4096, 2048, 1024, 512]
    assert {gc for _, gc, _ in cands} == {False, True}
    assert cands[0] == (4096, False, 1)  # checkpointing off, largest first


def test_pinned_tokens_or_checkpointing_are_kept():
    pinned = P.auto_fit_candidates(_cfg(tokens_per_micro_batch=1024, grad_accum=3))
    assert {(tok, ga) for tok, _, ga in pinned} == {(1024, 3)}
    keep_gc = P.auto_fit_candidates(_cfg(auto_fit="tokens", gradient_checkpointing=True))
    assert {gc for _, gc, _ in keep_gc} == {True}


def test_unpacked_candidates_are_whole_rows():
    cfg = _cfg()
    cfg.data.packing = False
    assert all(tok % 512 == 0 for tok, _, _ in P.auto_fit_candidates(cfg))


def _events():
    evs = []
    return evs, lambda t, **f: evs.append((t, f))


def test_off_on_cpu_and_says_so():
    evs, emit = _events()
    assert P.auto_fit(None, _cfg(), "cpu", emit=emit) == {}
    (kind, ev), = evs
    assert kind == "auto_fit" and ev["status"] == "off" and "CPU" in ev["reason"]
    assert ev["tokens_per_micro_batch"] == 2048 and ev["grad_accum"] == 2


@pytest.mark.slow
def test_forced_on_cpu_measures_picks_the_fastest_and_is_reused_on_resume(tmp_path):
    pytest.importorskip("torch")
    from engine.demo import demo_config
    from engine.train.model import load_model

    cfg = demo_config()
    cfg.data.max_seq_len = 64
    cfg.train.micro_batch_size, cfg.train.grad_accum = 2, 2
    model, tok = load_model(cfg, "cpu")
    evs, emit = _events()
    choice = P.auto_fit(model, cfg, "cpu", emit=emit, run_dir=tmp_path, force=True, budget_s=1e9)
    ev = next(f for t, f in evs if t == "auto_fit")
    assert ev["status"] == "chosen" and len(ev["measured"]) == 6  # 256/128/64 tokens x checkpointing off/on
    best = max(ev["measured"], key=lambda r: r["trained_tokens_per_s"])
    assert (choice["tokens_per_micro_batch"], choice["gradient_checkpointing"]) == (
        best["tokens_per_micro_batch"], best["gradient_checkpointing"])
    assert choice["tokens_per_step"] == 256
    assert cfg.train.tokens_per_micro_batch * cfg.train.grad_accum == 256
    base = model.get_base_model()
    assert base.is_gradient_checkpointing == choice["gradient_checkpointing"]
    assert json.loads((tmp_path / P.AUTO_FIT_FILE).read_text()) == choice
    # a resumed run takes the saved choice without measuring again
    cfg2 = demo_config()
    evs2, emit2 = _events()
    assert P.auto_fit(model, cfg2, "cpu", emit=emit2, run_dir=tmp_path) == choice
    assert evs2[-1][1]["status"] == "reused" and cfg2.train.grad_accum == choice["grad_accum"]


def test_the_loop_plans_rows_of_tokens_per_micro_batch(tmp_path):
    """What auto-fit sets is what the loop packs: rows of tokens_per_micro_batch tokens."""
    torch = pytest.importorskip("torch")
    import random

    from data_fixtures import tiny_llama

    from engine.train.control import Control
    from engine.train.loop import Trainer

    rng = random.Random(0)
    items = []
    for _ in range(60):
        n = rng.randint(4, 32)
        items.append({"input_ids": [rng.randrange(3, 64) for _ in range(n)], "labels": [5] * n})
    cfg = C.RunConfig()
    cfg.data.max_seq_len, cfg.train.micro_batch_size, cfg.train.tokens_per_micro_batch = 32, 1, 96

    class Tok:
        pad_token_id = 0

    trainer = Trainer(cfg, tmp_path, tiny_llama(64), Tok(), items, [], "cpu", lambda *a, **k: None, Control())
    sizes = [sum(len(items[i]["input_ids"]) for i in b) for b in trainer.plan(0)]
    assert max(sizes) <= 96 and max(sizes) > 32
    assert sorted(i for b in trainer.plan(0) for i in b) == list(range(60))
    m = trainer.train_step()
    assert m["tokens"] == sizes[0] and torch.isfinite(torch.tensor(m["loss"]))
