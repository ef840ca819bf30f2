"""`ftwb data check FILE` and `ftwb data split FILE`: dataset checks and splits, headless.

`data check` streams every row through the checks (engine.data.checks_stream) with a
progress bar on a terminal; Ctrl+C stops it with a partial report.
Exit codes (check): 0 no error-severity findings, 1 some, 2 the file or the arguments
cannot be used, 130 stopped by Ctrl+C (the report covers the rows read).
Heavy imports (transformers) happen only when --model is given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES_PER_CHECK = 3


def register(sub) -> None:
    p = sub.add_parser("data", help="dataset checks and splits (ftwb data check FILE)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda a: _usage(p))

    c = dsub.add_parser("check", help="check a dataset: structure, encoding, duplicates, PII, secrets, length")
    c.add_argument("file", nargs="?", help="dataset file (.jsonl, .json, .csv, .parquet, .txt/.md), saved dataset "
                                           "directory, or dataset_info.json#NAME")
    c.add_argument("--config", help="check the dataset(s) of this run config, with its formats, mappings and splits")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--format", choices=("chat", "sharegpt", "alpaca", "completion", "preference", "kto", "text"),
                   help="row format (default: detected)")
    c.add_argument("--split", help="rows to check, in HF split syntax: train[:20%%], train[100:200]")
    c.add_argument("--text-documents", choices=("file", "blank_line"), default="file",
                   help=".txt/.md: one document per file (default) or per blank-line block")
    c.add_argument("--model", help="local model/tokenizer directory: enables the overlong check")
    c.add_argument("--max-seq-len", type=int, default=None, help="token limit for the overlong check (default 2048)")
    c.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard threshold (default 0.8)")
    c.add_argument("--shingle", type=int, default=5, help="near-duplicate shingle size (default 5)")
    c.add_argument("--words", action="store_true", help="shingle words instead of characters (try --shingle 3)")
    c.add_argument("--no-near", action="store_true", help="skip near-duplicate detection")
    c.add_argument("--val", help="validation file: report rows that leak into it")
    c.add_argument("--sample", type=int, metavar="N", help="check only the first N rows (default: every row)")
    c.set_defaults(func=run_check)

    s = dsub.add_parser("split", help="split a dataset into train/val/test JSONL files")
    s.add_argument("file", help="dataset file")
    s.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
    s.add_argument("--test", type=float, default=0.0, help="test fraction (default 0)")
    s.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    s.add_argument("--stratify", help="field whose values keep their proportions in every split")
    s.add_argument("--out", help="output directory (default: next to FILE, <stem>-split)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=run_split)

    from engine.cli.data_tokens import register as register_tokens

    register_tokens(dsub)

    from engine.cli.data_stats import register as register_stats

    register_stats(dsub)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _fail(cmd: str, msg: str) -> int:
    print(f"ftwb data {cmd}: {msg}", file=sys.stderr)
    return 2


def _emit(text: str) -> None:
    """Print, quietly stopping if the reader went away (`| head`)."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _load(cmd: str, path: str, fmt: str | None, split: str | None = None, text_documents: str = "file"):
    """(source, fmt, reason) or an int exit code after printing why. The source's rows are
    under ftwb's names; fmt is None (with the reason) when no format fits them."""
    from types import SimpleNamespace

    from engine.data.errors import DataError
    from engine.data.sources import specs

    try:
        spec = specs(SimpleNamespace(path=str(path), format=fmt or "auto", columns={}, roles={}, split=split,
                                     text_documents=text_documents))[0]
    except DataError as e:
        return _fail(cmd, str(e))
    return _load_spec(cmd, spec)


def _load_spec(cmd: str, spec):
    from engine.data.errors import DataError
    from engine.data.sources import load

    try:
        src = load(spec)
    except DataError as e:
        return _fail(cmd, str(e))
    except (OSError, MemoryError, ValueError) as e:
        return _fail(cmd, f"{spec.path}: cannot read ({e}); check the file")
    if not src.rows and src.load.kind not in ("text", "text_dir"):
        why = f"; first problem: {src.problems[0].message}" if src.problems else ""
        return src, None, f"no readable rows{why}"
    return _identified(spec, src)


def _identified(spec, src):
    """(source, format or None, why): the source's format as detected or given."""
    from engine.data.errors import DataError
    from engine.data.sources import identify

    try:
        identify(src)
    except DataError as e:
        return src, None, str(e)
    return src, src.fmt, ("given with --format" if spec.format != "auto" and src.reason == "set by data.format"
                          else src.reason)


def _tokenizer(model: str):
    if not Path(model).is_dir():
        raise ValueError("not a local directory; give a folder with tokenizer files")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the length warning would repeat what `overlong` reports
    return AutoTokenizer.from_pretrained(model, local_files_only=True)


def _check_specs(args: argparse.Namespace):
    """The sources to check (from FILE or --config), or an exit code after printing why."""
    from engine.data.errors import DataError
    from engine.data.sources import specs

    if bool(args.file) == bool(args.config):
        return _fail("check", "give a dataset FILE or --config CONFIG (one of the two)")
    if args.file:
        return None
    from engine import config as C

    try:
        cfg = C.load(args.config)
        return specs(cfg.data)
    except (C.ConfigError, DataError) as e:
        return _fail("check", str(e))


def _head_source(spec):
    """(source, fmt, reason) from the first batch of a streamable file, or None when the
    source is not streamed (selections, JSON arrays, text, hub ids): those load whole."""
    from engine.data import paged
    from engine.data.errors import DataError, RowProblem
    from engine.data.load import LoadResult
    from engine.data.sources import Source

    if spec.split:
        return None
    try:
        kind, p = paged.source_kind(spec.path)
    except DataError:
        return None  # load says why, with its own message
    if kind not in ("jsonl", "csv", "parquet", "hf_saved"):
        return None
    try:
        first = next(iter(paged.iter_batches(spec.path, batch_rows=2000)), None)
    except DataError as e:
        return _fail("check", str(e))
    except (OSError, MemoryError, ValueError) as e:
        return _fail("check", f"{spec.path}: cannot read ({e}); check the file")
    rows = [r for r in (first.rows if first else []) if r is not None]
    res = LoadResult(rows, [], [RowProblem(*e) for e in (first.errors if first else [])], str(p), kind)
    from engine.data import mapping as M

    src = Source(spec, res, M.apply_all(rows, spec.mapping), "", "")
    if not src.rows:
        return None  # no readable row in the head: load reports the file as load sees it
    return _identified(spec, src)


def _batches(spec, src, streamed: bool):
    """The source's rows in batches, under ftwb's names."""
    from engine.data.checks_stream import list_batches

    if not streamed:
        yield from list_batches(src.rows, src.lines, src.problems)
        return
    from engine.data import mapping as M
    from engine.data import paged

    m = spec.mapping
    for b in paged.iter_batches(spec.path, text_documents=spec.text_documents):
        if m:
            b.rows = [None if r is None else M.apply(r, m) for r in b.rows]
        yield b


class _Interrupt:
    """Ctrl+C sets a flag the scan checks between batches (a second one stops at once)."""

    def __init__(self):
        self.hit = False

    def __enter__(self):
        import signal

        def handler(signum, frame):
            if self.hit:
                raise KeyboardInterrupt
            self.hit = True
        try:
            self.old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    def __exit__(self, *exc):
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False

    def __call__(self) -> bool:
        return self.hit


def run_check(args: argparse.Namespace) -> int:
    with _Interrupt() as interrupt:  # from the start: a Ctrl+C while the head is read stops cleanly too
        return _run_check(args, interrupt)


def _run_check(args: argparse.Namespace, interrupt: _Interrupt) -> int:
    from engine.data.checks import CHECKS, counts, make
    from engine.data.checks_stream import check_stream

    if not 0 < args.threshold <= 1:
        return _fail("check", f"--threshold {args.threshold}: must be in (0, 1]; e.g. 0.8")
    if args.shingle < 1:
        return _fail("check", f"--shingle {args.shingle}: must be at least 1; e.g. 5")
    if args.max_seq_len is not None and args.max_seq_len < 1:
        return _fail("check", f"--max-seq-len {args.max_seq_len}: must be a positive number of tokens")
    if args.sample is not None and args.sample < 1:
        return _fail("check", f"--sample {args.sample}: must be a positive number of rows; e.g. 10000")
    spec_list = _check_specs(args)
    if isinstance(spec_list, int):
        return spec_list
    if spec_list is None:
        from types import SimpleNamespace

        from engine.data.errors import DataError
        from engine.data.sources import specs

        try:
            spec_list = specs(SimpleNamespace(path=str(args.file), format=args.format or "auto", columns={},
                                              roles={}, split=args.split, text_documents=args.text_documents))
        except DataError as e:
            return _fail("check", str(e))
    loads = []
    for spec in spec_list:
        one = _head_source(spec)
        streamed = one is not None
        if isinstance(one, int):
            return one
        if one is None:
            one = _load_spec("check", spec)
            if isinstance(one, int):
                return one
        loads.append((spec, streamed, *one))
    tok = None
    if args.model:
        try:
            tok = _tokenizer(args.model)
        except Exception as e:  # any tokenizer load failure is a bad argument, not a crash
            return _fail("check", f"--model {args.model}: cannot load a tokenizer ({str(e).splitlines()[0][:200]})")
    val_rows = None
    if args.val:
        v = _load("check", args.val, loads[0][3])
        if isinstance(v, int):
            return v
        val_rows = v[0].rows
    reports = []
    stopped = False
    tty = sys.stderr.isatty() and not args.json
    for spec, streamed, res, fmt, reason in loads:
        findings = []
        scan = None
        if fmt is None:
            from engine.data.checks import problems_to_findings

            findings = problems_to_findings(res.problems)
            check = "multimodal" if "multimodal" in reason else "too_few_rows"
            findings.append(make(check, -1, None, f"no usable rows: {reason}"))
        elif stopped:
            continue
        else:
            from engine.cli.progress_line import CheckBar

            bar = CheckBar(Path(str(spec.path)).name) if tty else None
            from engine.data.errors import DataError

            try:
                scan = check_stream(_batches(spec, res, streamed), fmt, tokenizer=tok,
                                    max_seq_len=(args.max_seq_len or 2048) if tok is not None else None,
                                    val_rows=val_rows, near_dup=not args.no_near, shingle=args.shingle,
                                    threshold=args.threshold, shingle_unit="word" if args.words else "char",
                                    sample=args.sample, progress=bar, cancelled=interrupt)
            except DataError as e:  # a fault found mid-file
                return _fail("check", str(e))
            finally:
                if bar is not None:
                    bar.close()
            findings = scan.findings
            stopped = stopped or (scan.partial and interrupt.hit)
        reports.append((spec, res, fmt, reason, findings, counts(findings), scan))
    n_err = sum(1 for *_, findings, _c, _s in reports for f in findings if f.severity == "error")
    code = 130 if stopped else 1 if n_err else 0
    if args.json:
        docs = []
        for spec, res, fmt, reason, findings, cnt, scan in reports:
            rows = scan.rows if scan is not None else len(res.rows)
            docs.append({"file": str(args.file) if args.file else spec.label, "format": fmt, "reason": reason,
                         "rows": rows, "rows_scanned": rows,
                         "records_scanned": scan.records if scan is not None else len(res.rows) + len(res.problems),
                         "partial": bool(scan and scan.partial), "sampled": bool(scan and scan.sampled),
                         "skipped": list(scan.skipped) if scan is not None else [],
                         "notes": list(res.notes), "findings": [f.to_dict() for f in findings], "counts": cnt})
        _emit(json.dumps(docs[0] if args.file else {"config": str(args.config), "sources": docs},
                         ensure_ascii=False))
        return code
    for spec, res, fmt, reason, findings, cnt, scan in reports:
        _print_report(args.file or spec.label, fmt, reason, res, findings, cnt, CHECKS,
                      skipped_overlong=tok is None, scan=scan)
    if stopped:
        print("stopped (Ctrl+C): the report covers the rows read so far", file=sys.stderr)
    return code


def _print_report(file, fmt, reason, res, findings, cnt, checks, skipped_overlong: bool, scan=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(highlight=False)
    con.print(f"[bold]{escape(str(file))}[/]")
    if scan is None:
        con.print(f"rows: {len(res.rows)}   format: [cyan]{fmt or 'unknown'}[/] ({escape(reason)})")
    else:
        how = ""
        if scan.partial:
            how = "  [yellow](stopped early: the report covers these rows"
            how += f"; not checked: {', '.join(scan.skipped)})[/]" if scan.skipped else ")[/]"
        elif scan.sampled:
            how = f"  [yellow](sample: the first {scan.rows:,} rows)[/]"
        con.print(f"rows scanned: {scan.rows:,}   format: [cyan]{fmt or 'unknown'}[/] ({escape(reason)}){how}")
    for note in getattr(res, "notes", []):
        con.print(f"[dim]note: {escape(note)}[/]")
    if not findings:
        con.print("[green]no problems found[/]")
    else:
        t = Table(header_style="bold", show_lines=False)
        for col in ("check", "severity", "count", "examples (row / line: message)"):
            t.add_column(col, overflow="fold")
        by: dict[str, list] = {}
        for f in findings:
            by.setdefault(f.check, []).append(f)
        for cid, n in cnt.items():
            sev = checks[cid].severity if cid in checks else "warning"
            style = "red" if sev == "error" else "yellow"
            ex = "\n".join(
                f"{'all' if f.row < 0 else f'row {f.row}'}{f' / line {f.line}' if f.line else ''}: {escape(f.message[:110])}"
                for f in by[cid][:EXAMPLES_PER_CHECK])
            t.add_row(cid, f"[{style}]{sev}[/]", str(n), ex)
        con.print(t)
    if skipped_overlong:
        con.print("[dim]overlong: skipped (give --model DIR and --max-seq-len N to count tokens)[/]")
    n_err = sum(1 for f in findings if f.severity == "error")
    n_warn = len(findings) - n_err
    con.print(f"[{'red' if n_err else 'green'}]{n_err} errors[/], [yellow]{n_warn} warnings[/]")


def _atomic_jsonl(path: Path, rows: list[dict]) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run_split(args: argparse.Namespace) -> int:
    from engine.data.checks_chat import row_text
    from engine.data.dedup import find_leaks

    for name in ("val", "test"):
        v = getattr(args, name)
        if not 0 <= v < 1:
            return _fail("split", f"--{name} {v}: must be a fraction in [0, 1); e.g. 0.1")
    if args.val + args.test >= 1:
        return _fail("split", f"--val {args.val} + --test {args.test} leave nothing to train on; keep the sum below 1")
    loaded = _load("split", args.file, None)
    if isinstance(loaded, int):
        return loaded
    res, fmt, reason = loaded
    if not res.rows:
        return _fail("split", f"{args.file}: {reason}")
    labels = None
    if args.stratify:
        labels = [json.dumps(r.get(args.stratify), sort_keys=True) if isinstance(r, dict) else "null"
                  for r in res.rows]
        if all(lab == "null" for lab in labels):
            return _fail("split", f"--stratify {args.stratify}: no row has that field")
    try:
        from engine.data.split import split_indices
    except ImportError:  # split.py is part of the data package; kept optional for old trees
        split_indices = _split_indices
    parts = split_indices(len(res.rows), args.val, args.test, args.seed, labels)
    src = Path(args.file).expanduser().resolve()
    out = Path(args.out) if args.out else src.parent / f"{src.stem}-split"
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name in ("train", "val", "test"):
            if name != "train" and not parts[name]:
                continue
            p = out / f"{name}.jsonl"
            _atomic_jsonl(p, [res.rows[i] for i in parts[name]])
            written[name] = str(p)
    except OSError as e:
        return _fail("split", f"{out}: cannot write ({e.strerror}); choose another --out")
    f = fmt or "completion"
    texts = {k: [row_text(res.rows[i], f) for i in v] for k, v in parts.items()}
    leaks = {}
    for other in ("val", "test"):
        if texts[other]:
            leaks[other] = len(find_leaks(texts["train"], texts[other]))
    summary = {"file": str(args.file), "format": fmt, "seed": args.seed, "out": str(out),
               "rows": {k: len(v) for k, v in parts.items()}, "files": written, "leaks": leaks,
               "problems": len(res.problems)}
    if args.json:
        _emit(json.dumps(summary))
    else:
        print(f"{args.file}: {len(res.rows)} rows -> " + ", ".join(f"{k} {len(v)}" for k, v in parts.items())
              + f" in {out}")
        for k, n in leaks.items():
            if n:
                print(f"  leakage: {n} {k} rows repeat a train row exactly or nearly "
                      f"(run `ftwb data check` and drop duplicates before splitting)")
            else:
                print(f"  no leakage between train and {k}")
        if res.problems:
            print(f"  {len(res.problems)} unreadable records skipped (see `ftwb data check`)")
    return 0


def _split_indices(n: int, val: float, test: float, seed: int, stratify=None) -> dict[str, list[int]]:
    import random

    order = list(range(n))
    random.Random(f"split-{seed}").shuffle(order)
    nv, nt = round(n * val), round(n * test)
    return {"val": sorted(order[:nv]), "test": sorted(order[nv:nv + nt]), "train": sorted(order[nv + nt:])}
