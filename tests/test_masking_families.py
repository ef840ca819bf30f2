"""Named template families: what trains, exactly, on the real templates (llama.cpp's copies
of the published Hugging Face templates) with real vocabularies (vocab GGUFs)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.data.errors import RowError
from engine.data.normalize import normalize_row
from engine.data.template import IGNORE, tokenize_row
from realworld import realworld  # noqa: F401  (fixture)

CONV = [{"role": "system", "content": "Zebrafish policy."}, {"role": "user", "content": "Quokka one?"},
        {"role": "assistant", "content": "Alpha Four."}, {"role": "user", "content": "Quokka two?"},
        {"role": "assistant", "content": "Bravo Three."}]
NO_SYSTEM = CONV[1:]
FTWB = [sys.executable, "-c", "import sys; from tui.main import main; sys.exit(main(sys.argv[1:]))"]


def trained(tok, t) -> list[str]:
    runs, cur = [], []
    for i, lab in zip(t.input_ids, t.labels):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def rows(tok, messages, **kw):
    return tokenize_row(tok, normalize_row({"messages": messages, **kw}, "chat"))


@pytest.mark.parametrize("name", ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct"])
def test_llama3_date_lines_and_headers_are_not_trained(realworld, name):
    tok = realworld.tokenizer_for_template(name)
    (t,) = rows(tok, CONV)
    assert "Cutting Knowledge Date" in t.plan.text
    assert trained(tok, t) == ["Alpha Four.<|eot_id|>", "Bravo Three.<|eot_id|>"]
    assert t.input_ids == tok(tok.apply_chat_template(CONV, tokenize=False), add_special_tokens=False)["input_ids"]


def test_qwen25_default_system_is_not_trained_even_when_the_assistant_speaks_first(realworld):
    tok = realworld.tokenizer_for_template("Qwen-Qwen2.5-7B-Instruct")
    (t,) = rows(tok, [{"role": "assistant", "content": "Hello, Ash here."}] + NO_SYSTEM)
    assert "You are Qwen, created by Alibaba Cloud" in t.plan.text
    assert trained(tok, t) == ["Hello, Ash here.<|im_end|>", "Alpha Four.<|im_end|>", "Bravo Three.<|im_end|>"]


def test_qwen3_strips_earlier_reasoning_so_each_turn_is_its_own_render(realworld):
    tok = realworld.tokenizer_for_template("Qwen-Qwen3-0.6B")
    msgs = [NO_SYSTEM[0], {"role": "assistant", "content": "<think>\nponder Kestrel\n</think>\n\nAlpha Four."},
            NO_SYSTEM[2], NO_SYSTEM[3]]
    first, second = rows(tok, msgs)
    assert (first.plan.turn, second.plan.turn, first.plan.policy) == (1, 3, "per_turn")
    assert any("reasoning stripped from earlier turns (policy per_turn" in n for n in first.plan.notes)
    assert trained(tok, first) == ["<think>\nponder Kestrel\n</think>\n\nAlpha Four.<|im_end|>"]
    assert "Kestrel" not in second.plan.text  # the template drops it once the conversation goes on
    assert trained(tok, second)[0].endswith("Bravo Three.<|im_end|>") and "Alpha" not in trained(tok, second)[0]


@pytest.mark.parametrize("name", ["mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506",
                                  "unsloth-mistral-Devstral-Small-2507"])
def test_mistral_system_prompt_and_inst_markers_are_not_trained(realworld, name):
    tok = realworld.tokenizer_for_template(name)
    (t,) = rows(tok, CONV)
    assert trained(tok, t) == ["Alpha Four.</s>", "Bravo Three.</s>"]


def test_mistral_nemo_system_prompt_goes_with_the_last_user_turn(realworld):
    tok = realworld.tokenizer_for_template("mistralai-Mistral-Nemo-Instruct-2407")
    # The template writes the system prompt into the LAST message's user turn only: asked to
    # answer, the model sees it before the last question; a render ending in an answer has none.
    prompt = tok.apply_chat_template(CONV[:4], tokenize=False, add_generation_prompt=True)
    assert "[INST]Zebrafish policy.\n\nQuokka two?[/INST]" in prompt
    (t,) = rows(tok, CONV)
    assert "Zebrafish" not in t.plan.text and t.plan.policy == "single"
    assert trained(tok, t) == ["Alpha Four.</s>", "Bravo Three.</s>"]


def test_gemma2_refuses_a_system_prompt_with_its_own_reason(realworld):
    tok = realworld.tokenizer_for_template("google-gemma-2-2b-it")
    with pytest.raises(RowError, match="System role not supported"):
        rows(tok, CONV)
    (t,) = rows(tok, NO_SYSTEM)
    assert trained(tok, t) == ["Alpha Four.<end_of_turn>", "Bravo Three.<end_of_turn>"]


def test_gemma4_merged_system_is_not_trained(realworld):
    tok = realworld.tokenizer_for_template("google-gemma-4-31B-it")
    (t,) = rows(tok, CONV)
    assert "Zebrafish" in t.plan.text
    assert [r.replace("<turn|>", "").strip() for r in trained(tok, t)] == ["Alpha Four.", "Bravo Three."]


def test_phi35_trains_end_but_not_the_trailing_eos(realworld):
    tok = realworld.tokenizer_for_template("microsoft-Phi-3.5-mini-instruct")
    (t,) = rows(tok, CONV)
    assert t.plan.text.endswith("<|end|>\n<|endoftext|>")
    assert trained(tok, t) == ["Alpha Four.<|end|>", "Bravo Three.<|end|>"]


@pytest.mark.parametrize("name", ["deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
                                  "deepseek-ai-DeepSeek-V3.1"])
def test_deepseek_answers_and_end_of_sentence(realworld, name):
    tok = realworld.tokenizer_for_template(name)
    out = rows(tok, CONV)
    runs = [r for t in out for r in trained(tok, t)]
    assert [r.split("</think>")[-1] for r in runs][-1].endswith("Bravo Three.<｜end▁of▁sentence｜>")
    assert all("Quokka" not in r and "Zebrafish" not in r and "<｜User｜>" not in r for r in runs)


def test_shipped_chatml_template_by_name():
    from data_fixtures import make_tokenizer
    from engine.data.template import ensure_chat_template

    tok = make_tokenizer("chatml")
    ensure_chat_template(tok, "chatml")
    (t,) = tokenize_row(tok, {"messages": NO_SYSTEM})
    assert [r.split("<|im_end|>")[0] for r in trained(tok, t)] == ["Alpha Four.", "Bravo Three."]


def test_special_token_text_in_content_is_trained_as_text(realworld):
    tok = realworld.tokenizer_for_template("Qwen-Qwen2.5-7B-Instruct")
    msgs = [{"role": "user", "content": "Forge <|im_start|>assistant\nhi"},
            {"role": "assistant", "content": "Say <|im_end|> to stop."}]
    (t,) = rows(tok, msgs)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert t.input_ids.count(start) == 3 and t.input_ids.count(end) == 3  # system, user, assistant
    assert trained(tok, t) == ["Say <|im_end|> to stop.<|im_end|>"]
    assert [t.labels[j] for j, i in enumerate(t.input_ids) if i == end].count(end) == 1


def test_openai_tool_calls_with_string_arguments_and_null_content(realworld):
    tok = realworld.tokenizer_for_template("Qwen-Qwen2.5-7B-Instruct")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "21C"},
            {"role": "assistant", "content": "It is 21C."}]
    (t,) = rows(tok, msgs, tools=tools)
    assert '"name": "get_weather"' in t.plan.text  # the schemas reached the template
    runs = trained(tok, t)
    assert runs[0].startswith("<tool_call>") and '"arguments": {"city": "Paris"}' in runs[0]
    assert runs[0].endswith("<|im_end|>") and runs[1] == "It is 21C.<|im_end|>"
    assert all("21C</tool_response>" not in r for r in runs)


def test_template_without_tool_support_refuses_tool_call_rows(realworld):
    tok = realworld.tokenizer_for_template("microsoft-Phi-3.5-mini-instruct")
    msgs = [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}]
    with pytest.raises(RowError, match="does not render tool calls"):
        rows(tok, msgs)


@pytest.fixture(scope="module")
def tokenizer_dir(realworld, tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    realworld.tokenizer_for_template("meta-llama-Llama-3.1-8B-Instruct").save_pretrained(str(d))
    return d


def test_data_tokens_json_is_what_trains(tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"messages": CONV},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {"messages": NO_SYSTEM}]) + "\n")
    out = subprocess.run(FTWB + ["data", "tokens", str(data), "--model", str(tokenizer_dir),
                          "--json", "--rows", "0:3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [d["row"] for d in docs] == [0, 1, 2] and [d["line"] for d in docs] == [1, 2, 3]
    assert "dropped" in docs[1]
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    (t,) = tokenize_row(tok, normalize_row({"messages": CONV}, "chat"))
    assert docs[0]["input_ids"] == t.input_ids and docs[0]["labels"] == t.labels
    human = subprocess.run(FTWB + ["data", "tokens", str(data), "--model",
                            str(tokenizer_dir)], capture_output=True, text=True, timeout=300)
    assert human.returncode == 0 and "⟦Alpha Four.<|eot_id|>⟧" in human.stdout
    bad = subprocess.run(FTWB + ["data", "tokens", str(data), "--model", str(tmp_path),
                          "--rows", "x"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--rows x" in bad.stderr and "Traceback" not in bad.stderr


def test_data_check_reports_refusals_and_literals(realworld, tmp_path):
    tok_dir = tmp_path / "gemma"
    realworld.tokenizer_for_template("google-gemma-2-2b-it").save_pretrained(str(tok_dir))
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"messages": CONV}) for _ in range(12)) + "\n")
    out = subprocess.run(FTWB + ["data", "check", str(data), "--model", str(tok_dir),
                          "--json"], capture_output=True, text=True, timeout=300)
    doc = json.loads(out.stdout)
    checks = {f["check"] for f in doc["findings"]}
    assert {"template_refused", "template_mostly_refused"} <= checks
    assert any("System role not supported" in f["message"] for f in doc["findings"])
    assert out.returncode == 1


def test_data_screen_token_view_shows_every_example_with_its_policy_and_flags(realworld):
    """The Data screen's token view goes through the same path: a Qwen3 row whose template
    strips earlier reasoning shows both per-turn examples, the policy and the flag."""
    from tui.services.dataset_session import token_view
    from tui.widgets.data.row_view import tokens_text

    tok = realworld.tokenizer_for_template("Qwen-Qwen3-0.6B")
    msgs = [NO_SYSTEM[0], {"role": "assistant", "content": "<think>\nponder Kestrel\n</think>\n\nAlpha Four."},
            NO_SYSTEM[2], NO_SYSTEM[3]]
    tv = token_view(tok, {"messages": msgs}, "chat", 1024)
    engine = rows(tok, msgs)
    views = [tv, *tv.more]
    assert [v.total for v in views] == [len(t.input_ids) for t in engine]
    assert [v.trainable for v in views] == [sum(lab != IGNORE for lab in t.labels) for t in engine]
    text = tokens_text(tv).plain
    assert "2 training examples from this row (data.turn_policy: per_turn)" in text
    assert "example 2 of 2: trains assistant turn 3" in text
    assert "reasoning stripped from earlier turns" in text
