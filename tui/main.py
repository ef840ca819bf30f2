"""`ftwb` entry point: headless subcommands (engine/cli/*) or the Textual app.

Kept cheap: argparse only. Each subcommand module is imported when the parser is built
and must itself import nothing heavy at module level (torch & co. load inside `run`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine import __version__

# Headless subcommands: engine/cli/<module>.py, each with register(subparsers).
SUBCOMMANDS = ("train", "runs", "data", "estimate", "config_cmd", "eval_cmd", "export_cmd", "serve_cmd")


def _tui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ftwb",
        description="ftwb, the fine-tuning workbench for the terminal. With no PATH it opens on the "
                    "bundled demo; PATH may be a dataset, a config YAML or a run directory.",
        epilog="Headless commands: ftwb train | runs | attach | data check | estimate | config import "
               "| eval | export | serve (ftwb COMMAND --help for each).",
    )
    p.add_argument("path", nargs="?", help="dataset file, config YAML or run directory")
    p.add_argument("--version", action="version", version=f"ftwb {__version__}")
    _add_tui_flags(p)
    return p


def _add_tui_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--theme", default=None, help="ftwb-dark, ftwb-light or ftwb-256 (default: by terminal)")
    p.add_argument("--ascii", action="store_true", help="draw charts with ASCII instead of braille")
    p.add_argument("--runs-dir", default=None, help="runs root (default ./runs or $FTWB_RUNS_DIR)")


def _full_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ftwb")
    p.add_argument("--version", action="version", version=f"ftwb {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    attach = sub.add_parser("attach", help="re-attach the TUI to a live or finished run")
    attach.add_argument("run_dir", nargs="?", help="run directory (default: the latest run)")
    _add_tui_flags(attach)
    attach.set_defaults(func=_run_attach)
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"engine.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"engine.cli.{name}":
                continue
            raise
        mod.register(sub)
    return p


def _needs_terminal() -> bool:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("ftwb: the TUI needs a terminal (stdin and stdout must be a TTY). "
              "For scripts use the headless commands: ftwb train, ftwb runs, ftwb data check ...",
              file=sys.stderr)
        return True
    return False


def _run_tui(args: argparse.Namespace, attach: str | None = None, attach_latest: bool = False) -> int:
    if _needs_terminal():
        return 2
    from tui.app import run_app

    return run_app(path=getattr(args, "path", None), theme=args.theme, ascii_charts=args.ascii,
                   runs_dir=args.runs_dir, attach=attach, attach_latest=attach_latest)


def _run_attach(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine import rundir

    if args.run_dir:
        target = Path(args.run_dir)
    else:
        target = rundir.latest_run(rundir.default_runs_dir(args.runs_dir))
        if target is None:
            print(f"ftwb attach: no runs in {rundir.default_runs_dir(args.runs_dir)}; "
                  "start one with `ftwb train` or pass a run directory", file=sys.stderr)
            return 2
    if not (target / rundir.CONFIG).exists():
        print(f"ftwb attach: {target} is not a run directory (no {rundir.CONFIG})", file=sys.stderr)
        return 2
    return _run_tui(args, attach=str(target))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    commands = {"attach", "train", "runs", "data", "estimate", "config", "eval", "export", "serve"}
    if first in commands and argv and argv[0] == first:
        args = _full_parser().parse_args(argv)
        if first != "train":  # a training engine keeps its library output for engine.log
            from engine.cli.quiet import quiet_libraries

            quiet_libraries()
        try:
            rc = args.func(args)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `ftwb runs --json | head`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        return int(rc or 0)
    args = _tui_parser().parse_args(argv)
    return _run_tui(args)


if __name__ == "__main__":
    sys.exit(main())
