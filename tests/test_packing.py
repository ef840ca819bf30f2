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


def test_packed_batch_matches_each_example_alone():
    from data_fixtures import tiny_llama

    model = tiny_llama(vocab_size=64)
    items = make_items()
    packed = collate(items, packing=True, pad_id=0, attn="sdpa")
    assert packed["attention_mask"].shape == (1, 1, 24, 24) and packed["attention_mask"].dtype == torch.bool
    with torch.no_grad():
        out = model(**model_inputs(packed))
        packed_logits = out.logits
        packed_losses = token_losses(packed_logits, packed["labels"])
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


def test_position_ids_alone_do_not_isolate_examples_with_sdpa():
    """The trap the 4D mask exists for: without it the second example sees the first."""
    from data_fixtures import tiny_llama

    model = tiny_llama(vocab_size=64)
    items = make_items()
    packed = collate(items, packing=True, pad_id=0, attn="flash_attention_2")
    assert "attention_mask" not in packed
    with torch.no_grad():
        mixed = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits
        alone = model(**model_inputs(collate([items[1]], packing=False, pad_id=0))).logits
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert not torch.allclose(mixed[0, n0:n0 + n1], alone[0], atol=1e-4)


def test_eager_mask_is_additive_in_the_model_dtype():
    b = collate(make_items(), packing=True, pad_id=0, attn="eager", dtype=torch.bfloat16)
    m = b["attention_mask"]
    assert m.dtype == torch.bfloat16 and m.shape == (1, 1, 24, 24)
    assert m[0, 0, 8, 7] == 0 and m[0, 0, 7, 8] < -1e30 and m[0, 0, 8, 6] < -1e30  # 7 = start of example 2


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
