"""Every real chat template in the llama.cpp corpus x conversations that break naive masks.

Asserted generically, for each template and case, against the template itself
(`apply_chat_template`) and the tokenizer itself, never against the engine's own logic:
- render equality: each example's text is a real render of the conversation (or of its
  prefix up to the trained turn) and its ids are the tokenizer's ids of that text;
- the trained tokens are the assistant's answer (with its reasoning and tool calls where
  the render shows them) and the end-of-turn that closes it: no user, system or tool
  text, no headers;
- content stays text: special-token strings inside messages never become control tokens.
A template may refuse a conversation (its own raise_exception); that is recorded, and
the row is dropped with the template's reason.
"""
from __future__ import annotations

import json
import re

import pytest

from engine.data.errors import RowError
from engine.data.normalize import normalize_row
from engine.data.template import END_OF_TURN, IGNORE, plan_row, tokenize_plans
from realworld import realworld  # noqa: F401  (fixture)

SYSTEM = "Zebrafish policy applies."
USER1, USER2 = "Quokka question one?", "Quokka question two?"
ANS1, ANS2 = "Alpha answer Four.", "Bravo answer Three."
THINK1, THINK2 = "ponder Kestrel", "ponder Osprey"
TOOL_RESULT = '{"temp_c": 21, "sky": "Narwhal clear"}'
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
NOT_TRAINED = ("Zebrafish", "Quokka", "Narwhal", "get_weather for a city")


def _tool_row(arguments) -> dict:
    return {"tools": TOOLS, "messages": [
        {"role": "user", "content": USER1},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": TOOL_RESULT},
        {"role": "assistant", "content": ANS2},
    ]}


def cases(literal: str) -> dict[str, dict]:
    return {
        "multi_turn": {"messages": [{"role": "user", "content": USER1}, {"role": "assistant", "content": ANS1},
                                    {"role": "user", "content": USER2}, {"role": "assistant", "content": ANS2}]},
        "system": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER1},
                                {"role": "assistant", "content": ANS1}, {"role": "user", "content": USER2},
                                {"role": "assistant", "content": ANS2}]},
        "reasoning": {"messages": [
            {"role": "user", "content": USER1},
            {"role": "assistant", "content": f"<think>\n{THINK1}\n</think>\n\n{ANS1}"},
            {"role": "user", "content": USER2},
            {"role": "assistant", "content": f"<think>\n{THINK2}\n</think>\n\n{ANS2}"}]},
        "assistant_first": {"messages": [{"role": "assistant", "content": ANS1},
                                         {"role": "user", "content": USER2},
                                         {"role": "assistant", "content": ANS2}]},
        "tools_object": _tool_row({"city": "Paris"}),
        "tools_string": _tool_row(json.dumps({"city": "Paris"})),
        "special_literal": {"messages": [
            {"role": "user", "content": f"{USER1} Is {literal} a marker?"},
            {"role": "assistant", "content": f"{ANS1} Yes, {literal} ends a turn."},
            {"role": "user", "content": USER2}, {"role": "assistant", "content": ANS2}]},
    }


def _eots(tok) -> list[str]:
    """Known end-of-turn strings, and the text this template writes right after an answer."""
    try:
        probe = tok.apply_chat_template([{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hey you"}], tokenize=False)
    except Exception:  # a template that needs more (tools) has no probe
        probe = ""
    after = probe[probe.rfind("Hey you") + len("Hey you"):].strip().split("\n")[0].strip()
    return sorted({*END_OF_TURN, tok.eos_token or "</s>", *([after] if after else [])}, key=len, reverse=True)


def _specials(tok) -> set[str]:
    out = set(tok.all_special_tokens)
    out.update(str(t) for t in tok.added_tokens_decoder.values() if getattr(t, "special", False))
    return out


def _literal_for(tok) -> str:
    """A control token of this template written as text inside content."""
    specials = _specials(tok)
    for s in _eots(tok):
        if s in specials and s in (tok.chat_template or ""):
            return s
    return next((s for s in specials if s and s in (tok.chat_template or "")), tok.eos_token or "</s>")


def _runs(tok, ids, labels) -> list[str]:
    out, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            out.append(tok.decode(cur))
            cur = []
    if cur:
        out.append(tok.decode(cur))
    return out


def _special_id_counts(tok, ids) -> dict[int, int]:
    special = {tok.convert_tokens_to_ids(t) for t in _specials(tok)}
    counts: dict[int, int] = {}
    for i in ids:
        if i in special:
            counts[i] = counts.get(i, 0) + 1
    return counts


def _try(tok, msgs, kwargs):
    try:
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception:
        return None


def _run_starts(tok, text, ids, labels) -> list[tuple[int, int]]:
    """(start of the last untrained token, start of the first trained token) of each run, in
    characters of the render, from the tokenizer's own offsets."""
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out = []
    for j, lab in enumerate(labels):
        if lab != IGNORE and (j == 0 or labels[j - 1] == IGNORE):
            out.append((offsets[j - 1][0] if j else -1, offsets[j][0]))
    return out


def check_case(tok, case: str, row: dict, literal: str) -> str:
    """'ok', 'refused: <template's reason>', or raises AssertionError naming the problem."""
    ex = normalize_row(row, "chat")
    msgs, tools = ex["messages"], ex.get("tools")
    try:
        plans = plan_row(tok, ex)
    except RowError as e:
        assert "chat template" in str(e), str(e)
        return "refused: " + str(e).split("(", 1)[-1].rstrip(")")[:80]
    turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    trained_turns, no_eot = [], []
    for tk in tokenize_plans(tok, plans):
        plan, ids, labels = tk.plan, tk.input_ids, tk.labels
        upto = (plan.turn if plan.turn is not None else turns[-1]) + 1
        kwargs = {"tools": tools} if tools else {}
        reference = tok.apply_chat_template(msgs[:upto], tokenize=False, **kwargs)
        assert plan.text == reference, "the example is not the template's render"
        if case != "special_literal":
            assert ids == tok(reference, add_special_tokens=False)["input_ids"], "ids differ from the tokenizer's"
        else:  # the literals are text: as many control tokens as in a render without them
            clean = [dict(m, content=(m["content"] or "").replace(literal, "(x)")) for m in msgs[:upto]]
            plain = tok(tok.apply_chat_template(clean, tokenize=False, **kwargs), add_special_tokens=False)
            assert _special_id_counts(tok, ids) == _special_id_counts(tok, plain["input_ids"]), \
                "a special-token string inside content became a control token"
        these = [plan.turn] if plan.turn is not None else turns
        trained_turns += these
        runs = _runs(tok, ids, labels)
        assert len(runs) == len(these), f"{len(runs)} trained stretches for {len(these)} assistant turns: {runs}"
        starts = (_run_starts(tok, plan.text, ids, labels) if case != "special_literal"
                  else [(a - 1, a) for a, _b in sorted(plan.spans)])  # ids differ from tok(render) here
        for run, i, start in zip(runs, these, starts):
            # Where the context plus generation prompt renders as a prefix, training starts
            # exactly where the model is asked to answer.
            context = _try(tok, msgs[:i], kwargs)
            at_prompt = bool(context) and plan.text.startswith(context) and start is not None
            if at_prompt:
                assert start[0] < len(context) <= start[1], \
                    f"turn {i} training starts at {start[1]}, the generation prompt ends at {len(context)}"
            for word in NOT_TRAINED:
                assert word not in run, f"{word!r} (not assistant text) is trained: {run!r}"
            assert not re.search(r"\b(user|system)\b", run.replace(literal, "")) or case == "special_literal", \
                f"a role header is trained: {run!r}"
            eot = next((e for e in _eots(tok) if run.rstrip().endswith(e)), None)
            flagged = any(n.startswith("end-of-turn not trained") for n in plan.notes)
            if not eot and flagged:
                no_eot.append(i)  # the render has nothing that closes this turn; the row is flagged
                eot = ""
            assert eot is not None, f"turn {i} does not end with its end-of-turn token: {run!r}"
            content = msgs[i]["content"] or ""
            answer = content.split("</think>")[-1].strip()
            if answer:
                assert answer in run, f"turn {i}'s answer {answer!r} is not trained: {run!r}"
            if msgs[i].get("tool_calls"):
                assert "Paris" in run and "get_weather" in run, f"the tool call is not trained: {run!r}"
                assert '\\"city\\"' not in run, f"arguments encoded twice: {run!r}"
            elif not at_prompt:  # nothing but the answer, its reasoning, tags, control tokens, end-of-turn
                rest = run.replace(answer, "", 1)
                for piece in (THINK1, THINK2, "<think>", "</think>", *([eot] if eot else []), *sorted(_specials(tok), key=len)[::-1]):
                    rest = rest.replace(piece, "")
                assert not rest.strip(), f"turn {i} trains more than its answer: {rest.strip()!r} in {run!r}"
    assert sorted(set(trained_turns)) == turns, f"trained turns {trained_turns}, assistant turns {turns}"
    return "ok" if not no_eot else f"ok, flagged: the render closes no end-of-turn after turns {no_eot}"


def run_template(realworld, name: str) -> dict[str, str]:
    tok = realworld.tokenizer_for_template(name)
    literal = _literal_for(tok)
    out = {}
    for case, row in cases(literal).items():
        try:
            out[case] = check_case(tok, case, row, literal)
        except AssertionError as e:
            out[case] = "FAIL: " + str(e).splitlines()[0][:300]
    return out


def _names():
    try:
        import realworld as rw
        return list(rw.templates())
    except Exception:  # no assets: the fixture skips (or fails under CI) with the reason
        return ["(corpus unavailable)"]


# Known gaps, each a template whose design the generic assertions cannot yet tell from a
# bad mask (reported in docs/masking.md); anything else failing is a regression.
KNOWN = {
    # the model writes its recipient/channel after the header ("to=user", "final", "all"):
    # trained as glue the model must generate, read by the check as a role header
    "muse-glimmer": {"*"},
    "openai-gpt-oss-120b": {"assistant_first", "special_literal"},
    "meetkai-functionary-medium-v3.2": {"assistant_first", "special_literal"},
    # a reasoning tag the template writes is cut mid-token by a vocabulary that lacks it
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": {"*"},
    "poolside-Laguna-S-2.1": {"assistant_first", "special_literal"},
    "inclusionai-ling-3.0-flash": {"assistant_first", "special_literal"},
    "MiniMax-M3": {"assistant_first", "special_literal"},
    "tencent-Hy3": {"assistant_first", "special_literal"},
    "Kimi-K3": {"assistant_first", "tools_object", "tools_string", "special_literal"},
    # GLM closes no turn itself: its stop token is the next <|user|>, which then trains
    "GLM-4.6": {"multi_turn", "system", "assistant_first"},
    "GLM-4.7-Flash": {"multi_turn", "system", "assistant_first"},
    # the tool result renders with tojson: the turn after it starts a few characters early
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": {"tools_object", "tools_string"},
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": {"tools_object", "tools_string"},
}


@pytest.mark.parametrize("name", _names())
def test_template_masks(realworld, name):
    results = run_template(realworld, name)
    known = KNOWN.get(name, set())
    failed = {k: v for k, v in results.items() if v.startswith("FAIL") and "*" not in known and k not in known}
    assert not failed, failed
    # Refusals carry the template's own reason (tool-use templates refuse rows without tools).
    assert all(v.startswith(("ok", "refused: ", "FAIL")) for v in results.values()), results
