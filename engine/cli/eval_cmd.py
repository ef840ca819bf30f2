"""`ftwb eval RUN_DIR`: base vs fine-tuned on every eval set, or the worst examples;
`ftwb eval --base CONFIG`: the baseline before any run (stored for later runs).

Exit 0 on success, 1 when evaluation fails, 2 on bad input (not a run, no adapter).
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LABELS = {"loss": "loss", "perplexity": "perplexity", "exact_match": "exact match", "json_valid": "valid JSON",
          "field_accuracy": "field accuracy", "rouge_l": "ROUGE-L", "contains": "contains", "regex_match": "regex",
          "schema_valid": "schema valid", "refusal_rate": "refusal rate"}


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run: base vs fine-tuned loss and generation scores",
                       description="Evaluate RUN_DIR's adapter against its base model on the test split "
                                   "(the validation split when there is none). Writes RUN_DIR/eval/.")
    p.add_argument("run_dir", nargs="?", help="run directory")
    p.add_argument("--base", metavar="CONFIG",
                   help="instead: score the base model of CONFIG (with its template, eval sets, system prompt "
                        "and few-shot examples) before any run; stored so later runs show baseline -> tuned")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--max-samples", type=int, metavar="N", help="generate for at most N examples")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="generation length")
    p.add_argument("--worst", type=int, metavar="N",
                   help="instead: list the N train/val examples with the highest loss after training")
    p.set_defaults(func=run)


def _err(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"ftwb eval: {msg}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.evaluate.generate import RunNotReady, check_run_dir

    for name in ("max_samples", "max_new_tokens", "worst"):
        v = getattr(args, name)
        if v is not None and v < 1:
            return _err(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if args.base:
        if args.run_dir or args.worst:
            return _err("--base takes a config file; do not pass a run directory or --worst with it")
        return _run_base(args)
    if not args.run_dir:
        return _err("pass a run directory (see `ftwb runs`), or --base CONFIG for a baseline before training")
    run_dir = Path(args.run_dir)
    try:
        check_run_dir(run_dir)
    except RunNotReady as e:
        return _err(str(e))
    try:
        if args.worst:
            return _print_worst(run_dir, args.worst, args.json)
        from engine.evaluate.evaluate import evaluate_run

        res = evaluate_run(run_dir, max_samples=args.max_samples, max_new_tokens=args.max_new_tokens)
    except Exception as e:  # noqa: BLE001 - a one-line message, never a traceback
        return _failure(e)
    if args.json:
        print(json.dumps(res, indent=1, ensure_ascii=False))
    else:
        print_results(res)
    return EXIT_OK


def _run_base(args: argparse.Namespace) -> int:
    from engine import config as C
    from engine import launch
    from engine.evaluate.sets import missing_files

    try:
        cfg = launch.resolve_paths(C.load(args.base))
    except C.ConfigError as e:
        return _err(str(e))
    problem = missing_files(cfg)
    if problem:
        return _err(problem)
    try:
        from engine.evaluate.evaluate import evaluate_base

        res = evaluate_base(cfg, max_samples=args.max_samples, max_new_tokens=args.max_new_tokens)
    except Exception as e:  # noqa: BLE001 - a one-line message, never a traceback
        return _failure(e)
    if args.json:
        print(json.dumps(res, indent=1, ensure_ascii=False))
    else:
        print_sets(res, title=f"baseline of {cfg.model.name_or_path}")
        b = res.get("baseline") or {}
        print(("stored baseline reused: " if b.get("reused") else "baseline stored: ") + str(b.get("path")))
    return EXIT_OK


def _failure(e: Exception) -> int:
    from engine.config import ConfigError
    from engine.data.errors import DataError
    from engine.evaluate.generate import RunNotReady
    from engine.evaluate.sets import EvalSetError
    from engine.train.model import ModelError

    if isinstance(e, (ConfigError, DataError, ModelError, RunNotReady, EvalSetError)):
        return _err(str(e))
    return _err(f"evaluation failed: {type(e).__name__}: {e}", EXIT_FAILED)


SIDES = (("base", "base"), ("prompted", "prompted"), ("tuned", "fine-tuned"))


def print_sets(res: dict, title: str = "") -> None:
    """One row per eval set and metric: base (prompt-only) fine-tuned, regressions in red."""
    from rich.console import Console
    from rich.table import Table

    from engine.evaluate.evaluate import improved

    console = Console()
    sets = res.get("sets") or {}
    sides = [(k, label) for k, label in SIDES if any(k in e for e in sets.values())]
    flagged = {(r["set"], r["metric"]) for r in res.get("regressions") or []}
    t = Table(title=title or None, header_style="bold")
    with_delta = any(k == "tuned" for k, _ in sides) and len(sides) > 1
    for col in ("set", "metric", *(label for _, label in sides), *(("delta",) if with_delta else ())):
        t.add_column(col, justify="left" if col in ("set", "metric") else "right")
    for name, e in sets.items():
        for key, label in LABELS.items():
            if not any(key in (e.get(k) or {}) for k, _ in sides):
                continue
            cells = [_num((e.get(k) or {}).get(key)) for k, _ in sides]
            d = (e.get("delta") or {}).get(key)
            if with_delta:
                bad = (name, key) in flagged
                style = "bold red" if bad else ("" if not d else ("green" if improved(key, d) else "red"))
                dtxt = "-" if d is None else f"{d:+.4f}" + (" REGRESSION" if bad else "")
                cells.append(f"[{style}]{dtxt}[/]" if style else dtxt)
            t.add_row(f"{name} ({e.get('examples')})", label, *cells)
    console.print(t)


def print_results(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.evaluate.evaluate import improved

    console = Console()
    t = Table(title=f"{res['run']}: {res['split']} split, {res['examples']} examples "
                    f"({res.get('generated', 0)} generated)", header_style="bold")
    for col in ("metric", "base", "fine-tuned", "delta"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    base, tuned, delta = res["base"], res["tuned"], res.get("delta", {})
    for key, label in LABELS.items():
        if key not in base and key not in tuned:
            continue
        d = delta.get(key)
        style = "" if d is None or d == 0 else ("green" if improved(key, d) else "red")
        t.add_row(label, _num(base.get(key)), _num(tuned.get(key)),
                  f"[{style}]{d:+.4f}[/]" if d is not None and style else (_num(d) if d is not None else "-"))
    console.print(t)
    if res.get("note"):
        console.print(f"[yellow]note:[/] {res['note']}")
    console.print(f"samples: {res.get('samples_path')}")
    if len(res.get("sets") or {}) > 1:
        print_sets(res, title="every eval set: baseline -> fine-tuned")
    for r in res.get("regressions") or []:
        from engine.evaluate.evaluate import regression_message

        console.print(f"[bold red]regression:[/] {regression_message(r, res.get('regression_threshold', 0.05))}")
    j = res.get("judge") or {}
    if j.get("skipped"):
        console.print(f"[dim]judge: {j['skipped']}[/]")
    elif j:
        console.print(judge_line(j))
    b = res.get("baseline") or {}
    if b:
        console.print(f"[dim]baseline {'reused from' if b.get('reused') else 'stored in'} {b.get('path')}[/]")


def judge_line(j: dict) -> str:
    v = j.get("verdicts") or {}
    wr = j.get("win_rate")
    head = f"judge {j.get('model')} ({j.get('mode')}): " + (
        f"fine-tuned win rate {wr * 100:.0f}%" if isinstance(wr, (int, float)) else "no verdict")
    counts = ", ".join(f"{k} {v[k]}" for k in ("tuned", "base", "tie", "unparsed", "failed") if v.get(k))
    mean = j.get("mean") or {}
    means = f"; mean score base {mean.get('base')} vs fine-tuned {mean.get('tuned')}" if mean else ""
    return f"{head} over {j.get('judged', 0)} samples ({counts}){means}; verdicts: {j.get('path')}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_worst(run_dir, n: int, as_json: bool) -> int:
    from rich.console import Console
    from rich.table import Table

    from engine.evaluate.per_sample import worst

    top = worst(run_dir, n)
    if as_json:
        print(json.dumps(top, indent=1, ensure_ascii=False))
        return EXIT_OK
    t = Table(title=f"{run_dir.name}: {len(top)} highest-loss examples", header_style="bold")
    for col in ("split", "row", "line", "loss", "tokens", "example"):
        t.add_column(col, justify="right" if col in ("row", "line", "loss", "tokens") else "left")
    for r in top:
        t.add_row(r["split"], str(r["row"]), "-" if r.get("line") is None else str(r["line"]),
                  _num(r.get("loss")), str(r.get("tokens")), r.get("preview", ""))
    Console().print(t)
    return EXIT_OK
