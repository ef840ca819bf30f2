"""Turn rows of any accepted format into one internal form.

Chat-like formats become {"messages": [{"role", "content", ...}], "tools"?: [...]} with
roles system/user/assistant/tool; completion becomes {"text": str}; preference becomes
the prompt plus the chosen answer as messages (what SFT trains on) and keeps "rejected".
"""
from __future__ import annotations

import json

from engine.data.errors import RowError, RowProblem

ROLES = ("system", "user", "assistant", "tool")
# Role names seen in the wild -> internal role. sharegpt's function_call is the model's
# own output (a call it should learn to make); observation is the tool's answer.
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "function_call": "assistant", "tool_call": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool", "ipython": "tool", "function_response": "tool",
}


def _content(value, where: str, allow_empty: bool = False) -> str:
    if isinstance(value, list):  # a list of parts: keep the text parts
        texts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type", "text") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise RowError(f"{where} content is a list without text parts; only text is supported")
        value = "".join(texts)
    if value is None:
        raise RowError(f"{where} has no content")
    if not isinstance(value, str):
        raise RowError(f"{where} content is {type(value).__name__}, not a string")
    if not value.strip() and not allow_empty:
        raise RowError(f"{where} content is empty")
    return value


def _message(m, i: int, role_key: str, content_key: str) -> dict:
    where = f"message {i}"
    if not isinstance(m, dict):
        raise RowError(f"{where} is {type(m).__name__}, not an object with {role_key}/{content_key}")
    if role_key not in m:
        raise RowError(f"{where} has no '{role_key}'")
    raw_role = m[role_key]
    role = ROLE_ALIASES.get(str(raw_role).strip().lower()) if isinstance(raw_role, str) else None
    if role is None:
        raise RowError(f"{where} has unknown role {raw_role!r}; use one of {', '.join(ROLES)}")
    if content_key not in m and not m.get("tool_calls"):
        raise RowError(f"{where} has no '{content_key}'")
    # An assistant message that only calls tools may have empty content.
    content = _content(m.get(content_key), where, allow_empty=bool(m.get("tool_calls")) or role != "assistant")
    out = {"role": role, "content": content}
    for k in ("tool_calls", "name", "tool_call_id"):
        if m.get(k) is not None:
            out[k] = m[k]
    return out


def _turns(value, role_key: str, content_key: str, field: str) -> list[dict]:
    if not isinstance(value, list):
        raise RowError(f"'{field}' is {type(value).__name__}, not a list of messages")
    if not value:
        raise RowError(f"'{field}' is empty")
    return [_message(m, i, role_key, content_key) for i, m in enumerate(value)]


def _require_assistant(messages: list[dict]) -> list[dict]:
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("no assistant turn, so nothing to train on")
    return messages


def _tools(row: dict) -> list[dict] | None:
    tools = row.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError:
            raise RowError("'tools' is not valid JSON") from None
    if not tools:
        return None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise RowError("'tools' must be a list of function schemas")
    # Chat templates expect {"type": "function", "function": {...}}; bare schemas are wrapped.
    return [t if "type" in t else {"type": "function", "function": t} for t in tools]


def _with_system(row: dict, messages: list[dict]) -> list[dict]:
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}] + messages
    return messages


def _answer(value, field: str) -> dict:
    """A preference answer: a string, one message, or a list whose last message is the answer."""
    if isinstance(value, str):
        return {"role": "assistant", "content": _content(value, f"'{field}'")}
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        for rk, ck in (("role", "content"), ("from", "value")):
            if rk in value:
                m = _message(value, 0, rk, ck)
                if m["role"] != "assistant":
                    raise RowError(f"'{field}' is a {m['role']} message, expected the assistant's answer")
                return m
    raise RowError(f"'{field}' is missing or not a string/message")


def _prompt(row: dict) -> list[dict]:
    if "conversations" in row:
        conv = row["conversations"]
        keys = ("role", "content") if conv and isinstance(conv[0], dict) and "role" in conv[0] else ("from", "value")
        return _turns(conv, *keys, "conversations")
    if "messages" in row:
        return _turns(row["messages"], "role", "content", "messages")
    prompt = row.get("prompt", row.get("question"))
    if isinstance(prompt, list):
        return _turns(prompt, "role", "content", "prompt")
    return [{"role": "user", "content": _content(prompt, "'prompt'")}]


def normalize_row(row: dict, fmt: str) -> dict:
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, not an object")
    if fmt == "chat":
        if "messages" not in row:
            raise RowError("no 'messages' field")
        out = {"messages": _require_assistant(_with_system(row, _turns(row["messages"], "role", "content",
                                                                         "messages")))}
    elif fmt == "sharegpt":
        conv = row.get("conversations")
        if conv is None:
            raise RowError("no 'conversations' field")
        keys = ("role", "content") if conv and isinstance(conv[0], dict) and "role" in conv[0] else ("from", "value")
        out = {"messages": _require_assistant(_with_system(row, _turns(conv, *keys, "conversations")))}
    elif fmt == "alpaca":
        instruction = _content(row.get("instruction"), "'instruction'")
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise RowError(f"'input' is {type(extra).__name__}, not a string")
        user = instruction + ("\n\n" + extra if extra and extra.strip() else "")
        messages = []
        for i, pair in enumerate(row.get("history") or []):  # earlier [question, answer] turns
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise RowError(f"history entry {i} is not a [question, answer] pair")
            messages += [{"role": "user", "content": _content(pair[0], f"history {i} question")},
                         {"role": "assistant", "content": _content(pair[1], f"history {i} answer")}]
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": _content(row.get("output"), "'output'")}]
        out = {"messages": _with_system(row, messages)}
    elif fmt == "completion":
        out = {"text": _content(row.get("text"), "'text'")}
    elif fmt == "preference":
        prompt = _with_system(row, _prompt(row))
        chosen, rejected = _answer(row.get("chosen"), "chosen"), _answer(row.get("rejected"), "rejected")
        if prompt and prompt[-1]["role"] == "assistant":
            raise RowError("the prompt ends with an assistant turn; chosen/rejected must answer it")
        out = {"messages": prompt + [chosen], "rejected": rejected}
    else:
        raise RowError(f"unknown format {fmt!r}")
    tools = _tools(row) if "messages" in out else None
    if tools:
        out["tools"] = tools
    return out


def normalize_rows(load, fmt: str) -> tuple[list[dict], list[int], list[RowProblem]]:
    """(examples, index in load.rows of each, problems) for a LoadResult."""
    examples, rows, problems = [], [], []
    for i, row in enumerate(load.rows):
        try:
            examples.append(normalize_row(row, fmt))
            rows.append(i)
        except RowError as e:
            line = load.lines[i] if i < len(load.lines) else None
            where = f"line {line}" if line is not None else f"row {i}"
            problems.append(RowProblem(i, line, f"{where}: {e}"))
    return examples, rows, problems
