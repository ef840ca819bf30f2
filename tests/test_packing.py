"""Packed examples must not see each other: a packed batch gives the same logits and loss
as each example run alone, on a real (tiny, random) LlamaForCausalLM with sdpa."""
import random

import pytest

from engine.data.pack import IGNORE, collate, model_inputs, plan_batches

torch = pytest.importorskip("torch")


def make_items(seed=0, lens=(7, 12, 5), vocab=64):
    rng = random.Random(seed)
    items = []
    for r, n in enumerate(lens):
        ids = [rng.randrange(3, vocab) for _ in range(n)]
        labels = [IGNORE] * (n // 3) + ids[n // 3:]  # a masked prompt, then the answer
        items.append({"input_ids": ids, "labels": labels, "row": r})
    return items


def token_losses(logits, labels):
    """Per-position loss of the HF shift: logits[t] predicts labels[t + 1]."""
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE,
                                             reduction="none")


CPU_ROUTES = ["sdpa", "eager", "ftwb_varlen"]  # ftwb_varlen off CUDA: one sdpa per example, by cu_seq_lens


def _model_for(route, vocab_size=64):
    from data_fixtures import tiny_llama

    from engine.train.attention import register_varlen

    register_varlen()
    model = tiny_llama(vocab_size=vocab_size)
    model.set_attn_implementation(route)
    return model


def test_packed_collate_has_boundaries_and_no_mask():
    items = make_items()
    b = collate(items, packing=True, pad_id=0)
    assert "attention_mask" not in b  # any 2D mask would switch transformers' packed detection off
    assert b["input_ids"].shape == (1, 24)
    assert b["position_ids"][0].tolist() == list(range(7)) + list(range(12)) + list(range(5))
    assert b["cu_seq_lens"].tolist() == [0, 7, 19, 24] and b["cu_seq_lens"].dtype == torch.int32
    assert b["max_len"] == 12
    assert b["seq_index"][0].tolist() == [0] * 7 + [1] * 12 + [2] * 5
    # trained_index: flat positions whose next token is trained, computed on the host
    targets = b["labels"][0, 1:]
    assert b["trained_index"].tolist() == [t for t in range(23) if targets[t] != IGNORE]
    assert b["num_trained"] == len(b["trained_index"])
    assert set(model_inputs(b, "sdpa")) == {"input_ids", "labels", "position_ids", "use_cache"}
    assert model_inputs(b, "ftwb_varlen")["cu_seq_lens_q"] is b["cu_seq_lens"]
    assert model_inputs(b, "flash_attention_2")["max_length_k"] == 12


@pytest.mark.parametrize("route", CPU_ROUTES)
def test_packed_batch_matches_each_example_alone(route):
    model = _model_for(route)
    items = make_items()
    packed = collate(items, packing=True, pad_id=0)
    with torch.no_grad():
        out = model(**model_inputs(packed, route))
        packed_logits = out.logits
        packed_losses = token_losses(packed_logits, packed["labels"])
        model.set_attn_implementation("sdpa")  # the reference: sdpa on each example alone
        start, alone_sum, alone_count = 0, 0.0, 0
        for it in items:
            n = len(it["input_ids"])
            single = collate([it], packing=False, pad_id=0)
            alone = model(**model_inputs(single))
            seg = packed_logits[0, start:start + n]
            assert torch.allclose(seg, alone.logits[0], atol=1e-4), (seg - alone.logits[0]).abs().max()
            losses = token_losses(alone.logits, single["labels"])
            assert torch.allclose(packed_losses[start:start + n - 1], losses, atol=1e-4)
            alone_sum += losses.sum().item()
            alone_count += int((single["labels"][0, 1:] != IGNORE).sum())
            start += n
        # the last token of an example never predicts the next example's first token
        boundary = [len(items[0]["input_ids"]) - 1, len(items[0]["input_ids"]) + len(items[1]["input_ids"]) - 1]
        assert all(packed_losses[b] == 0 for b in boundary)
        assert packed["num_trained"] == alone_count
        assert abs(packed_losses.sum().item() - alone_sum) < 1e-4 * max(1.0, abs(alone_sum))
        # HF's own loss (mean over trained targets) agrees too
        assert abs(out.loss.item() - alone_sum / alone_count) < 1e-4


@pytest.mark.parametrize("route", CPU_ROUTES)
def test_packed_gradients_match_each_example_alone(route):
    """Backward too: the gradient of the packed loss is the sum of the per-example ones."""
    from engine.train.loss import batch_loss

    model = _model_for(route)
    items = make_items(seed=3, lens=(9, 4, 15, 6))
    loss, _ = batch_loss(model, collate(items, packing=True, pad_id=0))
    loss.backward()
    packed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_attn_implementation("sdpa")
    for it in items:
        loss, _ = batch_loss(model, collate([it], packing=False, pad_id=0))
        loss.backward()
    for a, p in zip(packed, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5, rtol=1e-4), (a - p.grad).abs().max()


def test_a_2d_mask_lets_packed_examples_leak():
    """The trap packed rows avoid: with any 2D attention_mask transformers stops detecting
    the packed sequences, and the second example sees the first."""
    model = _model_for("sdpa")
    items = make_items()
    packed = collate(items, packing=True, pad_id=0)
    with torch.no_grad():
        mixed = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                      attention_mask=torch.ones_like(packed["input_ids"])).logits
        alone = model(**model_inputs(collate([items[1]], packing=False, pad_id=0))).logits
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert not torch.allclose(mixed[0, n0:n0 + n1], alone[0], atol=1e-4)


def test_padded_collate_masks_pads_and_counts_real_tokens():
    items = make_items()
    b = collate(items, packing=False, pad_id=1)
    assert b["input_ids"].shape == (3, 12)
    assert b["num_tokens"] == 24
    assert int(b["attention_mask"].sum()) == 24
    assert (b["labels"][b["attention_mask"] == 0] == IGNORE).all()
    assert (b["input_ids"][0, 7:] == 1).all()
    assert b["num_trained"] == int((b["labels"][:, 1:] != IGNORE).sum())
    assert b["rows"] == [0, 1, 2]


def test_plan_batches_is_deterministic_and_covers_every_example_once():
    rng = random.Random(1)
    lengths = [rng.randint(5, 500) for _ in range(1000)]
    for packing in (False, True):
        a = plan_batches(lengths, 4, 512, packing, seed=3, epoch=0)
        assert a == plan_batches(lengths, 4, 512, packing, seed=3, epoch=0)
        assert a != plan_batches(lengths, 4, 512, packing, seed=3, epoch=1)
        assert sorted(i for b in a for i in b) == list(range(1000))
        if packing:
            assert all(sum(lengths[i] for i in b) <= 4 * 512 for b in a)
            # best-fit decreasing fills bins well: close to the lower bound on bin count
            assert len(a) <= sum(lengths) / (4 * 512) * 1.1 + 2
        else:
            assert all(len(b) <= 4 for b in a)
            # length grouping: padding within a batch is small compared with random batches
            waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in a)
            assert waste < 0.1 * sum(lengths)
