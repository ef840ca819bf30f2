"""Structure checks on conversation rows: every defect found where it is, clean rows left alone."""
import json
from pathlib import Path

from engine.data.checks import CHECKS, counts, run_checks

FIX = Path(__file__).parent / "fixtures" / "checks" / "chat_defects.jsonl"


def _rows():
    return [json.loads(line) for line in FIX.read_text().splitlines()]


def _by_row(findings):
    out = {}
    for f in findings:
        out.setdefault(f.row, set()).add(f.check)
    return out


def test_each_chat_defect_is_reported_on_its_row():
    rows = _rows()
    by = _by_row(run_checks(rows, list(range(1, len(rows) + 1)), "chat", near_dup=False))
    assert 0 not in by                      # clean row
    assert "empty_assistant" in by[1]
    assert {"no_assistant", "last_not_assistant"} <= by[2]
    assert "missing_content" in by[3]
    assert "unknown_role" in by[4]
    assert "system_not_first" in by[5]
    assert "non_string_content" in by[6]
    assert "role_order" in by[7]
    assert "tool_without_call" in by[8]
    assert "missing_role" in by[9]
    assert "missing_messages" in by[10] and "missing_messages" in by[11]
    assert 12 not in by                     # a list of content parts is fine
    assert 13 not in by                     # tool result after a real tool call is fine


def test_findings_carry_line_severity_and_field():
    rows = _rows()
    f = next(x for x in run_checks(rows, list(range(1, len(rows) + 1)), "chat") if x.check == "unknown_role")
    assert (f.row, f.line, f.severity, f.field) == (4, 5, "error", "messages[1].role")
    assert f.to_dict()["check"] == "unknown_role"


def test_sharegpt_roles_and_function_calls_are_understood():
    conv = [{"from": "human", "value": "find a recipe"},
            {"from": "function_call", "value": "{\"name\": \"search\"}"},
            {"from": "observation", "value": "{\"r\": 1}"},
            {"from": "gpt", "value": "Here is one."}]
    rows = [{"conversations": conv}, {"conversations": [{"from": "human", "value": "x"}, {"from": "observation", "value": "y"}]}]
    by = _by_row(run_checks(rows, None, "sharegpt", near_dup=False, only=set(CHECKS) - {"too_few_rows"}))
    assert 0 not in by
    assert {"tool_without_call", "no_assistant"} <= by[1]


def test_preference_rows_checked_for_identical_and_empty_answers():
    rows = [{"prompt": "p", "chosen": "same", "rejected": "same"},
            {"prompt": "p", "chosen": "", "rejected": "b"},
            {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
             "rejected": {"from": "gpt", "value": "bad"}}]
    by = _by_row(run_checks(rows, None, "preference", near_dup=False))
    assert "chosen_equals_rejected" in by[0]
    assert "empty_assistant" in by[1]
    assert 2 not in by or by[2] == set()


def test_too_few_rows_and_counts_order_errors_first():
    rows = _rows()
    fs = run_checks(rows, None, "chat")
    tf = [f for f in fs if f.check == "too_few_rows"]
    assert len(tf) == 1 and tf[0].row == -1
    c = counts(fs)
    sev = [CHECKS[k].severity for k in c]
    assert sev == sorted(sev)  # "error" < "warning"
    assert sum(c.values()) == len(fs)


def test_every_registered_check_has_description_and_severity():
    assert len(CHECKS) >= 31
    for cid, info in CHECKS.items():
        assert info.id == cid and info.severity in ("error", "warning") and info.description
