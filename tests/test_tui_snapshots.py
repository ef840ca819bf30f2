"""SVG snapshots of stable screens at 80x24 and 120x40, from the recorded fixture runs.

Deterministic: fixed event timestamps, device sampling off, no notifications on screen.
After an intended change of the look, refresh them with
FTWB_UPDATE_SNAPSHOTS=1 pytest tests/test_tui_snapshots.py and review the SVGs.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tui.app import FtwbApp
from tui.services.open_target import resolve
from tui.widgets.event_log import EventLog
from pilot_helpers import wait_for, wait_for_screen

ROOT = Path(__file__).resolve().parents[1]
SNAPS = ROOT / "tests" / "snapshots"
RUNS = "tests/fixtures/events/runs"  # relative: the title shows it


# The alert for a run's last event: once it is on screen, every earlier log line is too.
LAST_ALERTS = ("Run completed", "Run failed", "Run stopped", "Engine crashed")


async def _ready(pilot, app, screen: str) -> None:
    """What each screen loads after it appears (workers, the log drained on a timer)."""
    await wait_for_screen(pilot, screen)
    if app.session is not None:
        await wait_for(pilot, lambda: app.session.state.finished
                       and any(n.title in LAST_ALERTS for n in app._notifications), what="the replay shown")
    if screen == "RunsScreen":
        await wait_for(pilot, lambda: len(app.screen.runs) == 5 and app.screen.lineage is not None
                       and app.screen.query_one("#runs-chart").legend is not None, what="the runs, details and curves")
    if screen == "ConfigScreen":
        await wait_for(pilot, lambda: app.screen._synced is not None
                       and app.screen.query_one("#memory-bar").view is not None, what="the estimate")
    await app.workers.wait_for_complete()


async def _settled_svg(pilot, app, timeout: float = 20.0) -> str:
    """The screen once two exports 0.3 s apart agree (refreshes, timers and the footer done)."""
    end = time.monotonic() + timeout
    last = None
    while True:
        await pilot.pause(0.3)
        svg = _normal(app.export_screenshot())
        if svg == last or time.monotonic() > end:
            return svg
        last = svg


async def _shot(tmp_path, name: str, size: tuple[int, int], keys: tuple[str, ...] = (), attach: str | None = None,
                screen: str = "TrainScreen") -> None:
    target = resolve(None, attach=attach)
    app = FtwbApp(target, theme="ftwb-dark", runs_dir=RUNS, sample_devices=False)
    async with app.run_test(size=size) as pilot:
        await _ready(pilot, app, "TrainScreen")  # where the app opens, with or without a run
        for k in keys:
            await pilot.press(k)
            await _ready(pilot, app, screen)
        if hasattr(app.screen, "redraw"):
            app.screen.redraw(force=True)
        app.clear_notifications()
        for log in app.screen.query(EventLog):
            log.scroll_end(animate=False, immediate=True)
        if app.focused is not None and hasattr(app.focused, "cursor_blink"):
            app.screen.set_focus(None)  # no blinking cursor; the footer recomposes on a focus change
        svg = await _settled_svg(pilot, app)
    path = SNAPS / f"{name}.svg"
    if os.environ.get("FTWB_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPS.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        return
    if path.read_text() != svg:
        (tmp_path / path.name).write_text(svg)
        pytest.fail(f"{name} differs from {path}; the new one is {tmp_path / path.name} "
                    "(FTWB_UPDATE_SNAPSHOTS=1 to accept it)")


def _normal(svg: str) -> str:
    # Textual names the SVG's CSS classes after a hash that changes between runs.
    return re.sub(r"terminal-\d+", "terminal", svg)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("COLORTERM", raising=False)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_train_screen_snapshot(tmp_path, size):
    await _shot(tmp_path, f"train_healthy_{size[0]}x{size[1]}", size, attach=f"{RUNS}/healthy")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_runs_screen_snapshot(tmp_path, size):
    await _shot(tmp_path, f"runs_{size[0]}x{size[1]}", size, keys=("4",), attach=f"{RUNS}/healthy",
                screen="RunsScreen")


async def test_train_screen_log_scale_ascii_snapshot(tmp_path):
    await _shot(tmp_path, "train_nan_log_120x40", (120, 40), keys=("l",), attach=f"{RUNS}/nan")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_config_screen_snapshot(tmp_path, size):
    await _shot(tmp_path, f"config_{size[0]}x{size[1]}", size, keys=("2",), screen="ConfigScreen")
