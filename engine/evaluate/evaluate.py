"""Base vs fine-tuned on every eval set: loss, perplexity and generation scores,
regressions beyond the threshold, and the LLM judge's verdicts.

The first set is the run's test split (the same rows as at training time: the split is a
pure function of the config), or the validation split when the run kept no test split;
then the sets of `eval.sets` (see engine/evaluate/sets.py). Writes RUN_DIR/eval/results.json,
RUN_DIR/eval/samples.jsonl (the held-out split) and RUN_DIR/eval/sets/<set>.jsonl, all
atomically. The base side is read from a stored baseline when one matches (baseline.py).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from engine import config as C
from engine import rundir
from engine.evaluate.score_sets import SetData
from engine.evaluate.sets import EvalSet, parse_sets

RESULTS = "results.json"
SAMPLES = "samples.jsonl"
SETS_DIR = "sets"
SCORE_KEYS = ("loss", "perplexity", "exact_match", "json_valid", "field_accuracy", "rouge_l", "contains",
              "regex_match", "schema_valid", "refusal_rate")
LOWER_IS_BETTER = {"loss", "perplexity"}
# the headline number of a set in one-line summaries: the first of these it has
HEADLINE_KEYS = ("refusal_rate", "schema_valid", "regex_match", "contains", "field_accuracy", "exact_match", "loss")
# perplexity moves with loss; checking both would report one regression twice
REGRESSION_KEYS = tuple(k for k in SCORE_KEYS if k != "perplexity")


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
    from engine.data.sources import load_examples

    mixed = load_examples(cfg.data, seed=cfg.data.split_seed)  # the reader and normaliser training used
    by_row = dict(zip(mixed.rows, mixed.examples))
    return [{**by_row[it["row"]], "row": it["row"]} for it in items if it["row"] in by_row]


def load_sets(cfg: C.RunConfig, tokenizer, prepared) -> list[SetData]:
    """Every eval set of the config, ready to score; the held-out split always comes first."""
    from engine.evaluate.score_sets import load_file_set

    wanted = parse_sets(cfg.eval.sets)
    if not any(s.name == "test" and s.path is None for s in wanted):
        wanted.insert(0, EvalSet(name="test", scorer="auto"))
    out = []
    for s in wanted:
        if s.name == "test" and s.path is None:
            split, items, note = held_out(prepared)
            examples = examples_for(cfg, prepared.fmt, items)
            rows = {ex["row"] for ex in examples}
            out.append(SetData(s, examples, [it for it in items if it["row"] in rows], note, split))
        else:
            out.append(load_file_set(cfg, s, tokenizer))
    return out


def effective_config(cfg: C.RunConfig, max_samples: int | None, max_new_tokens: int | None) -> C.RunConfig:
    """The config with command-line overrides applied (they change what the baseline means)."""
    if not max_samples and not max_new_tokens:
        return cfg
    cfg = cfg.copy()
    cfg.eval.max_samples = max_samples or cfg.eval.max_samples
    cfg.eval.max_new_tokens = max_new_tokens or cfg.eval.max_new_tokens
    return cfg


def score_sets(cfg: C.RunConfig, model, tokenizer, datas: list[SetData], *, data_hash,
               tuned: bool, plain: bool = False, train_examples: list[dict] | None = None,
               emit: Callable[..., Any] = None) -> tuple[dict[str, dict], dict[str, list[dict]], dict]:
    """({set: {side: metrics}}, {set: merged samples}, baseline info); the base side comes
    from the stored baseline when one matches, and is stored when none does."""
    from engine.evaluate import baseline as B
    from engine.evaluate.score_sets import merge_samples, score_side, wants_prompted

    emit = emit or _noop
    prompted = wants_prompted(cfg)
    key = B.baseline_key(cfg, data_hash, {d.set.name: d.content_hash for d in datas})
    stored = B.read(key)
    reuse = B.covers(stored, [d.set.name for d in datas], prompted)
    metrics: dict[str, dict] = {}
    samples: dict[str, list[dict]] = {}
    record: dict = {"config_hash": cfg.hash(), "model": cfg.model.name_or_path, "sets": {}}
    for d in datas:
        name = d.set.name
        emit("log", message=f"evaluating {name} ({len(d.items)} examples, scorer {d.set.scorer})")
        per: dict[str, dict] = {}
        recs: dict[str, list[dict]] = {}
        sides = (["base"] + (["prompted"] if prompted else [])) if not reuse else []
        for side in sides:
            per[side], recs[side] = score_side(model, tokenizer, cfg, d, side, plain=plain,
                                               train_examples=train_examples)
        if reuse:
            old = stored["sets"][name]
            for side in ("base", "prompted"):
                if side in old:
                    per[side], recs[side] = old[side], old.get(f"{side}_samples") or []
        else:
            record["sets"][name] = {**{w: per[w] for w in per}, **{f"{w}_samples": recs[w] for w in recs}}
        if tuned:
            per["tuned"], recs["tuned"] = score_side(model, tokenizer, cfg, d, "tuned", train_examples=train_examples)
        metrics[name] = per
        samples[name] = merge_samples(recs)
    if reuse:
        info = {"key": key, "reused": True, "created": stored.get("created"),
                "path": str(B.path_of(key))}
    else:
        path = B.write(key, record)
        info = {"key": key, "reused": False, "created": round(time.time(), 3), "path": str(path)}
    return metrics, samples, info


def evaluate_run(run_dir: str | Path, *, model=None, tokenizer=None, emit: Callable[..., Any] | None = None,
                 max_samples: int | None = None, max_new_tokens: int | None = None,
                 prepared=None) -> dict[str, Any]:
    """Evaluate a run's adapter against its base model on every eval set; returns the results dict.

    `model`/`tokenizer`: an in-memory PeftModel and its tokenizer (the training engine
    passes its own at the end of a run); otherwise both are loaded from RUN_DIR."""
    from engine.evaluate.generate import check_run_dir, load_for_inference

    run_dir = Path(run_dir)
    emit = emit or _noop
    cfg = check_run_dir(run_dir, need_adapter=model is None)
    t0 = time.perf_counter()
    emit("phase", phase="evaluating")
    if model is None:
        model, tokenizer, cfg = load_for_inference(run_dir, cfg)
    elif tokenizer is None:
        raise ValueError("evaluate_run: pass the tokenizer together with the model")
    cfg = effective_config(cfg, max_samples, max_new_tokens)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        if prepared is None:
            from engine.data.prepare import prepare

            prepared = prepare(cfg, tokenizer, emit=None)
        datas = load_sets(cfg, tokenizer, prepared)
        train_examples = _train_examples(cfg, prepared)
        metrics, samples, base_info = score_sets(
            cfg, model, tokenizer, datas, tuned=True,
            data_hash=(prepared.data_info or {}).get("content_hash"), train_examples=train_examples, emit=emit)
        result = assemble(cfg, datas, metrics, run=run_dir.name, baseline=base_info)
        result["regression_threshold"] = cfg.eval.regression_threshold
        result["regressions"] = find_regressions(result["sets"], cfg.eval.regression_threshold)
        out_dir = run_dir / rundir.EVAL
        _write_samples(out_dir, result, samples)
        from engine.evaluate.judge import judge_run

        result["judge"] = judge_run(cfg, samples, out_dir, emit=emit)
        result["time_s"] = round(time.perf_counter() - t0, 2)
        path = out_dir / RESULTS
        C.atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False))
        for r in result["regressions"]:
            emit("warning", kind="regression", set=r["set"], metric=r["metric"], base=r["base"], tuned=r["tuned"],
                 message=regression_message(r, cfg.eval.regression_threshold))
        emit("eval_result", base=result["base"], tuned=result["tuned"], delta=result["delta"], split=result["split"],
             path=str(path), sets={k: {w: v.get(w) for w in ("base", "prompted", "tuned", "delta") if w in v}
                                   for k, v in result["sets"].items()},
             regressions=result["regressions"], judge=_judge_brief(result["judge"]), baseline=base_info)
        return result
    finally:
        if was_training:
            model.train()


def _train_examples(cfg: C.RunConfig, prepared) -> list[dict]:
    """Normalised training examples, only when few-shot prompts are drawn from them."""
    if isinstance(cfg.eval.few_shot, list) or not cfg.eval.few_shot:
        return []
    items = list(getattr(prepared, "train", None) or [])[: 4 * int(cfg.eval.few_shot)]
    return examples_for(cfg, prepared.fmt, items)


def assemble(cfg: C.RunConfig, datas: list[SetData], metrics: dict[str, dict], **extra) -> dict[str, Any]:
    """The results dict: the held-out split's scores at the top (as `ftwb eval` always
    reported them) and every set under "sets"."""
    sets: dict[str, dict] = {}
    for d in datas:
        per = metrics[d.set.name]
        entry: dict[str, Any] = {"scorer": d.set.scorer, "path": d.set.path, "examples": len(d.items),
                                 "generated": max((per[w].get("generated", 0) for w in per), default=0)}
        for w in ("base", "prompted", "tuned"):
            if w in per:
                entry[w] = {k: v for k, v in per[w].items() if k not in ("generated", "json_task")}
        if "base" in entry and "tuned" in entry:
            entry["delta"] = deltas(entry["base"], entry["tuned"])
        if d.split:
            entry["split"], entry["note"] = d.split, d.note
        sets[d.set.name] = entry
    test = sets[datas[0].set.name]
    first = metrics[datas[0].set.name]
    result: dict[str, Any] = {
        **extra, "split": test.get("split", "test"), "note": test.get("note"), "examples": test["examples"],
        "generated": test["generated"],
        "json_task": any(first[w].get("json_task") for w in first if isinstance(first[w], dict)),
        "max_new_tokens": cfg.eval.max_new_tokens,
        "base": test.get("base", {}), "tuned": test.get("tuned", {}), "delta": test.get("delta", {}),
        "sets": sets, "model": cfg.model.name_or_path, "method": cfg.method, "config_hash": cfg.hash(),
        "created": round(time.time(), 3),
    }
    if "prompted" in test:
        result["prompted"] = test["prompted"]
    return result


def _write_samples(out_dir: Path, result: dict, samples: dict[str, list[dict]]) -> None:
    def lines(recs):
        return "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in recs)

    names = list(result["sets"])
    C.atomic_write_text(out_dir / SAMPLES, lines(samples[names[0]]))
    result["samples_path"] = str(out_dir / SAMPLES)
    for name in names:
        path = out_dir / SAMPLES if name == names[0] else out_dir / SETS_DIR / f"{_slug(name)}.jsonl"
        if name != names[0]:
            C.atomic_write_text(path, lines(samples[name]))
        result["sets"][name]["samples_path"] = str(path)


def _slug(name: str) -> str:
    return rundir.slugify(name)


def find_regressions(sets: dict[str, dict], threshold: float) -> list[dict]:
    """Where the fine-tuned side is worse than the base by more than the threshold: a score
    (0-1) lower by more than it, or a loss higher by more than that fraction."""
    out = []
    for name, entry in sets.items():
        base, tuned = entry.get("base") or {}, entry.get("tuned") or {}
        for k in REGRESSION_KEYS:
            a, b = base.get(k), tuned.get(k)
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                continue
            if k == "loss":
                change = (b - a) / a if a > 0 else 0.0
                worse = change > threshold
            else:
                change = b - a
                worse = -change > threshold
            if worse:
                out.append({"set": name, "metric": k, "base": a, "tuned": b, "change": round(change, 6)})
    return out


def regression_message(r: dict, threshold: float) -> str:
    if r["metric"] == "loss":
        what = f"loss rose {r['change'] * 100:.1f}% ({r['base']:.4f} -> {r['tuned']:.4f})"
    else:
        what = f"{r['metric']} fell {r['base']:.3f} -> {r['tuned']:.3f}"
    return (f"regression on eval set {r['set']}: {what}, beyond eval.regression_threshold {threshold:g}; "
            "the fine-tune may have lost general ability or safety behaviour (mix some of that data back in, "
            "lower the learning rate or train fewer steps)")


def _judge_brief(j: dict | None) -> dict | None:
    if not j:
        return None
    return {k: j.get(k) for k in ("mode", "model", "win_rate", "judged", "skipped", "path", "mean") if k in j}


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


def evaluate_base(cfg: C.RunConfig, *, emit: Callable[..., Any] | None = None,
                  max_samples: int | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
    """The baseline before any run: the base model (and the prompt-only variant) on every
    eval set, with the training template; stored under the runs root for later runs."""
    from engine.data.prepare import prepare
    from engine.data.template import ensure_chat_template
    from engine.evaluate.generate import load_base
    from engine.train.model import load_tokenizer, resolve_model_path

    emit = emit or _noop
    t0 = time.perf_counter()
    cfg = effective_config(cfg, max_samples, max_new_tokens)
    tok = load_tokenizer(cfg, resolve_model_path(cfg.model.name_or_path))
    ensure_chat_template(tok, cfg.model.chat_template)
    prepared = prepare(cfg, tok, emit=None)
    datas = load_sets(cfg, tok, prepared)
    data_hash = (prepared.data_info or {}).get("content_hash")
    from engine.evaluate import baseline as B
    from engine.evaluate.score_sets import wants_prompted

    key = B.baseline_key(cfg, data_hash, {d.set.name: d.content_hash for d in datas})
    model = None
    if not B.covers(B.read(key), [d.set.name for d in datas], wants_prompted(cfg)):
        model, _, _ = load_base(cfg)
    metrics, _, info = score_sets(cfg, model, tok, datas, data_hash=data_hash,
                                  tuned=False, plain=True, train_examples=_train_examples(cfg, prepared), emit=emit)
    result = assemble(cfg, datas, metrics, run=None, baseline=info)
    result["time_s"] = round(time.perf_counter() - t0, 2)
    return result


def baseline_for_run(run_dir: str | Path) -> dict | None:
    """The stored baseline an evaluated run used (None when it has none on file)."""
    from engine.evaluate import baseline as B

    res = read_results(run_dir) or {}
    key = (res.get("baseline") or {}).get("key")
    return B.read(key) if key else None
