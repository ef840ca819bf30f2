"""Checks across the pairs of a preference dataset (one pair alone: checks_chat).

A rejected answer that is another row's chosen answer teaches the model to push down
an answer it is also taught to prefer; a side that is always longer teaches length
rather than quality (DPO is known to learn that bias). Rows are read through the
normaliser, so every layout the trainer accepts is checked the same way.
"""
from __future__ import annotations

from engine.data.checks import Finding, make

RATIO = 4.0          # one side this many times longer than the other (in characters) ...
MIN_DIFF = 40        # ... and at least this many characters longer: a per-row warning
BIAS_SHARE = 0.9     # chosen longer (or shorter) in this share of the pairs: a dataset warning
BIAS_MIN_PAIRS = 20


def _answers(rows: list[dict]) -> dict[int, tuple[str, str]]:
    from engine.data.errors import RowError
    from engine.data.normalize import normalize_row

    out = {}
    for i, row in enumerate(rows):
        try:
            ex = normalize_row(row, "preference")
        except RowError:
            continue  # checks_chat reports why
        out[i] = (ex["messages"][-1]["content"].strip(), ex["rejected"]["content"].strip())
    return out


def check_rows(rows: list[dict], lines: list[int | None], fmt: str) -> list[Finding]:
    if fmt != "preference":
        return []
    answers = _answers(rows)
    out: list[Finding] = []
    chosen_at: dict[str, int] = {}
    for i, (c, _r) in answers.items():
        chosen_at.setdefault(c, i)
    longer = shorter = 0
    for i, (c, r) in answers.items():
        j = chosen_at.get(r)
        if r and j is not None and j != i:
            out.append(make("rejected_is_other_chosen", i, lines[i],
                            f"the rejected answer is the chosen answer of row {j}", field="rejected"))
        lc, lr = len(c), len(r)
        if lc and lr and max(lc, lr) >= RATIO * min(lc, lr) and abs(lc - lr) >= MIN_DIFF:
            side = "chosen" if lc > lr else "rejected"
            out.append(make("length_imbalance", i, lines[i],
                            f"the {side} answer is {max(lc, lr) / min(lc, lr):.1f}x longer "
                            f"({lc} vs {lr} characters)", field=side))
        longer += lc > lr
        shorter += lc < lr
    n = len(answers)
    if n >= BIAS_MIN_PAIRS:
        for count, word in ((longer, "longer"), (shorter, "shorter")):
            if count >= BIAS_SHARE * n:
                out.append(make("length_imbalance", -1, None,
                                f"the chosen answer is {word} than the rejected one in {count} of {n} pairs: "
                                "a preference objective may learn length instead of quality"))
    return out
