"""Scoring one eval set on one side of a model: loss on the references, and generations
scored by the set's scorer.

Sides: "base" (adapter off), "tuned" (adapter on) and "prompted" (the base model with the
eval config's system prompt and few-shot examples in front of each prompt: the
prompt-only baseline). `plain=True` means the model has no adapter (`ftwb eval --base`).
"""
from __future__ import annotations

from typing import Any

from engine import config as C
from engine.evaluate import scores
from engine.evaluate.sets import EvalSet, EvalSetError, load_schema


class SetData:
    """An eval set ready to score: normalised examples (with "row"), tokenised items, a note."""

    def __init__(self, s: EvalSet, examples: list[dict], items: list[dict], note: str | None = None,
                 split: str | None = None, content_hash: str | None = None):
        self.set, self.examples, self.items, self.note, self.split = s, examples, items, note, split
        self.content_hash = content_hash


def load_file_set(cfg: C.RunConfig, s: EvalSet, tokenizer) -> SetData:
    """Read, normalise and tokenise an eval set file with the run's template and length settings."""
    from engine.data.detect import detect_format
    from engine.data.errors import DataError
    from engine.data.load import content_hash, load_rows
    from engine.data.normalize import normalize_rows
    from engine.data.tokenize import tokenize_all

    try:
        loaded = load_rows(s.path)
        fmt = s.format if s.format != "auto" else detect_format(loaded.rows)[0]
        examples, rows, _ = normalize_rows(loaded, fmt)
    except DataError as e:
        raise EvalSetError(f"eval set {s.name}: {e}") from None
    if s.max_rows:
        examples, rows = examples[:s.max_rows], rows[:s.max_rows]
    if not examples:
        raise EvalSetError(f"eval set {s.name}: {s.path} has no usable rows; check the file or its format")
    items, _ = tokenize_all(tokenizer, examples, cfg.data.train_on, cfg.data.max_seq_len, cfg.data.overlong,
                            rows=rows, cache=False)
    by_row = {it["row"]: it for it in items}
    kept = [{**ex, "row": r} for ex, r in zip(examples, rows) if r in by_row]
    return SetData(s, kept, [by_row[ex["row"]] for ex in kept], content_hash=content_hash(s.path))


def prompt_messages(cfg: C.RunConfig, msgs: list[dict], prompted: bool, train_examples: list[dict]) -> list[dict]:
    """The prompt as given to a side: unchanged, or with the prompt-only baseline's system
    prompt and few-shot turns in front."""
    if not prompted:
        return msgs
    ev = cfg.eval
    head: list[dict] = []
    body = list(msgs)
    if ev.system_prompt:
        body = [m for m in body if m.get("role") != "system"]
        head.append({"role": "system", "content": ev.system_prompt})
    shots = ev.few_shot if isinstance(ev.few_shot, list) else _shots_from(train_examples, int(ev.few_shot or 0))
    for shot in shots:
        head += [{"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]}]
    if head and body and body[0].get("role") == "system" and not ev.system_prompt:
        return [body[0], *head, *body[1:]]
    return head + body


def _shots_from(examples: list[dict], n: int) -> list[dict]:
    from engine.evaluate.generate import split_prompt

    out = []
    for ex in examples:
        if len(out) >= n:
            break
        msgs, ref = split_prompt(ex.get("messages") or [])
        users = [m["content"] for m in msgs if m.get("role") == "user"]
        if users and ref:
            out.append({"user": users[-1], "assistant": ref})
    return out


def wants_prompted(cfg: C.RunConfig) -> bool:
    return bool(cfg.eval.system_prompt) or bool(cfg.eval.few_shot)


def score_side(model, tokenizer, cfg: C.RunConfig, data: SetData, side: str, *, plain: bool = False,
               max_samples: int | None = None, max_new_tokens: int | None = None,
               train_examples: list[dict] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """(metrics, per-sample records) of one side on one set."""
    from engine.evaluate.generate import encode_prompt, generate_batch, split_prompt
    from engine.evaluate.losses import example_losses, mean_loss

    which = "tuned" if plain or side == "tuned" else "base"
    s = data.set
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metrics: dict[str, Any] = {}
    if side != "prompted":
        metrics.update(mean_loss(example_losses(model, data.items, which, pad_id=pad)))
    if not s.generates:
        return metrics, []
    limit = max_samples or cfg.eval.max_samples
    prompts, records = [], []
    for ex in data.examples[:limit]:
        if "messages" not in ex:
            continue  # completion-style examples have no prompt to generate from
        msgs, ref = split_prompt(ex["messages"])
        if not msgs:
            continue
        shown = prompt_messages(cfg, msgs, side == "prompted", train_examples or [])
        prompts.append(encode_prompt(tokenizer, shown))
        records.append({"row": ex["row"], "prompt": msgs, "reference": ref})
    new_tokens = max_new_tokens or cfg.eval.max_new_tokens
    outputs = generate_batch(model, tokenizer, prompts, new_tokens, which=which) if prompts else []
    refs = [r["reference"] for r in records]
    json_ref = s.scorer == "json" or (s.scorer == "auto" and bool(refs)
                                      and sum(scores.is_json_reference(r) for r in refs) * 2 >= len(refs))
    schema = load_schema(s) if s.scorer == "json_schema" else None
    per = [scores.score_for(s.scorer, o, r, json_ref=json_ref, pattern=s.pattern, schema=schema)
           for o, r in zip(outputs, refs)]
    metrics.update(scores.aggregate(per))
    metrics["generated"] = len(outputs)
    if s.scorer == "auto":
        metrics["json_task"] = json_ref
    for rec, out, sc in zip(records, outputs, per):
        rec["answer"], rec["scores"] = out, sc
    return metrics, records


def merge_samples(by_side: dict[str, list[dict]]) -> list[dict]:
    """One record per prompt with every side's answer and scores: {"base", "base_scores", ...}."""
    sides = [w for w in ("base", "prompted", "tuned") if by_side.get(w)]
    if not sides:
        return []
    out = []
    for i, first in enumerate(by_side[sides[0]]):
        rec = {"index": i, "row": first["row"], "prompt": first["prompt"], "reference": first["reference"]}
        for w in sides:
            if i < len(by_side[w]):
                rec[w], rec[f"{w}_scores"] = by_side[w][i]["answer"], by_side[w][i]["scores"]
        out.append(rec)
    return out
