"""Guess a dataset's row format from its fields, by majority vote over a sample of rows."""
from __future__ import annotations

from collections import Counter

from engine.data.errors import DataError

FORMATS = ("chat", "sharegpt", "alpaca", "completion", "preference")
SAMPLE = 200

_WHAT = {
    "chat": "'messages' with role/content",
    "sharegpt": "'conversations' with from/value",
    "alpaca": "'instruction' and 'output'",
    "completion": "a 'text' string",
    "preference": "a prompt or conversation with 'chosen' and 'rejected'",
}
_EXPECTED = ("messages (chat), conversations (sharegpt), instruction/output (alpaca), text (completion), "
             "prompt/chosen/rejected (preference)")


def _is_turns(value, a: str, b: str) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and a in m and b in m for m in value[:4]))


def row_format(row: dict) -> str | None:
    """The one format a row fits, or None. Preference wins over chat/sharegpt: it has both."""
    if not isinstance(row, dict):
        return None
    if "chosen" in row and "rejected" in row and (
            "prompt" in row or "question" in row or "messages" in row or "conversations" in row
            or _is_turns(row.get("chosen"), "role", "content")):
        return "preference"
    if _is_turns(row.get("messages"), "role", "content"):
        return "chat"
    conv = row.get("conversations")
    if _is_turns(conv, "from", "value") or _is_turns(conv, "role", "content"):
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if isinstance(row.get("text"), str):
        return "completion"
    return None


def _sample(rows: list[dict]) -> list[dict]:
    if len(rows) <= SAMPLE:
        return rows
    step = len(rows) / SAMPLE  # evenly spread, so a bad head of the file cannot decide alone
    return [rows[int(i * step)] for i in range(SAMPLE)]


def detect_format(rows: list[dict]) -> tuple[str, str]:
    """(format, reason) e.g. ("chat", "198/200 rows have 'messages' with role/content")."""
    if not rows:
        raise DataError("no rows to detect the format from; check that the file has rows")
    sample = _sample(rows)
    votes = Counter(f for f in map(row_format, sample) if f is not None)
    if not votes:
        seen = Counter(k for r in sample if isinstance(r, dict) for k in r)
        fields = ", ".join(k for k, _ in seen.most_common(8)) or "(none)"
        raise DataError(f"unrecognised format: fields seen {fields}; expected one of {_EXPECTED}; "
                        "set data.format")
    fmt, n = max(votes.items(), key=lambda kv: (kv[1], -FORMATS.index(kv[0])))
    reason = f"{n}/{len(sample)} {'sampled ' if len(sample) < len(rows) else ''}rows have {_WHAT[fmt]}"
    others = [f"{c} {f}" for f, c in votes.most_common() if f != fmt]
    if others:
        reason += f" (also {', '.join(others)})"
    return fmt, reason
