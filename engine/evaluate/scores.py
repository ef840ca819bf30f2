"""Generation scores: exact match, JSON validity and field accuracy, ROUGE-L.

Pure Python, no downloads: ROUGE-L is the LCS-based F1 over word tokens (Lin, 2004, with
beta = 1), which is what most fine-tuning reports quote for free text.
"""
from __future__ import annotations

import json
import re
from typing import Any

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def normalize_ws(text: str) -> str:
    return " ".join(text.split())


def exact_match(pred: str, ref: str) -> bool:
    return normalize_ws(pred) == normalize_ws(ref)


def parse_json(text: str) -> tuple[bool, Any]:
    """(valid, value): the whole answer must be JSON; a ```json fence around it is allowed."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    try:
        return True, json.loads(s)
    except (ValueError, RecursionError):
        return False, None


def is_json_reference(ref: str) -> bool:
    """References count as JSON when they parse to an object or an array."""
    ok, value = parse_json(ref)
    return ok and isinstance(value, (dict, list))


def field_accuracy(pred: Any, ref: Any) -> float | None:
    """Fraction of the reference object's keys whose value the prediction matches exactly.

    None when the reference is not an object (no fields to score); 0.0 when the prediction
    is not an object. Values compare as parsed JSON, so 1 == 1.0 and key order is free."""
    if not isinstance(ref, dict) or not ref:
        return None
    if not isinstance(pred, dict):
        return 0.0
    hits = sum(1 for k, v in ref.items() if k in pred and _same(pred[k], v))
    return hits / len(ref)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return normalize_ws(a) == normalize_ws(b)
    return a == b


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 between two texts over lower-cased word and punctuation tokens."""
    p, r = tokens(pred), tokens(ref)
    if not p or not r:
        return 1.0 if not p and not r else 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def score_one(pred: str, ref: str, json_ref: bool) -> dict[str, Any]:
    """Scores of one generation against its reference."""
    out: dict[str, Any] = {"exact_match": exact_match(pred, ref), "rouge_l": round(rouge_l(pred, ref), 6)}
    if json_ref:
        ok, value = parse_json(pred)
        out["json_valid"] = ok
        _, ref_value = parse_json(ref)
        fa = field_accuracy(value if ok else None, ref_value)
        if fa is not None:
            out["field_accuracy"] = round(fa, 6)
    return out


def aggregate(per_sample: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each score over the samples that have it (booleans count as 0/1)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in per_sample:
        for k, v in s.items():
            if isinstance(v, (bool, int, float)):
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
    return {k: round(sums[k] / counts[k], 6) for k in sums}


# ---------------------------------------------------------------- set scorers

# Refusal openers and phrases; matched on the start of the answer or anywhere for the
# unambiguous ones ("I can't help with").
_REFUSAL = re.compile(
    r"^\s*(i\s*(can(no|')t|can ?not|won'?t|will not|am not able to|'m not able to|am unable to|'m unable to|"
    r"must decline|refuse)|sorry|i'?m sorry|i am sorry|unfortunately,? i)"
    r"|\b(can(no|')t|can ?not|won'?t|will not|unable to) (help|assist|provide|do that|support)",
    re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """The answer declines the request (English refusal phrases)."""
    return bool(_REFUSAL.search(text or ""))


def contains(pred: str, ref: str) -> bool:
    """The reference appears in the answer (case and whitespace ignored)."""
    r = normalize_ws(ref).lower()
    return bool(r) and r in normalize_ws(pred).lower()


def regex_match(pred: str, pattern: str) -> bool:
    return re.search(pattern, pred or "") is not None


def schema_valid(pred: str, schema: dict) -> tuple[bool, bool]:
    """(is JSON, conforms to the schema)."""
    import jsonschema

    ok, value = parse_json(pred)
    if not ok:
        return False, False
    return True, jsonschema.validators.validator_for(schema)(schema).is_valid(value)


def score_for(scorer: str, pred: str, ref: str, *, json_ref: bool = False, pattern: str | None = None,
              schema: dict | None = None) -> dict[str, Any]:
    """The scores of one answer under an eval set's scorer (booleans aggregate as rates)."""
    if scorer == "auto":
        return score_one(pred, ref, json_ref)
    if scorer == "exact":
        return {"exact_match": exact_match(pred, ref)}
    if scorer == "rouge":
        return {"rouge_l": round(rouge_l(pred, ref), 6)}
    if scorer == "contains":
        return {"contains": contains(pred, ref)}
    if scorer == "regex":
        return {"regex_match": regex_match(pred, pattern if pattern is not None else ref)}
    if scorer == "json":
        return score_one(pred, ref, True)
    if scorer == "json_schema":
        ok, conforms = schema_valid(pred, schema or {})
        return {"json_valid": ok, "schema_valid": conforms}
    if scorer == "refusal":
        return {"refusal_rate": is_refusal(pred)}
    raise ValueError(f"unknown scorer {scorer!r}")
