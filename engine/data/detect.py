"""Guess a dataset's row format from its fields, by majority vote over a sample of rows.

Rows arrive under ftwb's column names (engine.data.mapping applied). Multimodal rows are
refused here, naming the modality: ftwb trains text models, and a row reduced to its text
is not what its author meant.
"""
from __future__ import annotations

from collections import Counter

from engine.data.errors import DataError
from engine.data.parts import row_media

FORMATS = ("chat", "sharegpt", "alpaca", "completion", "preference", "kto", "text")
SAMPLE = 200
# chat and sharegpt are read the same way; a set format of one matches rows of the other.
FAMILY = {"sharegpt": "chat", "text": "completion"}

_WHAT = {
    "chat": "'messages' with role/content",
    "sharegpt": "'conversations' with from/value",
    "alpaca": "'instruction' and 'output'",
    "completion": "a 'text' string",
    "preference": "a prompt or conversation with 'chosen' and 'rejected'",
    "kto": "a conversation (or prompt/completion) with a true/false 'label'",
    "text": "plain text",
}
_EXPECTED = ("messages (chat), conversations (sharegpt), instruction/output (alpaca), text (completion), "
             "prompt/chosen/rejected (preference), prompt/completion/label (kto)")


def _is_turns(value, a: str, b: str) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(m, dict) and a in m and b in m for m in value[:4]))


def _turns_any(value) -> bool:
    return _is_turns(value, "role", "content") or _is_turns(value, "from", "value")


def _answer_like(value) -> bool:
    return isinstance(value, (str, dict)) or _turns_any(value)


def row_format(row: dict) -> str | None:
    """The one format a row fits, or None. Preference and KTO win over chat/sharegpt: they have both."""
    if not isinstance(row, dict):
        return None
    if "chosen" in row and "rejected" in row and _answer_like(row["chosen"]) and (
            any(k in row for k in ("prompt", "question", "messages", "conversations", "instruction"))
            or _turns_any(row["chosen"])
            or (isinstance(row["chosen"], str) and row["chosen"].startswith("\n\nHuman:"))):
        return "preference"
    if isinstance(row.get("label"), bool) and (
            _turns_any(row.get("messages")) or _turns_any(row.get("conversations"))
            or ("completion" in row and ("prompt" in row or "question" in row))):
        return "kto"
    if _is_turns(row.get("messages"), "role", "content") or _is_turns(row.get("messages"), "from", "value"):
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


def refuse_multimodal(rows: list[dict]) -> None:
    """DataError naming the modality when most sampled rows carry images, audio or video."""
    sample = _sample(rows)
    media = [m for m in map(row_media, sample) if m]
    if media and len(media) * 2 >= len(sample):
        raise DataError(f"{len(media)}/{len(sample)} {'sampled ' if len(sample) < len(rows) else ''}rows carry "
                        f"{Counter(media).most_common(1)[0][0]}: this is a multimodal dataset, and ftwb "
                        "trains text models only; use a text-only dataset (or drop the media columns)")


def detect_format(rows: list[dict]) -> tuple[str, str]:
    """(format, reason) e.g. ("chat", "198/200 rows have 'messages' with role/content")."""
    if not rows:
        raise DataError("no rows to detect the format from; check that the file has rows")
    refuse_multimodal(rows)
    sample = _sample(rows)
    votes = Counter(f for f in map(row_format, sample) if f is not None)
    if not votes:
        seen = Counter(k for r in sample if isinstance(r, dict) for k in r)
        fields = ", ".join(k for k, _ in seen.most_common(8)) or "(none)"
        raise DataError(f"unrecognised format: fields seen {fields}; expected one of {_EXPECTED}; "
                        "set data.format (and data.columns to map other column names)")
    fmt, n = max(votes.items(), key=lambda kv: (kv[1], -FORMATS.index(kv[0])))
    reason = f"{n}/{len(sample)} {'sampled ' if len(sample) < len(rows) else ''}rows have {_WHAT[fmt]}"
    others = [f"{c} {f}" for f, c in votes.most_common() if f != fmt]
    if others:
        reason += f" (also {', '.join(others)})"
    return fmt, reason


def same_family(a: str, b: str) -> bool:
    return FAMILY.get(a, a) == FAMILY.get(b, b)
