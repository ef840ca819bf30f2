"""Format detection on slices of real public datasets, and normalisation into one form."""
from pathlib import Path

import pytest

from engine.data.detect import detect_format
from engine.data.errors import DataError, RowError
from engine.data.load import load_rows
from engine.data.normalize import normalize_row, normalize_rows

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


@pytest.mark.parametrize("name, fmt", [
    ("alpaca_en_demo.json", "alpaca"),
    ("identity.json", "alpaca"),
    ("glaive_toolcall_en_demo.json", "sharegpt"),
    ("dpo_en_demo.json", "preference"),
    ("c4_demo.jsonl", "completion"),
    ("chat_messages.jsonl", "chat"),
    ("preference_prompt.jsonl", "preference"),
])
def test_detects_the_format_of_real_dataset_slices(name, fmt):
    res = load_rows(FIXTURES / name)
    got, reason = detect_format(res.rows)
    assert got == fmt
    assert reason.startswith(f"{len(res.rows)}/{len(res.rows)} rows have")
    examples, rows, problems = normalize_rows(res, got)
    assert not problems and len(examples) == len(res.rows)
    for ex in examples:
        if fmt == "completion":
            assert isinstance(ex["text"], str) and ex["text"]
        else:
            assert ex["messages"][-1]["role"] == "assistant" or fmt == "sharegpt"
            assert all(m["role"] in ("system", "user", "assistant", "tool") for m in ex["messages"])


def test_majority_vote_names_the_minority():
    rows = [{"text": "a"}] * 9 + [{"instruction": "q", "output": "a"}]
    fmt, reason = detect_format(rows)
    assert fmt == "completion" and reason.startswith("9/10") and "1 alpaca" in reason


def test_unrecognised_format_lists_fields_and_the_fix():
    with pytest.raises(DataError, match=r"unrecognised format: fields seen question, answer.*set data.format"):
        detect_format([{"question": "q", "answer": "a"}])


def test_sharegpt_tool_roles_are_normalised():
    res = load_rows(FIXTURES / "glaive_toolcall_en_demo.json")
    row = next(r for r in res.rows if any(m["from"] == "observation" for m in r["conversations"]))
    ex = normalize_row(row, "sharegpt")
    froms = [m["from"] for m in row["conversations"]]
    roles = [m["role"] for m in ex["messages"]]
    expected = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}
    assert roles == [expected[f] for f in froms]
    call = ex["messages"][froms.index("function_call")]
    assert '"name"' in call["content"]
    assert ex["tools"][0]["type"] == "function" and "name" in ex["tools"][0]["function"]


def test_alpaca_input_and_system_and_preference_shape():
    ex = normalize_row({"instruction": "Translate", "input": "hola", "output": "hello", "system": "Be brief."},
                       "alpaca")
    assert ex["messages"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Translate\n\nhola"},
                              {"role": "assistant", "content": "hello"}]
    res = load_rows(FIXTURES / "dpo_en_demo.json")
    ex = normalize_row(res.rows[0], "preference")
    assert ex["messages"][-1]["role"] == "assistant"
    assert ex["messages"][-1]["content"] == res.rows[0]["chosen"]["value"]
    assert ex["rejected"]["content"] == res.rows[0]["rejected"]["value"]


@pytest.mark.parametrize("row, fmt, msg", [
    ({"messages": []}, "chat", "empty"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat", "no assistant turn"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "chat", "no 'content'"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}, "chat", "not a string"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "chat", "unknown role"),
    ({"instruction": "q", "output": ""}, "alpaca", "empty"),
    ({"text": None}, "completion", "no content"),
])
def test_unusable_rows_raise_row_errors_that_say_why(row, fmt, msg):
    with pytest.raises(RowError, match=msg):
        normalize_row(row, fmt)
