"""Checks that need the model's tokenizer and chat template: what training will really do
with each conversation (`ftwb data check --model`, and the Data screen's token view).

template_refused        the template raises on the row (its own reason); training drops it
template_mostly_refused more than half of the rows refused: an error before training
special_text_in_content a special-token string inside content; it is trained as text
end_of_turn_not_trained the render closes an assistant turn with nothing the loss can learn
                        to stop on
reasoning_stripped      the template renders earlier assistant turns differently (strips
                        their reasoning); the turn policy in effect says what trains
template_mismatch       the example's ids are not the tokenizer's ids of the template's
                        own render (a bug guard: it should never fire)
"""
from __future__ import annotations

from typing import Any

from engine.data.checks import make
from engine.data.errors import DataError, RowError


def template_findings(rows: list[Any], lines: list[int | None], fmt: str, tokenizer: Any,
                      turn_policy: str = "auto", train_on: str = "assistant") -> list:
    out, refused, usable = template_rows(rows, lines, fmt, tokenizer, turn_policy, train_on)
    return out + mostly_refused(refused, usable)


def mostly_refused(refused: int, usable: int) -> list:
    """The dataset-wide finding when the template refuses more than half the usable rows."""
    if usable and refused * 2 > usable:
        return [make("template_mostly_refused", -1, None,
                     f"the chat template refuses {refused} of {usable} rows; training would stop before it "
                     "starts; use a template that fits these conversations (model.chat_template) or fix them")]
    return []


def template_rows(rows: list[Any], lines: list[int | None], fmt: str, tokenizer: Any,
                  turn_policy: str = "auto", train_on: str = "assistant", start: int = 0) -> tuple[list, int, int]:
    """(per-row findings, rows refused, usable rows) for rows numbered from `start`."""
    from engine.data.normalize import normalize_row
    from engine.data.template import plan_row, tokenize_plans

    if fmt not in ("chat", "sharegpt", "alpaca"):
        return [], 0, 0
    out, refused, usable = [], 0, 0
    for k, row in enumerate(rows):
        i = start + k
        try:
            ex = normalize_row(row, fmt)
        except (RowError, DataError):
            continue  # the structure checks already report the row
        usable += 1
        try:
            plans = plan_row(tokenizer, ex, train_on, turn_policy)
        except RowError as e:
            refused += 1
            out.append(make("template_refused", i, lines[k], f"dropped from training: {e}"))
            continue
        literal = sorted({p.text[s:e] for p in plans for s, e in p.literal})
        if literal:
            out.append(make("special_text_in_content", i, lines[k],
                            f"special-token text in content, trained as plain text: {', '.join(literal)}"))
        notes = list(dict.fromkeys(n for p in plans for n in p.notes))
        for note in notes:
            check = "end_of_turn_not_trained" if note.startswith("end-of-turn") else "reasoning_stripped"
            out.append(make(check, i, lines[k], note))
        kwargs = {"tools": ex["tools"]} if ex.get("tools") else {}
        turns = [k for k, m in enumerate(ex["messages"]) if m["role"] == "assistant"]
        for t in tokenize_plans(tokenizer, plans):
            upto = (t.plan.turn if t.plan.turn is not None else turns[-1]) + 1
            try:
                render = tokenizer.apply_chat_template(ex["messages"][:upto], tokenize=False, **kwargs)
            except Exception:  # noqa: BLE001 (plan_row rendered it; a second failure is the template's)
                render = None
            same = render == t.plan.text and (
                t.plan.literal or t.input_ids == tokenizer(render, add_special_tokens=False)["input_ids"])
            if not same:
                out.append(make("template_mismatch", i, lines[k], "the masked sequence differs from the "
                                "template's own render; please report this row"))
                break
    return out, refused, usable
