"""`ftwb data tokens FILE --model DIR`: the headless token view. Each training example of
each row, with the tokens that train marked, from exactly the code path training uses
(sources -> normalise -> plan_row -> tokenize_plans)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from engine.cli.data import _emit, _fail


def register(dsub) -> None:
    t = dsub.add_parser("tokens", help="show which tokens of each row train (the headless token view)")
    t.add_argument("file", help="dataset file (.jsonl, .json, .csv, .parquet, ...) or saved dataset directory")
    t.add_argument("--model", required=True,
                   help="local model or tokenizer directory (tokenizer.json + tokenizer_config.json is enough)")
    t.add_argument("--config", help="run config whose data settings (format, columns, roles, train_on, "
                                    "turn_policy) and model.chat_template apply; FILE replaces data.path")
    t.add_argument("--rows", default="0:5", help="rows to show, A:B (0-based, B excluded; default 0:5)")
    t.add_argument("--json", action="store_true", help="one JSON object per training example")
    t.set_defaults(func=run_tokens)


def _rows(spec: str) -> tuple[int, int | None] | None:
    a, sep, b = spec.partition(":")
    try:
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else None
    except ValueError:
        return None
    if not sep:
        stop = start + 1
    if start < 0 or (stop is not None and stop <= start):
        return None
    return start, stop


def run_tokens(args: argparse.Namespace) -> int:
    from engine.data.errors import DataError, RowError

    rng = _rows(args.rows)
    if rng is None:
        return _fail("tokens", f"--rows {args.rows}: expected A:B with 0 <= A < B, e.g. 0:10")
    data = SimpleNamespace(path=str(args.file), format="auto", columns={}, roles={}, split=None,
                           text_documents="file")
    train_on, policy, template = "assistant", "auto", None
    if args.config:
        from engine import config as C

        try:
            cfg = C.load(args.config)
        except C.ConfigError as e:
            return _fail("tokens", str(e))
        d = cfg.data
        data = SimpleNamespace(path=str(args.file), format=d.format, columns=d.columns, roles=d.roles,
                               split=d.split, text_documents=d.text_documents)
        train_on, policy, template = d.train_on, d.turn_policy, cfg.model.chat_template
    if not Path(args.model).is_dir():
        return _fail("tokens", f"--model {args.model}: not a local directory; give a folder with tokenizer files")
    from engine.data.sources import load_examples

    try:
        mixed = load_examples(data)
    except DataError as e:
        return _fail("tokens", str(e))
    except (OSError, ValueError) as e:
        return _fail("tokens", f"{args.file}: cannot read ({e}); check the file")
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    except Exception as e:  # any load failure is a bad argument, not a crash
        return _fail("tokens", f"--model {args.model}: cannot load a tokenizer ({str(e).splitlines()[0][:200]})")
    from engine.data.template import IGNORE, ensure_chat_template, plan_row, tokenize_plans

    try:
        ensure_chat_template(tok, template)
    except DataError as e:
        return _fail("tokens", str(e))
    start, stop = rng
    wanted = [(ex, r) for ex, r in zip(mixed.examples, mixed.rows) if r >= start and (stop is None or r < stop)]
    bad = {p.row: p.message for p in mixed.problems if p.row >= start and (stop is None or p.row < stop)}
    order = sorted([(r, None) for r in bad] + [(r, ex) for ex, r in wanted], key=lambda x: x[0])
    for row, ex in order:
        line = mixed.lines[row] if row < len(mixed.lines) else None
        if ex is None:  # the normaliser refused it: training never sees it
            if args.json:
                _emit(json.dumps({"row": row, "line": line, "dropped": bad[row]}, ensure_ascii=False))
            else:
                _emit(f"row {row}: dropped: {bad[row]}")
            continue
        try:
            plans = plan_row(tok, ex, train_on, policy)
        except (RowError, DataError) as e:
            if args.json:
                _emit(json.dumps({"row": row, "line": line, "dropped": str(e)}, ensure_ascii=False))
            else:
                _emit(f"row {row}{f' (line {line})' if line else ''}: dropped: {e}")
            continue
        for n, t in enumerate(tokenize_plans(tok, plans)):
            plan = t.plan
            trained = sum(1 for x in t.labels[1:] if x != IGNORE)
            literal = sorted({plan.text[s:e] for s, e in plan.literal})
            if args.json:
                _emit(json.dumps({
                    "line": line, "row": row, "example": n, "turn": plan.turn, "policy": plan.policy or None,
                    "input_ids": t.input_ids, "labels": t.labels, "tokens": len(t.input_ids),
                    "trainable_tokens": trained, "text": plan.text,
                    "trained_spans": [list(s) for s in plan.spans], "special_text_in_content": literal,
                    "notes": plan.notes}, ensure_ascii=False))
            else:
                _print_example(tok, row, line, n, len(plans), t, trained, literal)
    return 0


def _print_example(tok, row, line, n, of, t, trained, literal) -> None:
    from rich.console import Console
    from rich.text import Text

    from engine.data.template import IGNORE

    con = Console(highlight=False, soft_wrap=True)
    plan = t.plan
    head = f"row {row}" + (f" (line {line})" if line else "") + (f" example {n + 1}/{of}" if of > 1 else "")
    head += f": {len(t.input_ids)} tokens, {trained} trained"
    if plan.policy:
        head += f", turn policy {plan.policy}"
    con.print(Text(head, style="bold"))
    for note in plan.notes:
        con.print(Text(f"  ! {note}", style="yellow"))
    if literal:
        con.print(Text(f"  ! special-token text in content, tokenised as text: {', '.join(literal)}",
                       style="yellow"))
    body, inside = Text(), False
    for i, lab in zip(t.input_ids, t.labels):
        if (lab != IGNORE) != inside:  # ⟦ ⟧ around trained stretches, also without colour
            body.append("⟦" if not inside else "⟧", style="bold green")
            inside = not inside
        body.append(tok.decode([i]), style="green" if lab != IGNORE else "dim")
    if inside:
        body.append("⟧", style="bold green")
    con.print(body)
