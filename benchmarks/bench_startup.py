"""Start-up of the TUI: `import tui.app` against a bare `import textual.app, textual.widgets`
(the peer; issue target at most 1.5x), and the time from process start to the first frame
of `ftwb` on the demo (what a user waits for; target under 0.5 s on a quiet 2-core machine),
against a bare Textual app with one Static. Every figure is the median of fresh
subprocesses; the first frame is measured headless: the app exits from a callback that
runs right after its first screen has been mounted and painted.

The children run without bytecode files for the project (PYTHONDONTWRITEBYTECODE, as in
this tree), so they also compile every project module they import. An installed ftwb has
its bytecode compiled by pip: the last two lines are the same first frames with bytecode
written once into a temporary cache (PYTHONPYCACHEPREFIX) and read from it after.

ftwb keeps the CSS it parsed for the next start (tui/stylesheet.py): the children share a
temporary FTWB_CACHE_DIR, which the uncounted first run of each figure fills, as a user's
first start does. Each pair of figures (ours and its peer) is measured alternately, one
process of each in turn, so that a change of load on the machine hits both alike.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORT = "import time; t = time.perf_counter(); import {mods}; print(time.perf_counter() - t)"

# Runs in the child: `ftwb` (no argument: the demo) up to its first painted frame.
FTWB_FRAME = """
import sys, time
from pathlib import Path
import tui.app
from tui.app import FtwbApp
from tui.services.open_target import resolve

class FirstFrame(FtwbApp):
    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))  # the app's own stylesheet

    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self._painted)

    def _painted(self):
        print(time.time(), flush=True)
        self.exit()

FirstFrame(resolve(None), sample_devices=False).run(headless=True, size=(120, 40))
"""

BARE_FRAME = """
import time
from textual.app import App
from textual.widgets import Static

class FirstFrame(App):
    def compose(self):
        yield Static("hello")

    def on_mount(self):
        self.call_after_refresh(self._painted)

    def _painted(self):
        print(time.time(), flush=True)
        self.exit()

FirstFrame().run(headless=True, size=(120, 40))
"""


PYCACHE: str | None = None  # set: bytecode is written to and read from this directory
CACHE_DIR: str | None = None  # FTWB_CACHE_DIR of the children (the stored CSS)


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    if CACHE_DIR is not None:
        env["FTWB_CACHE_DIR"] = CACHE_DIR
    if PYCACHE is not None:
        del env["PYTHONDONTWRITEBYTECODE"]
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def import_time(mods: str) -> float:
    out = subprocess.run([sys.executable, "-c", IMPORT.format(mods=mods)], capture_output=True, text=True,
                         env=_env(), cwd=ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def first_frame(code: str) -> float:
    # From a file: Textual resolves an app's CSS_PATH next to the file its class is defined in.
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="ftwb-frame-", delete=False) as fh:
        fh.write(code)
    try:
        t0 = time.time()
        out = subprocess.run([sys.executable, fh.name], capture_output=True, text=True, env=_env(), cwd=ROOT,
                             timeout=120)
    finally:
        os.unlink(fh.name)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"first-frame child failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1]) - t0


def medians(fn, peer_args, our_args, runs: int) -> tuple[float, float]:
    """Median of `runs` processes each, the peer's and ours alternately."""
    fn(*peer_args), fn(*our_args)  # warm the OS file cache (and ftwb's CSS store) once; not counted
    peer, ours = [], []
    for _ in range(runs):
        peer.append(fn(*peer_args))
        ours.append(fn(*our_args))
    return statistics.median(peer), statistics.median(ours)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cores} cores, load average {load:.1f} (figures are for this machine as it is now)")
    global CACHE_DIR, PYCACHE
    cache = tempfile.TemporaryDirectory(prefix="ftwb-cache-")
    CACHE_DIR = cache.name
    bare, ours = medians(import_time, ("textual.app, textual.widgets",), ("tui.app",), runs=a.runs)
    print(f"  import textual.app, textual.widgets  {bare * 1000:6.0f} ms (median of {a.runs})")
    print(f"  import tui.app                       {ours * 1000:6.0f} ms  x{ours / bare:.2f} of the bare import "
          f"(target <= 1.5x)")
    bare_f, ours_f = medians(first_frame, (BARE_FRAME,), (FTWB_FRAME,), runs=a.runs)
    print(f"  first frame, bare Textual app        {bare_f * 1000:6.0f} ms from process start (median of {a.runs})")
    print(f"  first frame, ftwb on the demo        {ours_f * 1000:6.0f} ms  x{ours_f / bare_f:.2f} of the bare app "
          f"(target < 500 ms on a quiet 2-core machine)")
    with tempfile.TemporaryDirectory(prefix="ftwb-pycache-") as PYCACHE:
        # The uncounted first runs write the bytecode.
        bare_c, ours_c = medians(first_frame, (BARE_FRAME,), (FTWB_FRAME,), runs=a.runs)
    PYCACHE = None
    cache.cleanup()
    CACHE_DIR = None
    print(f"  with bytecode: bare Textual app      {bare_c * 1000:6.0f} ms (median of {a.runs})")
    print(f"  with bytecode: ftwb on the demo      {ours_c * 1000:6.0f} ms  x{ours_c / bare_c:.2f} of the bare app")
    return 0


if __name__ == "__main__":
    sys.exit(main())
