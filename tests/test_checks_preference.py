"""`ftwb data check` on preference pairs: chosen == rejected, empty sides, a rejected answer
that is another row's chosen answer, and length imbalance, with the stated messages."""
from __future__ import annotations

import json

from engine.data.checks import run_checks


def _pair(prompt, chosen, rejected):
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _found(rows):
    return [(f.check, f.row, f.message) for f in run_checks(rows, [i + 1 for i in range(len(rows))], "preference",
                                                             near_dup=False)]


def test_pair_problems_are_reported_with_the_row():
    rows = [
        _pair("What is 2+2?", "4", "5"),
        _pair("Capital of France?", "Paris", "Paris"),                       # chosen == rejected
        _pair("Capital of Spain?", "Madrid", ""),                            # empty rejected side
        _pair("What is 3+1?", "4 as well", "4"),                             # rejected = row 0's chosen
        _pair("Describe the sea.", "Blue and wide, with waves that roll in from far away and never stop.",
              "Wet."),                                                       # 4x longer and 40+ chars more
    ]
    found = _found(rows)
    checks = {(c, r) for c, r, _ in found}
    assert ("chosen_equals_rejected", 1) in checks
    assert ("empty_assistant", 2) in checks or ("unusable", 2) in checks
    msg = next(m for c, r, m in found if c == "rejected_is_other_chosen")
    assert msg == "the rejected answer is the chosen answer of row 0"
    imb = next((r, m) for c, r, m in found if c == "length_imbalance")
    assert imb[0] == 4 and imb[1].startswith("the chosen answer is") and "x longer" in imb[1]


def test_chosen_always_longer_is_a_dataset_warning(tmp_path):
    rows = [_pair(f"question {i}", f"a long and careful answer number {i}", f"short {i}") for i in range(30)]
    found = _found(rows)
    bias = [m for c, r, m in found if c == "length_imbalance" and r == -1]
    assert bias and "longer than the rejected one in 30 of 30 pairs" in bias[0]


def test_the_demo_preference_set_has_no_errors():
    from engine.demo import demo_preference_path

    rows = [json.loads(line) for line in demo_preference_path().read_text().splitlines()]
    found = run_checks(rows, None, "preference", near_dup=False)
    assert not [f for f in found if f.severity == "error"]
    assert not [f for f in found if f.check == "length_imbalance" and f.row == -1]
