"""`python -m engine run RUN_DIR [--resume]`: the engine process started by ftwb."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    # Ignore hangups before anything slow happens: the engine outlives its terminal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    p = argparse.ArgumentParser(prog="python -m engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the run in RUN_DIR (created by `ftwb train`)")
    r.add_argument("run_dir", type=Path)
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = p.parse_args(argv)
    if args.cmd == "run":
        from engine.train.run import run

        return run(args.run_dir.resolve(), resume=args.resume)
    return 2


if __name__ == "__main__":
    sys.exit(main())
