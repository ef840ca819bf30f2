"""Loss masks: assistant answers and their end-of-turn token are trained, prompts and the
next turn's header are not, on templates with and without generation markers."""
import time

import pytest

from data_fixtures import CHATML, make_tokenizer
from engine.data.template import CHATML_TEMPLATE, IGNORE, ensure_chat_template, tokenize_example, tokenize_row
from engine.data.tokenize import tokenize_all

CONV = {"messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And 3?"},
    {"role": "assistant", "content": "Three."},
]}
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "mistral": "</s>"}
NEXT_HEADER = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "mistral": "[INST]"}


def trained_text(tok, ids, labels):
    """The trained stretches, decoded, one string per contiguous run."""
    runs, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


@pytest.mark.parametrize("template", ["chatml", "llama3", "mistral"])
def test_answers_and_end_of_turn_are_trained_and_nothing_else(template):
    tok = make_tokenizer(template)
    ids, labels = tokenize_example(tok, CONV)
    assert len(ids) == len(labels)
    full = tok.apply_chat_template(CONV["messages"], tokenize=False)
    assert ids == tok(full, add_special_tokens=False)["input_ids"]  # the exact template rendering
    runs = trained_text(tok, ids, labels)
    eot = END_OF_TURN[template]
    assert len(runs) == 2
    for run, answer in zip(runs, ["Four.", "Three."]):
        assert run.strip().startswith(answer)
        assert eot in run  # the end-of-turn token is in the loss, so the model learns to stop
        assert NEXT_HEADER[template] not in run and "user" not in run and "What" not in run
    eot_id = tok.convert_tokens_to_ids(eot)
    assert all(lab == eot_id for i, lab in zip(ids, labels) if i == eot_id and lab != IGNORE)
    assert sum(1 for i, lab in zip(ids, labels) if i == eot_id and lab != IGNORE) == 2
    header_id = tok.convert_tokens_to_ids("<|start_header_id|>" if template == "llama3" else "<|im_start|>")
    assert all(lab == IGNORE for i, lab in zip(ids, labels) if i == header_id)


def test_train_on_all_trains_every_token():
    tok = make_tokenizer("chatml")
    ids, labels = tokenize_example(tok, CONV, train_on="all")
    assert labels == ids


def test_completion_text_gets_bos_and_eos_and_is_all_trained():
    tok = make_tokenizer("llama3")
    ids, labels = tokenize_example(tok, {"text": "hello world"})
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and labels == ids


def test_template_rewriting_earlier_turns_gives_one_true_render_per_turn():
    # Drops earlier assistant turns' content when the conversation continues: no single
    # render shows both answers, so each turn is its own example, each a real render.
    tpl = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
           "{{ '<|im_start|>assistant\n(earlier)<|im_end|>\n' }}{% else %}"
           "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    tok = make_tokenizer("chatml")
    tok.chat_template = tpl
    examples = tokenize_row(tok, CONV)
    assert [t.plan.turn for t in examples] == [2, 4] and examples[0].plan.policy == "per_turn"
    for t, upto, answer in zip(examples, (3, 5), ("Four.", "Three.")):
        render = tok.apply_chat_template(CONV["messages"][:upto], tokenize=False)
        assert t.input_ids == tok(render, add_special_tokens=False)["input_ids"]
        assert trained_text(tok, t.input_ids, t.labels) == [answer + "<|im_end|>"]
    # single: one render, trained as it shows the earlier turn; flagged
    (one,) = tokenize_row(tok, CONV, turn_policy="single")
    assert trained_text(tok, one.input_ids, one.labels) == ["(earlier)<|im_end|>", "Three.<|im_end|>"]
    assert any("reasoning stripped from earlier turns (policy single" in n for n in one.plan.notes)
    (last,) = tokenize_row(tok, CONV, turn_policy="last")
    assert trained_text(tok, last.input_ids, last.labels) == ["Three.<|im_end|>"]


def test_ensure_chat_template_override_and_fallback():
    tok = make_tokenizer(None)
    assert ensure_chat_template(tok, None) == CHATML_TEMPLATE
    assert ensure_chat_template(tok, "chatml") == CHATML_TEMPLATE
    assert ensure_chat_template(tok, CHATML) == CHATML
    from engine.data.errors import DataError
    with pytest.raises(DataError, match="neither a Jinja template nor a template name"):
        ensure_chat_template(tok, "llama")
    # No ChatML tokens in this vocabulary: markers are trained as plain text, no resize.
    n = len(tok)
    tok2 = make_tokenizer(None)
    tok2.chat_template = None
    ensure_chat_template(tok2, None)
    assert len(tok2) == n


def test_truncation_and_drop_counts(tmp_path):
    tok = make_tokenizer("chatml")
    long_answer = {"messages": [{"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "word " * 200}]}
    long_prompt = {"messages": [{"role": "user", "content": "word " * 200},
                                {"role": "assistant", "content": "ok"}]}
    short = CONV
    examples = [short, long_answer, long_prompt]
    items, st = tokenize_all(tok, examples, "assistant", 64, "truncate", cache=False)
    assert st["rows_in"] == 3 and st["truncated"] == 2
    assert st["truncated_cut_assistant"] == 2
    # the long prompt leaves nothing trainable inside the first 64 tokens
    assert st["dropped_no_trainable"] == 1 and st["rows_out"] == 2
    assert [it["row"] for it in items] == [0, 1]
    assert all(len(it["input_ids"]) <= 64 for it in items)
    assert st["tokens"] == sum(len(it["input_ids"]) for it in items)
    items, st = tokenize_all(tok, examples, "assistant", 64, "drop", cache=False)
    assert st["dropped_overlong"] == 2 and st["rows_out"] == 1 and st["truncated"] == 0


def test_cache_hit_returns_the_same_items(tmp_path):
    tok = make_tokenizer("chatml")
    a, st1 = tokenize_all(tok, [CONV] * 3, "assistant", 128, "truncate", cache=tmp_path)
    b, st2 = tokenize_all(tok, [CONV] * 3, "assistant", 128, "truncate", cache=tmp_path)
    assert st1["cache"] == "miss" and st2["cache"] == "hit" and a == b
    assert {k: v for k, v in st1.items() if k != "cache"} == {k: v for k, v in st2.items() if k != "cache"}
    _, st3 = tokenize_all(tok, [CONV] * 3, "assistant", 64, "truncate", cache=tmp_path)
    assert st3["cache"] == "miss"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_ten_thousand_chat_rows_tokenise_quickly():
    tok = make_tokenizer("chatml")
    examples = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                              {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
                for i in range(10_000)]
    t0 = time.perf_counter()
    items, st = tokenize_all(tok, examples, "assistant", 256, "truncate", cache=False)
    elapsed = time.perf_counter() - t0
    assert st["rows_out"] == 10_000
    assert elapsed < 15, f"{elapsed:.1f}s"
