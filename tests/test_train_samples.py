"""Sample answers during training: the prompts picked, and the greedy answers checked
against an independent reference (a plain argmax loop over full forward passes, no
generate(), no KV cache) on the real demo model."""
from __future__ import annotations

import json

import pytest

from engine.demo import demo_dataset_path


@pytest.fixture(scope="module")
def demo():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.template import ensure_chat_template
    from engine.demo import ensure_demo_model

    path = ensure_demo_model()
    tok = AutoTokenizer.from_pretrained(path)
    ensure_chat_template(tok)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tok


def _examples(n: int) -> list[dict]:
    rows = [json.loads(x) for x in demo_dataset_path().read_text().splitlines()[:n]]
    return [{"messages": r["messages"]} for r in rows] + [{"text": "a completion row has no prompt"}]


def _reference(model, tok, ids: list[int], max_new: int) -> str:
    import torch

    from engine.evaluate.generate import stop_ids

    stops, out = set(stop_ids(tok, model)), []
    seq = list(ids)
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if nxt in stops:
                break
            out.append(nxt)
            seq.append(nxt)
    return tok.decode(out, skip_special_tokens=True)


def test_prompts_are_the_first_with_an_answer_and_match_greedy_reference(demo):
    from engine.train.samples import SamplePrompts

    model, tok = demo
    ex = _examples(5)
    sp = SamplePrompts(ex, tok, count=3, max_new_tokens=12)
    assert len(sp) == 3
    assert [p["expected"] for p in sp.prompts] == [e["messages"][-1]["content"] for e in ex[:3]]
    model.train()
    answers, seconds = sp.generate(model)
    assert model.training and seconds > 0
    assert answers == [_reference(model, tok, ids, 12) for ids in sp.ids]


def test_events_carry_base_then_current_answers(demo):
    from peft import LoraConfig, get_peft_model

    from engine.train.samples import SamplePrompts

    model, tok = demo
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    sp = SamplePrompts(_examples(2), tok, count=2, max_new_tokens=8)
    got = []
    sp.emit_base(peft_model, lambda t, **f: got.append((t, f)), step=0)
    sp.emit_now(peft_model, lambda t, **f: got.append((t, f)), step=5)
    (t0, base), (t1, now) = got
    assert t0 == t1 == "samples" and base["base"] is True and now["base"] is False and now["step"] == 5
    assert all(set(s) == {"prompt", "expected", "answer"} for s in base["samples"] + now["samples"])
    # A fresh LoRA adapter is a no-op (B = 0): base and current answers agree.
    assert [s["answer"] for s in base["samples"]] == [s["answer"] for s in now["samples"]]
    peft_model.unload()
