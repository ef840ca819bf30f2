"""prepare(): from a config to tokenised splits, events and data.json contents; and the split."""
import json

import pytest

from data_fixtures import make_tokenizer
from engine.config import RunConfig
from engine.data.errors import DataError
from engine.data.prepare import prepare
from engine.data.split import split_indices


def chat_file(tmp_path, n=30, bad_line=None):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                      {"role": "assistant", "content": f"It is {2 * i}."}]})
             for i in range(n)]
    if bad_line is not None:
        lines.insert(bad_line - 1, '{"messages": [{"role": "user", "content": "broken"}')
    p = tmp_path / "chat.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def config(path, **data):
    cfg = RunConfig()
    cfg.data.path = str(path)
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWB_CACHE_DIR", str(tmp_path / "cache"))


def test_prepare_end_to_end_reports_the_bad_row_by_line(tmp_path):
    path = chat_file(tmp_path, n=30, bad_line=17)
    events = []
    tok = make_tokenizer("chatml")
    prep = prepare(config(path, val_split=0.1, test_split=0.1), tok, emit=lambda t, **f: events.append((t, f)))
    assert prep.fmt == "chat" and prep.fmt_reason.startswith("30/30")
    assert len(prep.train) + len(prep.val) + len(prep.test) == 30
    assert len(prep.val) == 3 and len(prep.test) == 3 and len(prep.test_examples) == 3
    assert len(prep.val_examples) == 3 and prep.val_examples[0]["messages"][-1]["role"] == "assistant"
    assert prep.problems[0].line == 17 and "line 17: not valid JSON" in prep.problems[0].message
    data_events = [f for t, f in events if t == "data"]
    assert len(data_events) == 1
    ev = data_events[0]
    assert ev["rows"] == 30 and ev["format"] == "chat" and ev["problems"] == 1
    assert ev["first_problems"][0]["line"] == 17
    for item in prep.train:
        assert len(item["input_ids"]) == len(item["labels"]) and any(x != -100 for x in item["labels"])
    info = prep.data_info
    assert info["source"] == str(path.resolve()) and len(info["content_hash"]) == 64
    assert info["splits"] == {"train": 24, "val": 3, "test": 3} and info["rows_total"] == 31
    assert info["rows_usable"] == 30 and info["problems"] == 1 and info["version"] is None
    json.dumps(info)  # goes to data.json as is
    # same split and same tokens a second time, now from the cache
    again = prepare(config(path, val_split=0.1, test_split=0.1), tok)
    assert again.stats["cache"] == "hit"
    assert [i["row"] for i in again.val] == [i["row"] for i in prep.val]


def test_truncation_emits_a_warning(tmp_path):
    p = tmp_path / "long.jsonl"
    p.write_text("\n".join(json.dumps({"instruction": "Hi", "output": "word " * 60})
                           for _ in range(5)))
    events = []
    prep = prepare(config(p, max_seq_len=48, val_split=0.0), make_tokenizer("llama3"),
                   emit=lambda t, **f: events.append((t, f)))
    assert prep.fmt == "alpaca" and prep.stats["truncated"] == 5
    warnings = [f for t, f in events if t == "warning" and f["kind"] == "truncation"]
    assert warnings and "5 examples truncated" in warnings[0]["message"]


def test_no_usable_rows_names_the_file_and_the_lines(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n'
                 '{"messages": [{"role": "user", "content": "again"}]}\n')
    with pytest.raises(DataError) as e:
        prepare(config(p), make_tokenizer("chatml"))
    msg = str(e.value)
    assert str(p.resolve()) in msg and "line 1:" in msg and "no assistant turn" in msg


def test_manifest_beside_a_dataset_version_is_recorded(tmp_path):
    path = chat_file(tmp_path, n=10)
    (tmp_path / "chat.jsonl.manifest.json").write_text(json.dumps(
        {"version": "v2", "operations": [{"op": "dedup", "removed": 3}]}))
    prep = prepare(config(path), make_tokenizer("chatml"))
    assert prep.data_info["version"] == "v2" and prep.data_info["operations"][0]["op"] == "dedup"


def test_split_is_deterministic_and_keeps_at_least_one_val_example():
    a = split_indices(100, 0.1, 0.05, seed=7)
    assert a == split_indices(100, 0.1, 0.05, seed=7)
    assert a != split_indices(100, 0.1, 0.05, seed=8)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (85, 10, 5)
    assert sorted(a["train"] + a["val"] + a["test"]) == list(range(100))
    assert len(split_indices(5, 0.01, 0.0, seed=1)["val"]) == 1
    assert split_indices(1, 0.1, 0.0, seed=1) == {"train": [0], "val": [], "test": []}


def test_stratified_split_keeps_label_proportions():
    labels = ["chat"] * 90 + ["tool"] * 10
    s = split_indices(100, 0.2, 0.1, seed=0, stratify=labels)
    assert sum(labels[i] == "tool" for i in s["val"]) == 2
    assert sum(labels[i] == "tool" for i in s["test"]) == 1
    assert len(s["val"]) == 20 and len(s["test"]) == 10
