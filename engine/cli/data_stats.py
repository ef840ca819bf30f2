"""`ftwb data stats FILE --model DIR`: token statistics over every row of a dataset with
the model's tokenizer and chat template, as training renders and masks them: the length
histogram against max_seq_len, trained tokens, overlong rows and cut assistant turns,
packing efficiency and unusable rows by reason. Cached per file version and tokenizer
(engine.data.token_stats), so a second run on the same file is instant.

Exit codes: 0 figures printed, 2 the file or the arguments cannot be used, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.cli.data import _emit, _fail

BAR = 40


def register(dsub) -> None:
    s = dsub.add_parser("stats", help="token statistics over every row: lengths, trained tokens, overlong rows")
    s.add_argument("file", nargs="?", help="dataset file (.jsonl, .json, .csv, .parquet, ...) or saved dataset "
                                           "directory (default: the --config's data.path)")
    s.add_argument("--model", help="local model or tokenizer directory, or 'demo' (default: the --config's model)")
    s.add_argument("--config", help="run config whose data settings (format, columns, roles, train_on, turn_policy, "
                                    "max_seq_len) and model.chat_template apply")
    s.add_argument("--format", choices=("chat", "sharegpt", "alpaca", "completion", "preference", "kto", "text"),
                   help="row format (default: the config's, else detected)")
    s.add_argument("--max-seq-len", type=int, default=None, help="token limit (default: the config's, else 2048)")
    s.add_argument("--sample", type=int, default=None, help="tokenise an even sample of N rows instead of all")
    s.add_argument("--no-cache", action="store_true", help="recompute even if these figures are cached")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=run_stats)


class _Bar:
    """Tokenising progress: rows done of the total (estimated from bytes for a line file)."""

    def __init__(self, total: int | None):
        from engine.cli.progress_line import ProgressLine

        self.line, self.total, self.t0 = ProgressLine(0.2), total, time.monotonic()

    def __call__(self, st) -> None:
        if not self.line.due():
            return
        done = st.rows
        total = self.total or st.total
        if not total and st.total_bytes and st.done_bytes:  # a line file: rows estimated from bytes read
            total = max(done, int(st.read_rows * st.total_bytes / st.done_bytes))
        rate = done / max(1e-6, time.monotonic() - self.t0)
        left = f", {(total - done) / rate:.0f} s left" if total and rate else ""
        self.line.show(f"tokenising {done:,} / {f'{total:,}' if total else '?'} rows, {rate:,.0f} rows/s{left}",
                       min(1.0, done / total) if total else 0.0, width=30)

    def close(self) -> None:
        self.line.close()


def run_stats(args: argparse.Namespace) -> int:
    from engine.data import token_stats as T
    from engine.data.errors import DataError

    if args.max_seq_len is not None and args.max_seq_len < 1:
        return _fail("stats", f"--max-seq-len {args.max_seq_len}: must be a positive number of tokens, e.g. 2048")
    if args.sample is not None and args.sample < 1:
        return _fail("stats", f"--sample {args.sample}: must be a positive number of rows, e.g. 20000")
    path, model, template = args.file, args.model, None
    settings = T.Settings(fmt=args.format or "auto", max_seq_len=args.max_seq_len or 2048)
    if args.config:
        from engine import config as C

        try:
            cfg = C.load(args.config)
        except C.ConfigError as e:
            return _fail("stats", str(e))
        d = cfg.data
        path = path or str(d.path)
        model = model or cfg.model.name_or_path
        template = cfg.model.chat_template
        settings = T.Settings(fmt=args.format or d.format, max_seq_len=args.max_seq_len or int(d.max_seq_len),
                              train_on=d.train_on, turn_policy=d.turn_policy, columns=dict(d.columns or {}),
                              roles=dict(d.roles or {}))
    if not path:
        return _fail("stats", "give a dataset FILE (or --config CONFIG with data.path)")
    if not model:
        return _fail("stats", "give --model DIR (a local model or tokenizer directory, or 'demo')")
    tok = _tokenizer(model, template)
    if isinstance(tok, str):
        return _fail("stats", tok)
    try:
        if settings.fmt == "auto":
            fmt, reason = T.detect_file_format(path, settings.columns, settings.roles)
            settings.fmt = fmt
        else:
            reason = "given with --format" if args.format else "set by data.format"
        total = None
        if args.sample:
            total = _count(path)
        bar = _Bar(total)
        try:
            st = T.file_stats(path, tok, settings, sample=args.sample, total=total, cache=not args.no_cache,
                              progress=bar)
        finally:
            bar.close()
    except DataError as e:
        return _fail("stats", str(e))
    except KeyboardInterrupt:
        print("ftwb data stats: interrupted; nothing was cached", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:
        return _fail("stats", f"{path}: cannot read ({e}); check the file")
    if args.json:
        doc = {"file": str(path), "model": str(model), "format": settings.fmt, "reason": reason,
               "train_on": settings.train_on, "turn_policy": settings.turn_policy, **st.to_dict()}
        _emit(json.dumps(doc, ensure_ascii=False))
        return 0
    _print(path, model, settings, reason, st)
    return 0


def _tokenizer(model: str, template: str | None):
    """The tokenizer with the chat template in effect, or a message saying why not."""
    from engine.data.errors import DataError
    from engine.data.template import ensure_chat_template

    name = model
    if model == "demo":
        from engine.demo import resolve_model_path

        model = resolve_model_path(model)
    if not Path(model).is_dir():
        return f"--model {name}: not a local directory; give a folder with tokenizer files (or 'demo')"
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the length warning would repeat what `overlong` reports
        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception as e:  # any load failure is a bad argument, not a crash
        return f"--model {name}: cannot load a tokenizer ({str(e).splitlines()[0][:200]})"
    if not getattr(tok, "is_fast", False):
        return (f"--model {name}: this tokenizer has no fast (tokenizer.json) version, which ftwb needs to "
                "locate the trained tokens; convert it or pick the model's fast tokenizer")
    try:
        ensure_chat_template(tok, template)
    except DataError as e:
        return str(e)
    return tok


def _count(path: str) -> int:
    from engine.data.paged import iter_batches

    return sum(len(b.rows) for b in iter_batches(path))


def _print(path, model, settings, reason, st) -> None:
    from rich.console import Console
    from rich.markup import escape

    from engine.data.token_stats import buckets

    con = Console(highlight=False, soft_wrap=True)
    m = settings.max_seq_len
    con.print(f"[bold]{escape(str(path))}[/]: {st.scope()}, format [cyan]{settings.fmt}[/] ({escape(reason)})")
    con.print(f"[dim]tokenizer {escape(str(model))}, max_seq_len {m}, train_on {settings.train_on}, "
              f"turn policy {settings.turn_policy}[/]")
    if not st.usable:
        con.print("[red]no row could be tokenised[/]")
    else:
        p = st.percentiles()
        con.print(f"token lengths: min {p['min']:,}, median {p['median']:,}, p95 {p['p95']:,}, max {p['max']:,}")
        rows = buckets(st.lengths, m)
        peak = max(c for _, _, c in rows) or 1
        for k, (lo, hi, c) in enumerate(rows):
            if k == 8:
                con.print(f"[bold red]{'─' * 6} max_seq_len {m} {'─' * 6}[/]")
            colour = "red" if lo >= m else "cyan"
            con.print(f"[dim]{lo:>7}-{hi:<7}[/] [{colour}]{'█' * round(c * BAR / peak)}[/] [dim]{c:,}[/]")
        if st.overlong == 0:
            con.print(f"[bold green]{'─' * 6} max_seq_len {m}: no row is longer {'─' * 6}[/]")
        style = "bold red" if st.overlong else "green"
        con.print(f"[{style}]{st.overlong:,} rows over max_seq_len {m}[/] "
                  "[dim](truncated with overlong: truncate, dropped with overlong: drop)[/]")
        if st.overlong:
            con.print(f"[{'bold red' if st.cut_assistant else 'green'}]{st.cut_assistant:,} of those truncations cut "
                      "trained assistant tokens[/]")
        con.print(f"tokens {st.tokens:,}, trained {st.trained_tokens:,} "
                  f"({st.trained_tokens_kept:,} within max_seq_len)")
        if st.packing_efficiency is not None:
            con.print(f"estimated packing efficiency {st.packing_efficiency * 100:.1f}%")
    if st.unusable:
        con.print(f"[yellow]{st.unusable_rows:,} rows cannot be used:[/]")
        for why, n in sorted(st.unusable.items(), key=lambda kv: -kv[1])[:10]:
            con.print(f"  [yellow]{n:>9,}[/]  {escape(why)}")
    if st.cache == "hit":
        con.print("[dim]from the cache (same file, tokenizer and settings)[/]")
    else:
        rate = (st.usable + st.unusable_rows) / max(st.seconds, 1e-9)
        con.print(f"[dim]tokenised in {st.seconds:.1f} s ({rate:,.0f} rows/s)[/]")
