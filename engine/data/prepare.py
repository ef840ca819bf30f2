"""From config to tokenised splits: sources (load -> map -> detect -> normalise -> mix) -> split -> tokenise (cached)."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.data import preference
from engine.data.checks import too_few_rows_message
from engine.data.errors import DataError, RowProblem
from engine.data.sources import cap_turns, load_examples
from engine.data.split import split_indices
from engine.data.template import ensure_chat_template
from engine.data.tokenize import tokenize_all

SUM_KEYS = ("rows_in", "rows_out", "truncated", "dropped_overlong", "dropped_no_trainable", "dropped_template",
            "truncated_cut_assistant", "tokens", "trainable_tokens")


@dataclass
class Prepared:
    train: list[dict]
    val: list[dict]
    test: list[dict]
    test_examples: list[dict]
    fmt: str
    fmt_reason: str
    stats: dict
    problems: list[RowProblem]
    data_info: dict = field(default_factory=dict)
    val_examples: list[dict] = field(default_factory=list)  # normalised val split, for generation scores


def _first(problems: list[RowProblem], n: int = 5) -> list[dict]:
    return [p.to_dict() for p in problems[:n]]


def prepare(cfg, tokenizer, emit=None) -> Prepared:
    emit = emit or (lambda type_, **fields: None)
    d = cfg.data
    # One reader and one normaliser, shared with `ftwb data check` and pre-flight.
    mixed = load_examples(d, seed=d.split_seed)
    source = ", ".join(s.load.source for s in mixed.sources)
    fmt, reason = mixed.fmt, mixed.reason
    for s in mixed.sources:  # before any row is tokenised
        preference.check_objective(cfg, "completion" if s.fmt == "text" else s.fmt, emit, s.spec.label)
    examples, rows, problems = mixed.examples, mixed.rows, mixed.problems
    if not examples:
        listed = "; ".join(p.message for p in problems[:3]) or "no rows"
        raise DataError(f"{source}: no usable rows as {fmt} ({listed}); fix these rows or set data.format")
    capped = cap_turns(examples, d.max_seq_len, tokenizer)
    if capped:
        emit("log", message=f"{capped} conversations have more messages than data.max_seq_len ({d.max_seq_len}) "
                            "tokens can hold; the messages past that were cut before tokenising")
    few = too_few_rows_message(len(examples), mixed.loaded)
    if few:  # the same words `ftwb data check` uses for this
        emit("warning", kind="too_few_rows", message=few)

    ensure_chat_template(tokenizer, getattr(cfg.model, "chat_template", None))
    parts = split_indices(len(examples), d.val_split, d.test_split, d.split_seed)
    digest = mixed.content_hash()
    out: dict[str, list[dict]] = {}
    stats: dict = {k: 0 for k in SUM_KEYS}
    stats["splits"] = {}
    dropped_rows = []
    for name in ("train", "val", "test"):
        idx = mixed.weighted(parts["train"], d.split_seed) if name == "train" else parts[name]
        tokenize_fn = preference.tokenize_fn(cfg)
        policy = {} if tokenize_fn else {"turn_policy": getattr(d, "turn_policy", "auto")}
        items, st = (tokenize_fn or tokenize_all)(tokenizer, [examples[i] for i in idx], d.train_on, d.max_seq_len,
                                                  d.overlong, rows=[rows[i] for i in idx],
                                                  cache_extra=f"{digest}:{fmt}:{name}", **policy)
        out[name] = items
        stats["splits"][name] = st
        for k in SUM_KEYS:
            stats[k] += st.get(k, 0)
        dropped_rows += st.get("dropped_rows", [])
        stats["cache"] = st.get("cache")
    refused = [dr for dr in dropped_rows if "chat template" in dr["reason"]]
    if stats["dropped_template"] * 2 > len(examples):  # most rows refused: an error now, not a poor run
        first = refused[0] if refused else None
        why = f"; first: {mixed.where(first['row'])}: {first['reason']}" if first else ""
        raise DataError(f"{source}: the chat template refused {stats['dropped_template']} of {len(examples)} rows"
                        f"{why}; set model.chat_template to a template that fits these conversations, "
                        "or fix the rows (ftwb data tokens FILE --model DIR shows each one)")
    # Rows dropped while tokenising are problems too, with their line where the source has lines.
    for dr in dropped_rows:
        line = mixed.lines[dr["row"]] if dr["row"] < len(mixed.lines) else None
        problems.append(RowProblem(dr["row"], line, f"{mixed.where(dr['row'])}: dropped: {dr['reason']}"))
    if not out["train"]:
        listed = "; ".join(p.message for p in problems[:3]) or "every row was dropped"
        raise DataError(f"{source}: no training examples left after tokenising ({listed}); "
                        "raise data.max_seq_len or set data.overlong: truncate")

    dropped = stats["dropped_overlong"] + stats["dropped_no_trainable"] + stats["dropped_template"]
    emit("data", rows=mixed.loaded, usable=len(examples), format=fmt, format_reason=reason,
         train=len(out["train"]), val=len(out["val"]), test=len(out["test"]), truncated=stats["truncated"],
         dropped=dropped, tokens=stats["tokens"], trainable_tokens=stats["trainable_tokens"],
         problems=len(problems), first_problems=_first(problems), cache=stats.get("cache"))
    if stats["truncated"] or dropped:
        bits = []
        if stats["truncated"]:
            bits.append(f"{stats['truncated']} examples truncated to {d.max_seq_len} tokens"
                        + (f" ({stats['truncated_cut_assistant']} lose part of an answer)"
                           if stats["truncated_cut_assistant"] else ""))
        if stats["dropped_overlong"]:
            bits.append(f"{stats['dropped_overlong']} dropped as longer than {d.max_seq_len} tokens")
        if stats["dropped_no_trainable"]:
            bits.append(f"{stats['dropped_no_trainable']} dropped with no trainable tokens")
        if stats["dropped_template"]:
            bits.append(f"{stats['dropped_template']} dropped because the chat template refused them")
        emit("warning", kind="truncation", message="; ".join(bits) + "; consider raising data.max_seq_len")

    version = mixed.sources[0].version() if len(mixed.sources) == 1 else {}
    data_info = {
        "source": source, "content_hash": digest, "kind": "+".join(sorted({s.load.kind for s in mixed.sources})),
        "format": fmt, "format_reason": reason,
        "rows_total": mixed.records, "rows_usable": len(examples),
        "splits": {k: len(v) for k, v in out.items()}, "split_seed": d.split_seed, "problems": len(problems),
        "version": version.get("version"),
        "sources": mixed.info(),  # each source's path, version, hash, format, mapping, split, weight
    }
    if version.get("operations") is not None:
        data_info["operations"] = version["operations"]
    return Prepared(train=out["train"], val=out["val"], test=out["test"],
                    test_examples=[examples[i] for i in parts["test"]], fmt=fmt, fmt_reason=reason,
                    stats=stats, problems=problems, data_info=data_info,
                    val_examples=[examples[i] for i in parts["val"]])
