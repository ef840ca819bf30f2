"""`ftwb export RUN_DIR [--merge] [--out DIR] [--force]`: ship an adapter or a merged model.

Exit 0 on success, 1 when the export is refused or fails (an existing target without
--force, no adapter), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's adapter (PEFT) or a merged model, with a model card",
                       description="Export RUN_DIR's adapter (default RUN_DIR/export/adapter) or, with --merge, "
                                   "the base model with the adapter merged in (RUN_DIR/export/merged).")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--merge", action="store_true", help="write a full model with the adapter merged in")
    p.add_argument("--out", metavar="DIR", help="output directory (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.export import ExportError, export_run

    try:
        out = export_run(args.run_dir, out_dir=args.out, merge=args.merge, force=args.force)
    except ExportError as e:
        print(f"ftwb export: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        print(f"ftwb export: export failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"exported {'merged model' if args.merge else 'adapter'} to {out}")
    return 0
