"""`ftwb config import FILE [-o OUT.yaml] [--force] [--json]`: Axolotl / LLaMA-Factory YAML -> ftwb config.

The report (what was mapped to what, what was ignored and why) goes to stdout when the
config is written to a file, and to stderr when the config itself goes to stdout, so
`ftwb config import axolotl.yml > run.yaml` works. `--json` prints the report (and the
config) as one JSON object on stdout instead: {"kind", "mapped": [{"source", "value",
"field", "ftwb_value", "note"}], "ignored": [{"source", "reason"}], "notes", "config"}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="convert configs of other fine-tuning tools")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    imp = sub.add_parser("import", help="import an Axolotl or LLaMA-Factory YAML as an ftwb config",
                         description="Map an Axolotl or LLaMA-Factory training YAML onto an ftwb config, "
                                     "report what was mapped and ignored, and write the result.")
    imp.add_argument("file", help="the Axolotl or LLaMA-Factory YAML")
    imp.add_argument("-o", "--output", help="write the ftwb config here (default: print it to stdout)")
    imp.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    imp.add_argument("--json", action="store_true",
                     help="print the report and the config as JSON (source key paths like datasets.0.path)")
    imp.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _show(value) -> str:
    text = "(tokenizer's own)" if value is None else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def render_report(result, source: str):
    """A rich renderable: the mapped table, the ignored table, and the notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from engine.config_import import KIND_NAMES

    kind = KIND_NAMES.get(result.source_kind, result.source_kind)
    mapped = Table(title=f"{kind} config {source}: mapped", title_justify="left", expand=False)
    mapped.add_column("source key", no_wrap=True)
    mapped.add_column("value", overflow="ellipsis", max_width=24, no_wrap=True)
    mapped.add_column("ftwb field", no_wrap=True)
    mapped.add_column("ftwb value", overflow="ellipsis", max_width=24, no_wrap=True)
    for key, value, target, new in result.mapped:
        mark = " *" if key in result.notes else ""
        mapped.add_row(key + mark, _show(value), target, _show(new))
    notes = Text()
    for key, note in result.notes.items():
        notes.append(f"* {key}: ", style="bold")
        notes.append(note + "\n")
    ignored = Table(title="ignored", title_justify="left", expand=False)
    ignored.add_column("source key", no_wrap=True)
    ignored.add_column("why", overflow="fold")
    for key, reason in result.ignored:
        ignored.add_row(key, reason)
    summary = Text(f"{len(result.mapped)} mapped, {len(result.ignored)} ignored; "
                   "everything else keeps ftwb's defaults.")
    return Group(mapped, notes, ignored, summary)


def run_import(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from engine.config import ConfigError, atomic_write_text
    from engine.config_import import import_config

    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not args.force:
        print(f"ftwb config import: {out} already exists; pass --force to overwrite it or pick another -o",
              file=sys.stderr)
        return 2
    if out is not None and out.resolve() == Path(args.file).resolve():
        print("ftwb config import: -o names the source file; the original is never overwritten",
              file=sys.stderr)
        return 2
    try:
        result = import_config(args.file)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"error": str(e)}))
        print(f"ftwb config import: {e}", file=sys.stderr)
        return 2
    yaml_text = result.config.to_yaml()
    report = Console(stderr=out is None or args.json, highlight=False, soft_wrap=False)
    if args.json:
        print(json.dumps(result.to_json(), indent=1, default=str))
    else:
        report.print(render_report(result, args.file))
    if out is None:
        if not args.json:
            sys.stdout.write(yaml_text)
        return 0
    try:
        atomic_write_text(out, yaml_text)
    except OSError as e:
        print(f"ftwb config import: cannot write {out} ({e})", file=sys.stderr)
        return 2
    report.print(f"wrote {out}; check it with `ftwb estimate {out}` and train with `ftwb train {out}`")
    return 0
