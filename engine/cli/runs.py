"""`ftwb runs [--json]`: every run with its status (live runs detected by pid and lock)."""
from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("runs", help="list runs: status, method, model, dataset, steps, best val loss")
    p.add_argument("--runs-dir", help="runs root (default ./runs or $FTWB_RUNS_DIR)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


STATUS_STYLE = {"running": "bold cyan", "completed": "green", "stopped": "yellow", "failed": "red",
                "crashed": "red", "created": "dim"}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from engine import rundir

    root = rundir.default_runs_dir(args.runs_dir)
    runs = rundir.list_runs(root)
    for r in runs:  # a damaged log line never hides a run, but it is said
        if r.extra.get("malformed_events"):
            print(f"ftwb runs: warning: {r.name}: skipped {r.extra['malformed_events']} malformed event(s) "
                  "in events.jsonl", file=sys.stderr)
    worlds = {r.name: r.world_size for r in runs}
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=1))
        return 0
    console = Console()
    if not runs:
        console.print(f"no runs in {root}; start one with `ftwb train --demo`")
        return 0
    from rich import box

    # Narrow terminals (80 columns) drop method and start time, never the dataset: which
    # data a run trained on is what tells two runs of one model apart.
    wide = console.width >= 120
    procs = "procs" if wide else "np"  # processes of a torchrun run; "np" as in mpirun -np, at 80 columns
    cols = ["name", "status"] + ([procs] if any(w > 1 for w in worlds.values()) else []) \
        + (["method"] if wide else []) + ["model", "dataset", "steps", "best val"] \
        + (["started"] if wide else []) + ["duration"]
    n = 28 if wide else 14
    t = Table(title=f"runs in {root}", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in cols:
        t.add_column(col, justify="right" if col in ("steps", "best val", "duration") else "left",
                     no_wrap=col in ("name", "status", procs, "steps", "best val"))
    for r in runs:
        dur = r.duration_s
        cells = {"name": r.name, "status": f"[{STATUS_STYLE.get(r.status, '')}]{r.status}[/]",
                 procs: str(worlds[r.name]) if worlds[r.name] > 1 else "",
                 "method": r.method, "model": _short(r.model, n), "dataset": _short(r.dataset, n),
                 "steps": f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step),
                 "best val": f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-",
                 "started": time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "-",
                 "duration": f"{dur / 60:.1f}m" if dur is not None else "-"}
        t.add_row(*(cells[c] for c in cols))
    console.print(t)
    return 0


def _short(s: str, n: int = 28) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]
