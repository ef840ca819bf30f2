"""Structure checks for conversation-shaped rows (chat, sharegpt, preference), plus the
small row views other checks need: the turns of a row and its plain text."""
from __future__ import annotations

from typing import Any

from engine.data.checks import Finding, make
from engine.data.normalize import ROLE_ALIASES

_CALL_ROLES = ("function_call", "tool_call")  # sharegpt spellings of an assistant turn that calls a tool
_TEXT_FIELDS = ("system", "prompt", "question", "instruction", "input", "output", "response", "text",
                "chosen", "rejected")


def _turn_keys(fmt: str, row: dict) -> tuple[str | None, str, str]:
    """(list field, role key, content key) for the row's conversation (the normaliser's reading:
    messages or conversations, with role/content or from/value turns)."""
    key = "messages" if "messages" in row else "conversations" if "conversations" in row else None
    if key is None:
        return (None, "role", "content") if fmt in ("preference", "kto") else ("messages", "role", "content")
    conv = row.get(key)
    first = next((t for t in conv[:4] if isinstance(t, dict)), {}) if isinstance(conv, list) else {}
    return (key, "from", "value") if "from" in first and "role" not in first else (key, "role", "content")


def content_text(content: Any) -> str | None:
    """Plain text of a content value: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, (dict, str)) for p in content):
        return "".join(p if isinstance(p, str) else str(p.get("text", p.get("value", ""))) for p in content)
    return None


def _norm_role(role: Any, fmt_key: str = "role") -> str | None:
    """The normaliser's role table, whatever the turn's key: data check and training agree."""
    if not isinstance(role, str):
        return None
    return ROLE_ALIASES.get(role.strip().lower())


def _is_call(turn: dict, role_key: str) -> bool:
    role = turn.get(role_key)
    return (isinstance(role, str) and role.strip().lower() in _CALL_ROLES) or bool(
        turn.get("tool_calls") or turn.get("function_call"))


def check_row(row: Any, fmt: str, i: int, line: int | None) -> list[Finding]:
    if fmt not in ("chat", "sharegpt", "preference", "kto"):
        return []
    if not isinstance(row, dict):
        return [make("missing_messages", i, line, "row is not a JSON object")]
    out: list[Finding] = []
    if fmt == "preference":
        out += _check_preference_answers(row, i, line)
    list_key, rk, ck = _turn_keys(fmt, row)
    if list_key is None:  # prompt/chosen/rejected strings: no conversation to check
        return out
    turns = row.get(list_key)
    if not isinstance(turns, list) or not turns:
        what = "empty" if isinstance(turns, list) else ("missing" if turns is None else f"a {type(turns).__name__}")
        return out + [make("missing_messages", i, line, f"'{list_key}' is {what}; it must be a non-empty list of turns")]
    roles: list[str | None] = []
    calls: list[bool] = []
    for t, turn in enumerate(turns):
        path = f"{list_key}[{t}]"
        if not isinstance(turn, dict):
            out.append(make("missing_role", i, line, f"{path} is not an object", field=path))
            roles.append(None)
            calls.append(False)
            continue
        is_call = _is_call(turn, rk)
        calls.append(is_call)
        if rk not in turn:
            out.append(make("missing_role", i, line, f"{path} has no '{rk}'", field=path))
            roles.append(None)
        else:
            role = _norm_role(turn[rk], rk)
            if role is None:
                out.append(make("unknown_role", i, line, f"{path}.{rk} is {turn[rk]!r}", field=f"{path}.{rk}"))
            roles.append(role)
        content = turn.get(ck)
        if ck not in turn or (content is None and not is_call):
            out.append(make("missing_content", i, line, f"{path} has no '{ck}'", field=path))
        elif content is not None and content_text(content) is None:
            out.append(make("non_string_content", i, line, f"{path}.{ck} is a {type(content).__name__}, "
                            "expected text or a list of content parts", field=f"{path}.{ck}"))
        elif roles[-1] == "assistant" and not is_call and not (content_text(content) or "").strip():
            out.append(make("empty_assistant", i, line, f"{path} is an empty assistant turn", field=f"{path}.{ck}"))
    out += _order_checks(roles, calls, fmt, list_key, i, line)
    return out


def _order_checks(roles: list[str | None], calls: list[bool], fmt: str, key: str, i: int,
                  line: int | None) -> list[Finding]:
    out: list[Finding] = []
    if fmt != "preference" and "assistant" not in roles:
        out.append(make("no_assistant", i, line, "no assistant turn: nothing to train on"))
    systems = [t for t, r in enumerate(roles) if r == "system"]
    if systems and (systems[0] != 0 or len(systems) > 1):
        where = systems[0] if systems[0] != 0 else systems[1]
        out.append(make("system_not_first", i, line, f"system turn at {key}[{where}]"
                        + (f" ({len(systems)} system turns)" if len(systems) > 1 else ""), field=f"{key}[{where}]"))
    prev, prev_call = None, False
    for t, r in enumerate(roles):
        if r in (None, "system"):
            continue
        if r == "tool":
            before = next((u for u in range(t - 1, -1, -1) if roles[u] != "tool"), None)
            if before is None or roles[before] != "assistant" or not calls[before]:
                out.append(make("tool_without_call", i, line, f"{key}[{t}] is a tool result with no assistant "
                                "tool call before it", field=f"{key}[{t}]"))
            prev = "tool"
            continue
        if prev is None and r == "assistant" and fmt != "preference":
            out.append(make("role_order", i, line, f"{key}[{t}]: conversation starts with an assistant turn",
                            field=f"{key}[{t}]"))
        elif r == prev and not (r == "assistant" and prev_call):
            out.append(make("role_order", i, line, f"{key}[{t}]: two {r} turns in a row", field=f"{key}[{t}]"))
        prev, prev_call = r, calls[t]
    last = next((r for r in reversed(roles) if r is not None), None)
    if fmt != "preference" and last is not None and last != "assistant":
        out.append(make("last_not_assistant", i, line, f"last turn is {last}, not assistant"))
    return out


def _answer_text(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return content_text(v.get("content", v.get("value")))
    if isinstance(v, list):  # a list of turns: the answer is the last assistant turn
        for t in reversed(v):
            if isinstance(t, dict):
                return content_text(t.get("content", t.get("value")))
    return None


def _check_preference_answers(row: dict, i: int, line: int | None) -> list[Finding]:
    out = []
    texts = {}
    for k in ("chosen", "rejected"):
        txt = _answer_text(row.get(k))
        texts[k] = txt
        if txt is None or not txt.strip():
            out.append(make("empty_assistant", i, line, f"'{k}' is {'missing' if k not in row else 'empty'}", field=k))
    if texts["chosen"] and texts["chosen"].strip() == (texts["rejected"] or "").strip():
        out.append(make("chosen_equals_rejected", i, line, "chosen and rejected are the same text", field="chosen"))
    return out


def to_messages(row: Any, fmt: str) -> list[dict] | None:
    """The row as [{role, content}] with plain-text content (None for completion rows or
    rows too broken to read). Preference rows give the prompt plus the chosen answer."""
    if not isinstance(row, dict):
        return None
    if fmt in ("completion", "text"):
        return None
    try:  # what training reads, where the row is usable
        from engine.data.errors import RowError
        from engine.data.normalize import normalize_row

        msgs = normalize_row(row, fmt).get("messages")
        if msgs is not None:
            return [{"role": m["role"], "content": m["content"]} for m in msgs]
    except RowError:
        pass
    if fmt == "alpaca":
        prompt = "\n\n".join(str(row.get(k) or "") for k in ("instruction", "input") if row.get(k))
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(row.get("output") or "")}]
        if row.get("system"):
            msgs.insert(0, {"role": "system", "content": str(row["system"])})
        return msgs
    if fmt == "completion":
        return None
    list_key, rk, ck = _turn_keys(fmt, row)
    msgs = []
    if list_key is not None and isinstance(row.get(list_key), list):
        for turn in row[list_key]:
            if isinstance(turn, dict):
                role = _norm_role(turn.get(rk), rk) or "user"
                msgs.append({"role": role, "content": content_text(turn.get(ck)) or ""})
    elif fmt == "preference":
        prompt = row.get("prompt", row.get("question"))
        if isinstance(prompt, list):
            msgs = [{"role": _norm_role(t.get("role"), "role") or "user", "content": content_text(t.get("content")) or ""}
                    for t in prompt if isinstance(t, dict)]
        else:
            msgs = [{"role": "user", "content": str(prompt or "")}]
    if fmt == "preference":
        msgs.append({"role": "assistant", "content": _answer_text(row.get("chosen")) or ""})
    return msgs or None


def row_text(row: Any, fmt: str) -> str:
    """The row's words, without field names or roles: what duplicates are judged on."""
    msgs = to_messages(row, fmt)
    if msgs is not None:
        return "\n".join(m["content"] for m in msgs)
    if isinstance(row, dict):
        if isinstance(row.get("text"), str):
            return row["text"]
        return "\n".join(str(row[k]) for k in _TEXT_FIELDS if isinstance(row.get(k), str))
    return str(row)
