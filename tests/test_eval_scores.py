"""Generation scores: exact match, JSON validity, field accuracy, ROUGE-L (pure Python)."""
from __future__ import annotations

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import ftwb

from engine.evaluate import scores
from engine.serve import BadRequest, parse_request
from tui.screens.playground import parse_settings


def test_exact_match_ignores_whitespace_differences_only():
    assert scores.exact_match("  a  b\n c ", "a b c")
    assert not scores.exact_match("a b c", "a b C")


def test_json_validity_accepts_a_fenced_object_and_rejects_trailing_text():
    assert scores.parse_json('```json\n{"a": 1}\n```') == (True, {"a": 1})
    assert scores.parse_json('{"a": 1} and more')[0] is False
    assert scores.is_json_reference('{"a": 1}')
    assert not scores.is_json_reference("plain words")
    assert not scores.is_json_reference("42")  # a bare number is not a structured answer


def test_field_accuracy_counts_reference_keys_with_matching_values():
    ref = {"category": "returns", "priority": "high", "order_id": None, "needs_human": False}
    pred = {"category": "returns", "priority": "low", "order_id": None, "needs_human": 0, "extra": 1}
    # needs_human: 0 is not false (booleans must match as booleans); extra keys cost nothing
    assert scores.field_accuracy(pred, ref) == pytest.approx(2 / 4)
    assert scores.field_accuracy("not an object", ref) == 0.0
    assert scores.field_accuracy({"a": 1}, [1, 2]) is None


def test_rouge_l_matches_hand_computed_lcs_f1():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5; P = 5/6, R = 5/5
    p, r = 5 / 6, 1.0
    assert scores.rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2 * p * r / (p + r))
    assert scores.rouge_l("", "") == 1.0
    assert scores.rouge_l("x", "") == 0.0
    assert scores.rouge_l("a b c", "c b a") == pytest.approx(1 / 3)
    assert scores.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4


def test_score_one_and_aggregate_average_each_metric_over_samples_that_have_it():
    ref = '{"a": 1, "b": "x"}'
    good = scores.score_one('{"b": "x", "a": 1}', ref, json_ref=True)
    bad = scores.score_one("no json here", ref, json_ref=True)
    assert good["json_valid"] and good["field_accuracy"] == 1.0 and not good["exact_match"]
    assert bad["json_valid"] is False and bad["field_accuracy"] == 0.0
    agg = scores.aggregate([good, bad])
    assert agg["json_valid"] == 0.5 and agg["field_accuracy"] == 0.5 and agg["exact_match"] == 0.0
    text = scores.score_one("hello world", "hello world", json_ref=False)
    assert text == {"exact_match": True, "rouge_l": 1.0}


def test_serve_requests_are_validated_with_field_named_messages():
    ok = parse_request({"id": 3, "messages": [{"role": "user", "content": "hi"}], "which": "tuned",
                        "temperature": 0.5, "top_p": 0.9, "max_new_tokens": 10})
    assert ok["which"] == "tuned" and ok["max_new_tokens"] == 10
    for bad, field in (({"messages": []}, "messages"), ({"messages": [{"role": "user"}]}, "messages[0]"),
                       ({"messages": [{"role": "user", "content": "x"}], "which": "all"}, "which"),
                       ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
                       ({"messages": [{"role": "user", "content": "x"}], "max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(BadRequest, match=field.replace("[", r"\[").replace("]", r"\]")):
            parse_request(bad)


def test_playground_settings_reject_out_of_range_values_with_a_message():
    ok, problem = parse_settings({"temperature": "0.7", "top_p": "0.9", "max_new_tokens": "64"})
    assert problem is None and ok == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64}
    for values in ({"temperature": "9", "top_p": "1", "max_new_tokens": "5"},
                   {"temperature": "0", "top_p": "0", "max_new_tokens": "5"},
                   {"temperature": "0", "top_p": "1", "max_new_tokens": "1.5"}):
        settings, problem = parse_settings(values)
        assert settings == {} and problem


def test_cli_eval_bad_input_exits_2_with_one_line(tmp_path):
    missing = ftwb("eval", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    C.save(C.RunConfig(), tmp_path / rundir.CONFIG)
    no_adapter = ftwb("eval", str(tmp_path))
    assert no_adapter.returncode == 2 and "no trained adapter" in no_adapter.stderr
    assert "Traceback" not in no_adapter.stderr and len(no_adapter.stderr.strip().splitlines()) == 1
    bad_n = ftwb("eval", str(tmp_path), "--max-samples", "0")
    assert bad_n.returncode == 2 and "--max-samples" in bad_n.stderr
