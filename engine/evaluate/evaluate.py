"""Base vs fine-tuned on held-out data: loss, perplexity and generation scores.

The split is the run's test split (the same rows as at training time: the split is a pure
function of the config), or the validation split when the run kept no test split. Writes
RUN_DIR/eval/results.json and RUN_DIR/eval/samples.jsonl, both atomically.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from engine import config as C
from engine import rundir
from engine.evaluate import scores

RESULTS = "results.json"
SAMPLES = "samples.jsonl"
SCORE_KEYS = ("loss", "perplexity", "exact_match", "json_valid", "field_accuracy", "rouge_l")
LOWER_IS_BETTER = {"loss", "perplexity"}


def _noop(*_a, **_k) -> None:
    return None


def held_out(prepared) -> tuple[str, list[dict], str | None]:
    """(split name, tokenised items, note) of the held-out data."""
    test = list(getattr(prepared, "test", None) or [])
    if test:
        return "test", test, None
    note = ("this run kept no test split (data.test_split is 0), so the validation split was used; "
            "it also chose the best checkpoint, so these scores are optimistic")
    return "val", list(getattr(prepared, "val", None) or []), note


def examples_for(cfg: C.RunConfig, fmt: str, items: list[dict]) -> list[dict]:
    """The normalised example of each tokenised item (same order), with its "row"."""
    from engine.data.load import load_rows
    from engine.data.normalize import normalize_rows

    examples, rows, _ = normalize_rows(load_rows(cfg.data.path), fmt)
    by_row = dict(zip(rows, examples))
    return [{**by_row[it["row"]], "row": it["row"]} for it in items if it["row"] in by_row]


def evaluate_run(run_dir: str | Path, *, model=None, tokenizer=None, emit: Callable[..., Any] | None = None,
                 max_samples: int | None = None, max_new_tokens: int | None = None,
                 prepared=None) -> dict[str, Any]:
    """Evaluate a run's adapter against its base model; returns the results dict.

    `model`/`tokenizer`: an in-memory PeftModel and its tokenizer (the training engine
    passes its own at the end of a run); otherwise both are loaded from RUN_DIR."""
    from engine.evaluate.generate import check_run_dir, encode_prompt, generate_batch, load_for_inference, split_prompt
    from engine.evaluate.losses import example_losses, mean_loss

    run_dir = Path(run_dir)
    emit = emit or _noop
    cfg = check_run_dir(run_dir, need_adapter=model is None)
    t0 = time.perf_counter()
    emit("phase", phase="evaluating")
    if model is None:
        model, tokenizer, cfg = load_for_inference(run_dir, cfg)
    elif tokenizer is None:
        raise ValueError("evaluate_run: pass the tokenizer together with the model")
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        if prepared is None:
            from engine.data.prepare import prepare

            prepared = prepare(cfg, tokenizer, emit=None)
        split, items, note = held_out(prepared)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        result: dict[str, Any] = {"run": run_dir.name, "split": split, "note": note, "examples": len(items)}
        sides: dict[str, dict[str, Any]] = {}
        for which in ("base", "tuned"):
            sides[which] = mean_loss(example_losses(model, items, which, pad_id=pad))

        limit = max_samples or cfg.eval.max_samples
        new_tokens = max_new_tokens or cfg.eval.max_new_tokens
        chosen = examples_for(cfg, prepared.fmt, items[:limit])
        prompts, refs, prompt_msgs, sample_rows = [], [], [], []
        for ex in chosen:
            msgs, ref = split_prompt(ex["messages"]) if "messages" in ex else ([], "")
            if not msgs:
                continue  # completion-style examples have no prompt to generate from
            prompt_msgs.append(msgs)
            sample_rows.append(ex["row"])
            refs.append(ref)
            prompts.append(encode_prompt(tokenizer, msgs))
        json_task = bool(refs) and sum(scores.is_json_reference(r) for r in refs) * 2 >= len(refs)
        outputs = {w: generate_batch(model, tokenizer, prompts, new_tokens, which=w) if prompts else []
                   for w in ("base", "tuned")}
        per = {w: [scores.score_one(o, r, json_task) for o, r in zip(outputs[w], refs)] for w in outputs}
        for w in ("base", "tuned"):
            sides[w].update(scores.aggregate(per[w]))
        result.update({
            "generated": len(prompts), "json_task": json_task, "max_new_tokens": new_tokens,
            "base": sides["base"], "tuned": sides["tuned"], "delta": deltas(sides["base"], sides["tuned"]),
            "model": cfg.model.name_or_path, "method": cfg.method, "config_hash": cfg.hash(),
            "created": round(time.time(), 3), "time_s": round(time.perf_counter() - t0, 2),
        })
        out_dir = run_dir / rundir.EVAL
        samples = []
        for i, (msgs, ref) in enumerate(zip(prompt_msgs, refs)):
            samples.append({"index": i, "row": sample_rows[i], "prompt": msgs, "reference": ref,
                            "base": outputs["base"][i], "tuned": outputs["tuned"][i],
                            "base_scores": per["base"][i], "tuned_scores": per["tuned"][i]})
        C.atomic_write_text(out_dir / SAMPLES, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
        result["samples_path"] = str(out_dir / SAMPLES)
        path = out_dir / RESULTS
        C.atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False))
        emit("eval_result", base=sides["base"], tuned=sides["tuned"], delta=result["delta"], split=split,
             path=str(path))
        return result
    finally:
        if was_training:
            model.train()


def deltas(base: dict, tuned: dict) -> dict[str, float]:
    out = {}
    for k in SCORE_KEYS:
        a, b = base.get(k), tuned.get(k)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            out[k] = round(b - a, 6)
    return out


def improved(key: str, delta: float) -> bool:
    return delta < 0 if key in LOWER_IS_BETTER else delta > 0


def read_results(run_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / rundir.EVAL / RESULTS).read_text())
    except (FileNotFoundError, ValueError):
        return None
