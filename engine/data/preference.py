"""Preference data for the preference objectives: which data fits which objective, and
chosen/rejected pairs tokenised with the same template code (and masks) as SFT.

A pair item is an SFT item for the chosen side ({"input_ids", "labels", "row"}: what
per-sample losses and the end-of-run evaluation read) plus "rejected_ids" and
"rejected_labels". Both sides render the same prompt conversation, so they share its
tokens, and only the answer tokens (with the end-of-turn token) count.
"""
from __future__ import annotations

from engine.data.errors import DataError
from engine.data.template import IGNORE
from engine.data.tokenize import tokenize_all

PAIRWISE = ("dpo", "orpo")
PAIR_FORMATS = ("preference",)
LABELLED_FORMATS = ("kto",)

_WHAT = {
    "preference": "preference pairs (a prompt with chosen and rejected answers)",
    "kto": "KTO rows (one answer per row with a true/false label)",
}


def objective_problem(objective: str, fmt: str, sft_on_chosen: bool = False) -> str | None:
    """Why `objective` cannot train data of format `fmt`, with what to set; None if it can."""
    what = _WHAT.get(fmt, f"{fmt} data (no chosen/rejected answers)")
    if objective == "sft":
        if fmt in PAIR_FORMATS and not sft_on_chosen:
            return (f"the dataset is {what}, but train.objective is sft, which would ignore the rejected "
                    "answers; set train.objective: dpo (or orpo), or data.sft_on_chosen: true to train SFT "
                    "on the chosen answers only")
        if fmt in LABELLED_FORMATS:
            return (f"the dataset is {what}, but train.objective is sft, which would also train on the rows "
                    "labelled false; set train.objective: kto")
        return None
    if objective in PAIRWISE:
        if fmt in PAIR_FORMATS:
            return None
        if fmt in LABELLED_FORMATS:
            return (f"the dataset is {what}, but train.objective {objective} needs chosen/rejected pairs; "
                    "set train.objective: kto")
        return (f"the dataset is {what}, but train.objective {objective} needs preference pairs (prompt, "
                "chosen, rejected); use a preference dataset, or set train.objective: sft")
    if objective == "kto":
        return ("train.objective kto is not available in this version of ftwb; train chosen/rejected pairs "
                "with train.objective: dpo or orpo")
    return f"train.objective: {objective!r} is not known; use sft, dpo or orpo"


def check_objective(cfg, fmt: str, emit=None, source: str | None = None) -> None:
    """Refuse a data/objective mismatch (DataError); say so when SFT trains on chosen only."""
    problem = objective_problem(cfg.train.objective, fmt, cfg.data.sft_on_chosen)
    if problem:
        raise DataError(f"{source}: {problem}" if source else problem)
    if emit and cfg.train.objective == "sft" and fmt in PAIR_FORMATS:
        emit("warning", kind="sft_on_chosen",
             message="data.sft_on_chosen is on: training SFT on the prompts and chosen answers; "
                     "the rejected answers are not used")


def is_pairwise(cfg) -> bool:
    return cfg.train.objective in PAIRWISE


def sides(example: dict) -> tuple[dict, dict]:
    """(chosen, rejected) conversations of a normalised preference example."""
    if "rejected" not in example:
        raise DataError("a preference example has no rejected answer")
    prompt = example["messages"][:-1]
    extra = {"tools": example["tools"]} if example.get("tools") else {}
    return ({"messages": example["messages"], **extra},
            {"messages": prompt + [example["rejected"]], **extra})


def item_length(item: dict) -> int:
    """Tokens an item puts into a batch (both sides of a pair)."""
    return len(item["input_ids"]) + len(item.get("rejected_ids", ()))


def tokenize_pairs(tokenizer, examples: list[dict], train_on: str, max_seq_len: int, overlong: str, *,
                   rows: list[int] | None = None, cache=True, cache_extra: str = "") -> tuple[list[dict], dict]:
    """Pair items and stats; the same call shape as tokenize_all. Each side goes through
    tokenize_all (masks, length policy and cache as SFT); a pair survives when both do."""
    rows = list(range(len(examples))) if rows is None else list(rows)
    pairs = [sides(ex) for ex in examples]
    chosen, st_c = tokenize_all(tokenizer, [c for c, _ in pairs], train_on, max_seq_len, overlong, rows=rows,
                                cache=cache, cache_extra=cache_extra + ":chosen")
    rejected, st_r = tokenize_all(tokenizer, [r for _, r in pairs], train_on, max_seq_len, overlong, rows=rows,
                                  cache=cache, cache_extra=cache_extra + ":rejected")
    by_row = {it["row"]: it for it in rejected}
    items = []
    for it in chosen:
        r = by_row.get(it["row"])
        if r is not None:
            items.append({**it, "rejected_ids": r["input_ids"], "rejected_labels": r["labels"]})
    stats = {k: st_c.get(k, 0) + st_r.get(k, 0) for k in ("truncated", "dropped_overlong", "dropped_no_trainable",
                                                           "dropped_template", "truncated_cut_assistant",
                                                           "tokens", "trainable_tokens")}
    stats["rows_in"] = len(examples)
    stats["rows_out"] = len(items)
    seen, dropped = set(), []
    for side, st in (("chosen", st_c), ("rejected", st_r)):
        for d in st.get("dropped_rows", []):
            if d["row"] not in seen:
                seen.add(d["row"])
                dropped.append({"row": d["row"], "reason": f"{side} answer: {d['reason']}"})
    stats["dropped_rows"] = dropped
    stats["cache"] = st_c.get("cache") if st_c.get("cache") == st_r.get("cache") else "partial"
    return items, stats


def side_items(item: dict) -> list[dict]:
    """The two sequences of a pair item as plain SFT-shaped items: [chosen, rejected]."""
    return [{"input_ids": item["input_ids"], "labels": item["labels"], "row": item.get("row")},
            {"input_ids": item["rejected_ids"], "labels": item["rejected_labels"], "row": item.get("row")}]


def trained_count(labels: list[int]) -> int:
    return sum(1 for x in labels[1:] if x != IGNORE)
