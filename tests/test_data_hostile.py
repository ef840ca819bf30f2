"""Hostile data: one clear message per bad row, never a traceback, bounded time; and data
check and training agree on what is usable (one reader, one normaliser)."""
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_fixtures import make_tokenizer
from engine.config import RunConfig
from engine.data.checks import CHECKS, run_checks
from engine.data.errors import RowError
from engine.data.normalize import normalize_row
from engine.data.prepare import prepare
from engine.data.sources import load_examples, read, specs

ROOT = Path(__file__).resolve().parents[1]


def good(i):
    return {"messages": [{"role": "user", "content": f"question {i} about the colour of ripe fruit {i * 7}"},
                         {"role": "assistant", "content": f"answer {i}: ripe fruit {i * 3} is often red or yellow"}]}


def long_row(turns):
    msgs = []
    for i in range(turns // 2):
        msgs += [{"role": "human", "content": f"u{i} hello"}, {"role": "bot", "content": f"a{i} hi"}]
    return {"messages": msgs}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """20 good rows, and between them: a lone surrogate, 200,000 nested [ (a bare line and
    inside a row), a 10,000-turn row with human/bot roles."""
    d = tmp_path_factory.mktemp("hostile")
    lines = [json.dumps(good(i)) for i in range(20)]
    lines.insert(3, '{"messages": [{"role": "user", "content": "bad \\ud800 here"}, '
                    '{"role": "assistant", "content": "x"}]}')
    lines.insert(5, "[" * 200_000 + "]" * 200_000)
    lines.insert(7, '{"text": ' + "[" * 200_000 + "]" * 200_000 + "}")
    lines.append(json.dumps(long_row(10_000)))
    p = d / "hostile.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_data_check_reports_each_hostile_row_once_without_a_traceback(hostile):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tui.main", "data", "check", str(hostile), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    assert "Traceback" not in p.stderr and p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    assert sorted((f["line"], f["check"]) for f in errors) == [(4, "invalid_unicode"), (6, "invalid_json"),
                                                               (8, "invalid_json")]
    assert all("nested more than 100 levels" in f["message"] for f in errors if f["check"] == "invalid_json")
    assert "U+D800" in next(f["message"] for f in errors if f["line"] == 4)
    assert doc["rows"] == 22 and took < 60


def test_training_preparation_uses_the_same_rows_and_stays_bounded(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("FTWB_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig()
    cfg.data.path, cfg.data.max_seq_len, cfg.data.val_split = str(hostile), 128, 0.0
    events = []
    t0 = time.perf_counter()
    prep = prepare(cfg, make_tokenizer("chatml"), emit=lambda t, **f: events.append((t, f)))
    took = time.perf_counter() - t0
    # The 20 good rows and the long human/bot one train; the three hostile rows are refused, by line.
    assert len(prep.train) == 21 and took < 60
    assert sorted(p.line for p in prep.problems) == [4, 6, 8]
    cut = [f["message"] for t, f in events if t == "log" and "were cut before tokenising" in f["message"]]
    assert cut and cut[0].startswith("1 conversations")
    long_item = next(it for it in prep.train if it["row"] == 21)
    assert len(long_item["input_ids"]) == 128  # truncated to max_seq_len, as without the cut


def test_turn_count_costs_linear_time_in_check_and_normaliser():
    def cost(turns):
        row = long_row(turns)
        t0 = time.perf_counter()
        normalize_row(row, "chat")
        run_checks([row], None, "chat", near_dup=False)
        return time.perf_counter() - t0

    cost(1000)  # warm up
    small, big = cost(2_500), cost(10_000)
    assert big < 10 and big / max(small, 1e-3) < 8  # 4x the turns: about 4x the time, never 16x


def test_a_json_array_in_a_jsonl_file_is_read_and_said(tmp_path):
    p = tmp_path / "array.jsonl"
    p.write_text("[\n" + ",\n".join(json.dumps(good(i)) for i in range(12)) + "\n]\n")
    src = read(specs(SimpleNamespace(path=str(p), format="auto", columns={}, roles={}, split=None,
                                     text_documents="file"))[0])
    assert len(src.rows) == 12 and not src.problems and src.fmt == "chat"
    assert "holds one JSON array, not one object per line" in src.notes[0]


def test_a_one_row_dataset_is_said_alike_by_check_and_training(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWB_CACHE_DIR", str(tmp_path / "cache"))
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps(good(1)) + "\n")
    found = [f for f in run_checks([good(1)], [1], "chat") if f.check == "too_few_rows"]
    cfg = RunConfig()
    cfg.data.path, cfg.data.val_split = str(p), 0.0
    events = []
    prepare(cfg, make_tokenizer("chatml"), emit=lambda t, **f: events.append((t, f)))
    warned = [f["message"] for t, f in events if t == "warning" and f["kind"] == "too_few_rows"]
    assert found and warned == [found[0].message]


def test_human_and_bot_roles_are_usable_in_check_and_training(tmp_path):
    rows = [{"messages": [{"role": "human", "content": f"hello {i} there friend"},
                          {"role": "bot", "content": f"hi {i}, how can I help today"}]} for i in range(12)]
    p = tmp_path / "hb.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mixed = load_examples(SimpleNamespace(path=str(p), format="auto", columns={}, roles={}, split=None,
                                          text_documents="file"))
    assert len(mixed.examples) == 12
    assert not [f for f in run_checks(rows, None, "chat") if f.severity == "error"]


# ---------------------------------------------------------------- property: check and normaliser agree

_text = st.one_of(st.none(), st.integers(), st.text(max_size=6), st.just(""), st.just("\ud800"),
                  st.lists(st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=4)}),
                                     st.fixed_dictionaries({"type": st.just("text"), "value": st.text(max_size=4)}),
                                     st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.just("u")})),
                           max_size=2))
_role = st.sampled_from(["user", "assistant", "system", "tool", "human", "gpt", "bot", "wizard", "", None])
_turn = st.one_of(st.fixed_dictionaries({"role": _role, "content": _text}),
                  st.fixed_dictionaries({"from": _role, "value": _text}),
                  st.fixed_dictionaries({"content": _text}), st.integers())
_row = st.one_of(
    st.fixed_dictionaries({"messages": st.one_of(st.lists(_turn, max_size=4), st.text(max_size=3), st.none())}),
    st.fixed_dictionaries({"conversations": st.lists(_turn, max_size=4)}),
    st.fixed_dictionaries({"instruction": _text, "output": _text}),
    st.fixed_dictionaries({"prompt": _text, "chosen": st.one_of(_text, _turn), "rejected": st.one_of(_text, _turn)}),
    st.fixed_dictionaries({"text": _text}),
    st.fixed_dictionaries({"prompt": _text, "completion": _text, "label": st.sampled_from([True, False, "true", 1])}),
    st.fixed_dictionaries({"messages": st.lists(_turn, max_size=3), "label": st.booleans()}),
    st.fixed_dictionaries({"chosen": st.one_of(_text, st.lists(_turn, max_size=3)),
                           "rejected": st.one_of(_text, st.lists(_turn, max_size=3))}),
    st.fixed_dictionaries({"messages": st.lists(_turn, max_size=3), "images": st.sampled_from([[], ["a.png"]])}),
)
_STRUCTURE_ERRORS = {c for c, info in CHECKS.items() if info.severity == "error"} - {
    "invalid_json", "secret_aws_key", "secret_private_key", "secret_token", "train_val_leak", "too_few_rows"}


@settings(max_examples=600, deadline=None)
@given(row=_row, fmt=st.sampled_from(["chat", "sharegpt", "alpaca", "preference", "completion", "kto", "text"]))
def test_a_row_is_usable_in_training_exactly_when_data_check_finds_no_structure_error(row, fmt):
    try:
        normalize_row(row, fmt)
        usable = True
    except RowError:
        usable = False
    errors = [f for f in run_checks([row], [1], fmt, near_dup=False) if f.check in _STRUCTURE_ERRORS]
    assert usable == (not errors), (row, fmt, [(f.check, f.message) for f in errors])
    assert len({f.message for f in errors}) == len(errors)  # never the same message twice
