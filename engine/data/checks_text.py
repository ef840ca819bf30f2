"""Text checks on every string in a row: special tokens, encoding damage, empty fields,
and rows too long for max_seq_len once rendered with the tokenizer."""
from __future__ import annotations

import re
from typing import Any, Iterator

from engine.data.checks import Finding, make

SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|system|>", "<|user|>", "<|assistant|>",
    "<|end|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<s>", "</s>", "[INST]", "[/INST]",
    "<<SYS>>", "<</SYS>>", "<|pad|>", "<unk>", "<pad>",
)
_SPECIAL_RX = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True)))
# UTF-8 bytes read as Latin-1/cp1252: "Ã©" for é, "â€™" for ’, "Â " for a no-break space.
_MOJIBAKE_RX = re.compile(
    "[ÃÂ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014"
    "\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]|â€|â„¢|ï»¿")
_CONTROL_RX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(json path, text) for every string inside a row, e.g. ("messages[1].content", ...)."""
    yield from string_list(value, path)


def string_list(value: Any, path: str = "", out: list | None = None) -> list[tuple[str, str]]:
    """strings() as a list, in the same order (a plain walk: checks call it once per row)."""
    out = [] if out is None else out
    if isinstance(value, str):
        out.append((path or "$", value))
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(v, str):
                out.append((sub, v))
            elif isinstance(v, (dict, list)):
                string_list(v, sub, out)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            if isinstance(v, str):
                out.append((f"{path}[{n}]", v))
            elif isinstance(v, (dict, list)):
                string_list(v, f"{path}[{n}]", out)
    return out


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def check_row(row: Any, fmt: str, i: int, line: int | None, strs: list | None = None) -> list[Finding]:
    """`strs`: string_list(row), where the caller has it already."""
    out: list[Finding] = []
    if not isinstance(row, dict):
        return out
    for path, text in (string_list(row) if strs is None else strs):
        m = _SPECIAL_RX.search(text) if ("<" in text or "[" in text) else None
        if m:
            out.append(make("special_token_in_content", i, line, f"{path} contains {m.group()!r}",
                            span=m.span(), field=path))
        m = _MOJIBAKE_RX.search(text) if any(c in text for c in "ÃÂâï") else None
        if m:
            out.append(make("encoding", i, line, f"{path}: mojibake {m.group()!r} (UTF-8 read as Latin-1)",
                            span=m.span(), field=path))
        elif "\ufffd" in text:
            k = text.index("\ufffd")
            out.append(make("encoding", i, line, f"{path}: replacement character U+FFFD (bytes lost in decoding)",
                            span=(k, k + 1), field=path))
        else:
            m = _CONTROL_RX.search(text)
            if m:
                out.append(make("encoding", i, line, f"{path}: control character U+{ord(m.group()):04X}",
                                span=m.span(), field=path))
    if fmt == "completion" and _blank(row.get("text")):
        out.append(make("empty_text", i, line, "'text' is " + ("missing" if "text" not in row else "empty"),
                        field="text"))
    if fmt == "alpaca":
        for key, cid in (("instruction", "empty_instruction"), ("output", "empty_output")):
            if _blank(row.get(key)) or not isinstance(row.get(key), str):
                what = "missing" if key not in row else ("not text" if not _blank(row.get(key)) else "empty")
                out.append(make(cid, i, line, f"'{key}' is {what}", field=key))
    return out


def render(messages: list[dict], tokenizer: Any, upto: int | None = None) -> str:
    """The conversation as the trainer will see it: the tokenizer's chat template, or
    plain ChatML where it has none. `upto` renders only the first `upto` turns."""
    msgs = messages[:upto] if upto is not None else messages
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(msgs, tokenize=False)
        except Exception:  # templates that reject some role orders: fall back to ChatML
            pass
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def overlong(rows: list[Any], lines: list[int | None], fmt: str, tokenizer: Any,
             max_seq_len: int, start: int = 0) -> list[Finding]:
    """Rows (numbered from `start`) longer than max_seq_len tokens, saying what truncation would cut."""
    from engine.data.checks_chat import to_messages

    out = []
    for k, row in enumerate(rows):
        i = start + k
        msgs = to_messages(row, fmt)
        if msgs is None:
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str):
                continue
            n = _count(tokenizer, text)
            if n > max_seq_len:
                out.append(make("overlong", i, lines[k], f"{n} tokens > max_seq_len {max_seq_len}; "
                                f"truncation drops the last {n - max_seq_len}"))
            continue
        n = _count(tokenizer, render(msgs, tokenizer))
        if n <= max_seq_len:
            continue
        last_a = max((t for t, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last_a is None:
            cut = "no assistant turn"
        else:
            before = _count(tokenizer, render(msgs, tokenizer, upto=last_a))
            first_a = min(t for t, m in enumerate(msgs) if m["role"] == "assistant")
            first_before = _count(tokenizer, render(msgs, tokenizer, upto=first_a))
            if first_before >= max_seq_len:
                cut = "truncation would remove every assistant turn (nothing left to train on)"
            elif before >= max_seq_len:
                cut = "truncation would remove the last assistant turn"
            else:
                cut = "truncation would cut the last assistant turn short"
        out.append(make("overlong", i, lines[k], f"{n} tokens > max_seq_len {max_seq_len}; {cut}"))
    return out
