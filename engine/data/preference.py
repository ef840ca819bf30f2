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
        if fmt in LABELLED_FORMATS or fmt in PAIR_FORMATS:  # pairs train as a good and a bad row each
            return None
        return (f"the dataset is {what}, but train.objective kto needs answers labelled true/false (or "
                "chosen/rejected pairs); use such a dataset, or set train.objective: sft")
    return f"train.objective: {objective!r} is not known; use sft, dpo, orpo or kto"


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


def tokenize_fn(cfg):
    """The tokeniser of cfg's objective (the call shape of tokenize_all), or None for SFT."""
    if cfg.train.objective in PAIRWISE:
        return tokenize_pairs
    if cfg.train.objective == "kto":
        return tokenize_labelled
    return None


def sides(example: dict) -> tuple[dict, dict]:
    """(chosen, rejected) conversations of a normalised preference example."""
    if "rejected" not in example:
        raise DataError("a preference example has no rejected answer")
    prompt = example["messages"][:-1]
    extra = {"tools": example["tools"]} if example.get("tools") else {}
    return ({"messages": example["messages"], **extra},
            {"messages": prompt + [example["rejected"]], **extra})


def item_length(item: dict) -> int:
    """Tokens an item puts into a batch (both sides of a pair; a KTO row and its KL sequence)."""
    return len(item["input_ids"]) + len(item.get("rejected_ids", item.get("kl_ids", ())))


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
            items.append({**it, "labels": last_answer_only(it["labels"]), "rejected_ids": r["input_ids"],
                          "rejected_labels": last_answer_only(r["labels"])})
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


def last_answer_only(labels: list[int]) -> list[int]:
    """Labels of the final answer alone: earlier assistant turns of a multi-turn prompt are
    context that chosen and rejected share, not part of what is compared."""
    end = len(labels)
    while end and labels[end - 1] == IGNORE:
        end -= 1
    start = end
    while start and labels[start - 1] != IGNORE:
        start -= 1
    return [IGNORE] * start + labels[start:end] + [IGNORE] * (len(labels) - end)


def side_items(item: dict) -> list[dict]:
    """The two sequences of an item as plain SFT-shaped items: [chosen, rejected] of a pair,
    [answer, mismatched KL answer] of a KTO row."""
    second = "rejected" if "rejected_ids" in item else "kl"
    return [{"input_ids": item["input_ids"], "labels": item["labels"], "row": item.get("row")},
            {"input_ids": item[f"{second}_ids"], "labels": item[f"{second}_labels"], "row": item.get("row")}]


def unpaired(examples: list[dict], rows: list[int]) -> tuple[list[dict], list[int]]:
    """KTO rows from examples: labelled rows as they are, a pair as its chosen answer
    (label true) and its rejected answer (label false)."""
    out, out_rows = [], []
    for ex, row in zip(examples, rows):
        if "rejected" in ex:
            chosen, rejected = sides(ex)
            out += [{**chosen, "label": True}, {**rejected, "label": False}]
            out_rows += [row, row]
        else:
            out.append(ex)
            out_rows.append(row)
    return out, out_rows


def tokenize_labelled(tokenizer, examples: list[dict], train_on: str, max_seq_len: int, overlong: str, *,
                      rows: list[int] | None = None, cache=True, cache_extra: str = "") -> tuple[list[dict], dict]:
    """KTO items: each row's answer with its label, plus a KL sequence, the row's prompt with
    the answer of the row before it (completions rotated by one, as TRL builds its KL
    pairs), whose log-ratio estimates the policy's drift from the reference."""
    rows = list(range(len(examples))) if rows is None else list(rows)
    examples, rows = unpaired(examples, rows)
    n = len(examples)
    kl_examples = [{**{k: v for k, v in ex.items() if k not in ("messages", "label")},
                    "messages": ex["messages"][:-1] + [examples[i - 1]["messages"][-1]]}
                   for i, ex in enumerate(examples)]
    plain = [{k: v for k, v in ex.items() if k != "label"} for ex in examples]
    pos = list(range(n))  # joined by position: a pair gives two rows from one source row
    main, st = tokenize_all(tokenizer, plain, train_on, max_seq_len, overlong, rows=pos, cache=cache,
                            cache_extra=cache_extra + ":kto")
    kl, st_kl = tokenize_all(tokenizer, kl_examples, train_on, max_seq_len, overlong, rows=pos, cache=cache,
                             cache_extra=cache_extra + ":kto-kl")
    kl_at = {it["row"]: it for it in kl}
    items = []
    for it in main:
        k = kl_at.get(it["row"])
        if k is not None:
            p = it["row"]
            items.append({"input_ids": it["input_ids"], "labels": last_answer_only(it["labels"]), "row": rows[p],
                          "kto_label": bool(examples[p]["label"]), "kl_ids": k["input_ids"],
                          "kl_labels": last_answer_only(k["labels"])})
    stats = {key: st.get(key, 0) for key in ("truncated", "dropped_overlong", "dropped_no_trainable",
                                             "dropped_template", "truncated_cut_assistant", "tokens",
                                             "trainable_tokens")}
    stats["rows_in"], stats["rows_out"] = n, len(items)
    stats["dropped_rows"] = [{"row": rows[d["row"]], "reason": d["reason"]} for d in st.get("dropped_rows", [])]
    stats["cache"] = st.get("cache") if st.get("cache") == st_kl.get("cache") else "partial"
    return items, stats


def trained_count(labels: list[int]) -> int:
    return sum(1 for x in labels[1:] if x != IGNORE)
