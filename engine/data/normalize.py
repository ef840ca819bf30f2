"""Turn rows of any accepted format into one internal form.

Chat-like formats become {"messages": [{"role", "content", ...}], "tools"?: [...]} with
roles system/user/assistant/tool (chat and sharegpt read alike: messages or conversations,
role/content or from/value turns); completion and text become {"text": str}; preference
becomes the prompt plus the chosen answer as messages (what SFT trains on) and keeps
"rejected" (the rejected answer's last message).

For preference objectives, `normalize_preference(row)` gives
{"prompt_messages": [...], "chosen": [assistant msgs], "rejected": [...], "tools": ...}
for every preference layout, and `normalize_kto(row)` gives {"messages": [...], "label": bool}.
Rows arrive here already mapped to ftwb's column names (engine.data.mapping); this is the
one normaliser that data checks, training and evaluation share, so they agree on what is usable.
"""
from __future__ import annotations

import json
import re

from engine.data.errors import RowError, RowProblem
from engine.data.parts import InvalidTextError, check_text, parts_text, refuse_media

ROLES = ("system", "user", "assistant", "tool")
# Role names seen in the wild -> internal role. sharegpt's function_call is the model's
# own output (a call it should learn to make); observation is the tool's answer.
ROLE_ALIASES = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "function_call": "assistant", "tool_call": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool", "ipython": "tool", "function_response": "tool",
}


def _content(value, where: str, allow_empty: bool = False) -> str:
    if isinstance(value, list):  # a list of typed parts: text under "text" or "value"; media refused
        value = parts_text(value, where)
    if value is None:
        raise RowError(f"{where} has no content")
    if not isinstance(value, str):
        raise RowError(f"{where} content is {type(value).__name__}, not a string")
    if not value.strip() and not allow_empty:
        raise RowError(f"{where} content is empty")
    return check_text(value, where)


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
    raw = m.get(content_key)
    if raw is None and m.get("tool_calls"):  # OpenAI writes content: null beside tool calls
        raw = ""
    content = _content(raw, where, allow_empty=bool(m.get("tool_calls")) or role != "assistant")
    out = {"role": role, "content": content}
    for k in ("tool_calls", "name", "tool_call_id"):
        if m.get(k) is not None:
            out[k] = m[k]
    if "tool_calls" in out:
        out["tool_calls"] = _tool_calls(out["tool_calls"], where)
    if isinstance(m.get("reasoning_content"), str) and m["reasoning_content"].strip():
        out["reasoning_content"] = check_text(m["reasoning_content"], where)
    return out


def _tool_calls(calls, where: str) -> list[dict]:
    """OpenAI/HF tool calls as templates expect them: {"type": "function", "id"?, "function":
    {"name", "arguments": <object>}}. Arguments given as a JSON string (the wire format) are
    parsed, so templates that write them with tojson do not encode them twice."""
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list):
        raise RowError(f"{where} tool_calls is {type(calls).__name__}, not a list of calls")
    out = []
    for n, call in enumerate(calls):
        if not isinstance(call, dict):
            raise RowError(f"{where} tool call {n} is {type(call).__name__}, not an object")
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RowError(f"{where} tool call {n} has no function name")
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise RowError(f"{where} tool call {n} ({name}): arguments are not valid JSON") from None
        if not isinstance(args, dict):
            raise RowError(f"{where} tool call {n} ({name}): arguments must be a JSON object")
        item = {"type": "function", "function": {"name": name, "arguments": args}}
        if call.get("id") is not None:
            item["id"] = str(call["id"])
        out.append(item)
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
        return [{"role": "system", "content": check_text(system, "'system'")}] + messages
    return messages


def _conv_keys(conv) -> tuple[str, str]:
    """(role key, content key) of a turn list: role/content, or sharegpt's from/value."""
    first = next((m for m in conv[:4] if isinstance(m, dict)), {}) if isinstance(conv, list) else {}
    return ("from", "value") if "from" in first and "role" not in first else ("role", "content")


def _conversation(row: dict, field: str) -> list[dict]:
    conv = row.get(field)
    return _turns(conv, *_conv_keys(conv), field)


def _chat(row: dict) -> list[dict]:
    """messages or conversations, in either turn shape: chat and sharegpt read the same way."""
    field = "messages" if "messages" in row else "conversations" if "conversations" in row else None
    if field is None:
        raise RowError("no 'messages' (or 'conversations') field")
    return _require_assistant(_with_system(row, _conversation(row, field)))


# Anthropic HH: a whole transcript in one string, "\n\nHuman: ...\n\nAssistant: ...".
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def is_hh_transcript(value) -> bool:
    return isinstance(value, str) and value.startswith("\n\nHuman:") and "\n\nAssistant:" in value


def _hh_turns(text: str, field: str) -> list[dict]:
    parts = _HH_TURN.split(text)
    return [{"role": "user" if r == "Human" else "assistant", "content": _content(c, f"'{field}' turn {n}",
                                                                                  allow_empty=r == "Human")}
            for n, (r, c) in enumerate(zip(parts[1::2], parts[2::2]))]


def _answers(value, field: str) -> list[dict]:
    """chosen/rejected: a string, one message, a list of messages, or an HH transcript."""
    if is_hh_transcript(value):
        return _hh_turns(value, field)
    if isinstance(value, str):
        return [{"role": "assistant", "content": _content(value, f"'{field}'")}]
    if isinstance(value, dict):
        return [_message(value, 0, *_conv_keys([value]))]
    if isinstance(value, list) and value:
        return _turns(value, *_conv_keys(value), field)
    raise RowError(f"'{field}' is {'missing' if value is None else 'empty or not a string/message'}")


def _prompt(row: dict) -> list[dict]:
    for field in ("conversations", "messages"):
        if field in row:
            return _conversation(row, field)
    prompt = row.get("prompt", row.get("question"))
    if prompt is None and "instruction" in row:  # alpaca-style ranking rows
        extra = row.get("input")
        prompt = _content(row["instruction"], "'instruction'") + (
            "\n\n" + extra if isinstance(extra, str) and extra.strip() else "")
    if isinstance(prompt, list):
        return _turns(prompt, *_conv_keys(prompt), "prompt")
    return [{"role": "user", "content": _content(prompt, "'prompt'")}]


def _same(a: dict, b: dict) -> bool:
    return a["role"] == b["role"] and a["content"] == b["content"] and a.get("tool_calls") == b.get("tool_calls")


class SameAnswersError(RowError):
    check = "chosen_equals_rejected"


def normalize_preference(row: dict) -> dict:
    """{"prompt_messages", "chosen", "rejected", "tools"} for every preference layout:
    prompt/chosen/rejected strings; a prompt (string or messages) with chosen/rejected
    messages; sharegpt conversations + chosen/rejected turns (LLaMA-Factory ranking); and
    whole chosen/rejected conversations sharing a prefix (TRL implicit prompt, Anthropic
    HH transcripts), where the shared turns become the prompt."""
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, not an object")
    refuse_media(row)
    chosen, rejected = _answers(row.get("chosen"), "chosen"), _answers(row.get("rejected"), "rejected")
    if chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        # Whole conversations: the prompt is what both share.
        k = 0
        while k < min(len(chosen), len(rejected)) - 1 and _same(chosen[k], rejected[k]):
            k += 1
        prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
        if not prompt:
            raise RowError("chosen and rejected are conversations that share no prompt turns; "
                           "give the prompt in its own field")
    else:
        prompt = _prompt(row)
    prompt = _with_system(row, prompt)
    if prompt[-1]["role"] == "assistant":
        raise RowError("the prompt ends with an assistant turn; chosen/rejected must answer it")
    for name, ans in (("chosen", chosen), ("rejected", rejected)):
        if ans[0]["role"] != "assistant":
            raise RowError(f"'{name}' starts with a {ans[0]['role']} turn, expected the assistant's answer")
        if not ans[-1]["content"].strip() and not ans[-1].get("tool_calls"):
            raise RowError(f"'{name}' answer is empty")
    if len(chosen) == len(rejected) and all(_same(a, b) for a, b in zip(chosen, rejected)):
        raise SameAnswersError("chosen and rejected are the same answer: nothing to prefer")
    return {"prompt_messages": prompt, "chosen": chosen, "rejected": rejected, "tools": _tools(row)}


def _label(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # CSV cells are strings
    raise RowError(f"'label' is {value!r}; a KTO label is true (desirable) or false (undesirable)")


def normalize_kto(row: dict) -> dict:
    """{"messages": [... ending with the judged assistant answer], "label": bool, "tools"?}
    from messages/conversations + label, or prompt + completion + label (TRL unpaired)."""
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, not an object")
    refuse_media(row)
    if "label" not in row:
        raise RowError("no 'label' field; KTO rows need label: true or false")
    label = _label(row["label"])
    if "messages" in row or "conversations" in row:
        messages = _chat(row)
    else:
        if "completion" not in row:
            raise RowError("no 'completion' (or 'messages') field to judge")
        messages = _with_system(row, _prompt(row)) + _answers(row["completion"], "completion")
    if messages[-1]["role"] != "assistant":
        raise RowError("the conversation does not end with the assistant answer the label judges")
    out = {"messages": messages, "label": label}
    tools = _tools(row)
    if tools:
        out["tools"] = tools
    return out


def normalize_row(row: dict, fmt: str) -> dict:
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, not an object")
    refuse_media(row)
    if fmt in ("chat", "sharegpt"):
        out = {"messages": _chat(row)}
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
    elif fmt in ("completion", "text"):
        out = {"text": _content(row.get("text"), "'text'")}
    elif fmt == "preference":
        p = normalize_preference(row)
        # What SFT trains on: the prompt and the chosen answer; "rejected" keeps the other answer.
        out = {"messages": p["prompt_messages"] + p["chosen"], "rejected": p["rejected"][-1]}
    elif fmt == "kto":
        return _encodable(normalize_kto(row))
    else:
        raise RowError(f"unknown format {fmt!r}")
    tools = _tools(row) if "messages" in out else None
    if tools:
        out["tools"] = tools
    return _encodable(out)


def _encodable(example: dict) -> dict:
    """Refuse what a tokenizer cannot encode (a lone surrogate in a name or tool field).
    Message contents were checked as they were read; this encodes only the rest."""
    rest = [v for k, v in example.items() if k not in ("messages", "text", "label", "rejected")]
    rest += [{k: v for k, v in m.items() if k not in ("role", "content")}
             for m in example.get("messages", ()) if len(m) > 2]
    if not rest:
        return example
    try:
        json.dumps(rest, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidTextError(f"a field holds a lone surrogate U+{ord(e.object[e.start]):04X} (invalid "
                               "Unicode, often a broken \\u escape); fix or drop this row") from None
    return example


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
