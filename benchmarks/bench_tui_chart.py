"""Chart redraw time with 100,000 points, and the event rate the app keeps up with.

Not a test: prints numbers. Targets: redraw < 20 ms at 100k points; 200 events/s
applied and drawn without visible lag.
    .venv/bin/python benchmarks/bench_tui_chart.py
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.services.series import Series, smooth  # noqa: E402
from tui.widgets.braille import ChartLine, ChartOptions, Marker, render_chart  # noqa: E402


def bench_redraw(n: int = 100_000, width: int = 160, height: int = 30, reps: int = 30) -> float:
    train, val = Series("train"), Series("val")
    rng = np.random.default_rng(0)
    for step in range(1, n + 1):
        train.append(step, 3 * np.exp(-step / (n / 4)) + 0.5 + 0.05 * rng.standard_normal())
        if step % 100 == 0:
            val.append(step, 3 * np.exp(-step / (n / 4)) + 0.7)
    times = []
    for i in range(reps):
        t = time.perf_counter()
        y = smooth(train.y, 50) if i % 2 else train.y
        render_chart([ChartLine("train", train.x, y, "cyan"), ChartLine("val", val.x, val.y, "yellow")],
                     width, height, ChartOptions(log_y=bool(i % 3 == 0), markers=[Marker(50_000, 1.0, "green")]))
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def bench_events(rate: int = 200, seconds: float = 5.0) -> tuple[float, float]:
    """Write `rate` events/s to a followed events.jsonl; report the lag between the last
    write and the screen showing that step, and the main loop's worst stall."""
    from engine import config as C
    from engine.events import EventWriter
    from tui.app import FtwbApp
    from tui.services.open_target import resolve
    from tui.widgets.progress_panel import ProgressPanel

    run = Path(tempfile.mkdtemp()) / "bench"
    run.mkdir()
    C.save(C.RunConfig(), run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", pid=1, devices=[])
    app = FtwbApp(resolve(None, attach=str(run)), theme="ftwb-dark", runs_dir=str(run.parent), sample_devices=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        step, worst, t_end = 0, 0.0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            for _ in range(rate // 20):  # events/s in 20 bursts per second
                step += 1
                w.emit("metric", step=step, loss=1 + 1 / step, lr=1e-4, grad_norm=0.5, tokens_per_s=1e3)
            await pilot.pause(0.05)
            worst = max(worst, time.perf_counter() - t - 0.05)
        t_last = time.perf_counter()
        while "step %s" % f"{step:,}" not in app.screen.query_one(ProgressPanel).render().plain:
            await pilot.pause(0.02)
            if time.perf_counter() - t_last > 10:
                break
        lag = time.perf_counter() - t_last
    w.close()
    return lag, worst


def main() -> None:
    ms = bench_redraw()
    print(f"chart redraw, 100,000 points, 160x30 cells: {ms:.1f} ms median (target < 20 ms)")
    lag, worst = asyncio.run(bench_events())
    print(f"200 events/s for 5 s: last step on screen {lag:.2f} s after it was written "
          f"(charts redraw each 1 s); worst loop stall {worst * 1000:.0f} ms")


if __name__ == "__main__":
    main()
