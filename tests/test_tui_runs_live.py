"""The Runs list while it is on screen: a new run directory appears without a key, and
the cursor stays on the same run, not on the same row number. (The open run's row
following it to completion is in test_tui_workbench_loop.)"""
from __future__ import annotations

from pilot_helpers import wait_for, wait_for_screen


async def test_runs_cursor_stays_on_the_same_run_when_a_new_run_appears(tmp_path):
    import shutil
    from pathlib import Path

    from textual.widgets import DataTable

    from tui.app import FtwbApp
    from tui.services.open_target import resolve

    src = Path(__file__).resolve().parent / "fixtures" / "events" / "runs"
    runs = tmp_path / "runs"
    shutil.copytree(src, runs)
    app = FtwbApp(resolve(None), theme="ftwb-dark", runs_dir=str(runs), sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_for_screen(pilot, "RunsScreen")
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.runs) == 5, 20, "the runs listed")
        names = [r.name for r in screen.runs]
        screen.query_one("#runs-table", DataTable).move_cursor(row=names.index("nan"))
        await wait_for(pilot, lambda: screen._current() is not None and screen._current().name == "nan",
                       what="the cursor on nan")
        # A new run directory sorts in front of the others: row numbers shift by one.
        shutil.copytree(runs / "healthy", runs / "zz-new")
        await wait_for(pilot, lambda: len(screen.runs) == 6, 20, "the new run listed without a key")
        await pilot.pause(0.2)  # the cursor must stay, not only land there once
        assert screen._current().name == "nan"
