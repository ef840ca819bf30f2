"""The TUI process must not import torch, transformers, peft, bitsandbytes or datasets at
start-up, and its first frame must come quickly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets")

SCRIPT = r"""
import asyncio, sys, time
t0 = time.perf_counter()
sys.path.insert(0, %r)
from pilot_helpers import wait_for
import tui.app
from tui.app import FtwbApp
from tui.services.open_target import resolve

async def main():
    app = FtwbApp(resolve(None), theme="ftwb-256", runs_dir=sys.argv[1])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.05)
        first = time.perf_counter() - t0
        for key, name in (("1", "DataWorkbenchScreen"), ("2", "ConfigScreen"), ("4", "RunsScreen"),
                          ("3", "TrainScreen")):
            await pilot.press(key)
            await wait_for(pilot, lambda: type(app.screen).__name__ == name, 60, name)
            await pilot.pause(0.3)  # the screen's own mount-time work
    heavy = [m for m in %r if m in sys.modules]
    print("HEAVY", heavy)
    print("FIRST", round(first, 3))

asyncio.run(main())
""" % (str(ROOT / "tests"), HEAVY)


def test_tui_start_up_imports_no_heavy_libraries(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    heavy = next(l for l in out.stdout.splitlines() if l.startswith("HEAVY"))
    assert heavy == "HEAVY []", heavy
    first = float(next(l for l in out.stdout.splitlines() if l.startswith("FIRST")).split()[1])
    # ~0.5 s quiet (benchmarks/bench_startup.py measures it); this catches a start-up that loads
    # the heavy libraries after all, on a loaded CI machine
    assert first < 10.0, f"first frame after {first}s"
