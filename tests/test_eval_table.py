"""The Runs screen's eval pane: every eval set baseline -> tuned, regressions marked, the
judge's win rate with the path of its verdicts (rendered as text, no app needed)."""
from __future__ import annotations

from rich.console import Console

from tui.widgets.runs.eval_table import judge_text, sets_table

RES = {
    "sets": {
        "test": {"base": {"loss": 1.5, "exact_match": 0.0}, "tuned": {"loss": 0.4, "exact_match": 0.5},
                 "delta": {"loss": -1.1, "exact_match": 0.5}},
        "regression": {"base": {"loss": 9.07}, "tuned": {"loss": 8.97}, "delta": {"loss": -0.1}},
        "refusal": {"base": {"loss": 2.5, "refusal_rate": 1.0}, "tuned": {"loss": 6.0, "refusal_rate": 0.0},
                    "delta": {"loss": 3.5, "refusal_rate": -1.0}},
    },
    "regressions": [{"set": "refusal", "metric": "refusal_rate", "base": 1.0, "tuned": 0.0, "change": -1.0}],
    "judge": {"mode": "pairwise", "model": "judge", "win_rate": 0.75, "judged": 8,
              "verdicts": {"tuned": 6, "base": 2}, "path": "/runs/r/eval/judge.jsonl"},
}


def _text(renderable) -> str:
    c = Console(width=120, record=True)
    c.print(renderable)
    return c.export_text()


def test_sets_table_shows_each_set_and_marks_the_regression():
    text = _text(sets_table(RES))
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in text.splitlines() if ln.strip() and len(ln.split()) > 2}
    assert "REGRESSION" in lines["refusal refusal"] and "1.0000" in lines["refusal refusal"]
    assert "REGRESSION" not in lines["regression loss"] and "9.0700" in lines["regression loss"]
    assert "exact" in lines["test exact"]


def test_judge_line_has_the_win_rate_and_the_verdicts_path():
    text = _text(judge_text(RES))
    assert "fine-tuned wins 75%" in text and "tuned 6, base 2" in text and "/runs/r/eval/judge.jsonl" in text
    assert "skipped" in _text(judge_text({"judge": {"skipped": "no judge configured; judging skipped"}}))
    assert sets_table({"sets": {"test": {}}}) is None


def test_a_regression_warning_event_becomes_an_alert():
    from tui.services.run_state import RunState

    st = RunState()
    st.apply({"type": "warning", "kind": "regression", "set": "refusal", "metric": "refusal_rate",
              "message": "regression on eval set refusal: refusal_rate fell 1.000 -> 0.000"})
    _, alerts = st.drain()
    assert [(a.kind, a.severity, a.title) for a in alerts] == [("regression", "warning", "Regression on an eval set")]
    assert "refusal_rate fell" in alerts[0].message
