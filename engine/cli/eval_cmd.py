"""`ftwb eval RUN_DIR`: base vs fine-tuned on the held-out split, or the worst examples.

Exit 0 on success, 1 when evaluation fails, 2 on bad input (not a run, no adapter).
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LABELS = {"loss": "loss", "perplexity": "perplexity", "exact_match": "exact match", "json_valid": "valid JSON",
          "field_accuracy": "field accuracy", "rouge_l": "ROUGE-L"}


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run: base vs fine-tuned loss and generation scores",
                       description="Evaluate RUN_DIR's adapter against its base model on the test split "
                                   "(the validation split when there is none). Writes RUN_DIR/eval/.")
    p.add_argument("run_dir", help="run directory")
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
    except RunNotReady as e:
        return _err(str(e))
    except Exception as e:  # noqa: BLE001 - a one-line message, never a traceback
        from engine.config import ConfigError
        from engine.data.errors import DataError
        from engine.train.model import ModelError

        if isinstance(e, (ConfigError, DataError, ModelError)):
            return _err(str(e))
        return _err(f"evaluation failed: {type(e).__name__}: {e}", EXIT_FAILED)
    if args.json:
        print(json.dumps(res, indent=1, ensure_ascii=False))
    else:
        print_results(res)
    return EXIT_OK


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
