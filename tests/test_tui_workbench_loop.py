"""The workbench loop with the real engine: clean a messy dataset on the Data screen, save
a version, say yes to training on it, start from Config, answer the findings gate, and
watch the run: its data.json names the saved version, the sample answers appear on the
Train screen, and the Runs list shows the run complete while it is on screen.

One real demo run serves every assertion (the slow part is the run itself)."""
from __future__ import annotations

import json
import shutil

import pytest
from engine_helpers import small_demo_config

from engine import config as C
from engine import rundir
from engine.demo import demo_messy_dataset_path
from pilot_helpers import wait_for

pytestmark = pytest.mark.slow


async def test_clean_save_train_on_the_version_with_samples_and_live_runs(tmp_path):
    from textual.widgets import DataTable

    from tui.app import FtwbApp
    from tui.screens.dialogs import ChoiceDialog
    from tui.screens.data_workbench import DataWorkbenchScreen
    from tui.services.open_target import Target
    from tui.widgets.config.confirm_dialog import ConfirmDialog
    from tui.widgets.samples_panel import SamplesPanel

    messy = tmp_path / "tickets_messy.jsonl"
    shutil.copy(demo_messy_dataset_path(), messy)
    cfg = small_demo_config(max_steps=12, eval_every=4, save_every=0)
    cfg.data.path = str(messy)
    cfg.data.format = "auto"
    app = FtwbApp(Target(config=cfg, mode="data"), theme="ftwb-dark", runs_dir=str(tmp_path / "runs"),
                  sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        data = app.screen
        assert isinstance(data, DataWorkbenchScreen)
        await wait_for(pilot, lambda: data.loaded and data.wb is not None, 60, "the messy file indexed")
        await pilot.press("D")
        await wait_for(pilot, lambda: data.wb.unsaved() == 1, 60, "duplicates dropped")
        await pilot.press("P")
        await wait_for(pilot, lambda: data.wb.unsaved() == 2, 60, "PII redacted")
        assert "2 unsaved ops" in str(data.query_one("#dwb-title").render())

        # Leaving the screen with unsaved operations asks first; escape stays here.
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), 10, "the unsaved prompt")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is data, 10, "back on the Data screen")
        await pilot.pause(0.2)  # nothing else follows the escape
        assert app.screen is data and data.wb.unsaved() == 2

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 30, "the train-on-it offer")
        await pilot.press("enter")  # the default answer: yes
        await wait_for(pilot, lambda: data.last_saved is not None and app.config.data.path == str(data.last_saved.path)
                       and "unsaved" not in str(data.query_one("#dwb-title").render()), 30, "training on the version")
        info = data.last_saved
        assert app.config.data.path == str(info.path) and data.wb.unsaved() == 0
        assert "unsaved" not in str(data.query_one("#dwb-title").render())
        # The bad line 8 was left out, and the save said so.
        assert [x["line"] for x in info.left_out] == [8]

        await pilot.press("2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfigScreen"
                       and info.version in str(app.screen.query_one("#config-status").render()),
                       30, "the version named on Config")

        # Errors remain (turns without an answer): the start asks, once, and records a yes.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), 60, "the findings gate")
        assert "error-level" in app.screen.question
        await pilot.press("t")
        await wait_for(pilot, lambda: app.session is not None, 30, "the run to start")
        run = app.session.run_dir
        assert C.load(run / rundir.CONFIG).data.allow_findings is True

        # The Runs list follows the live run and shows it complete without a refresh key.
        await pilot.press("4")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", 30, "the Runs screen")
        runs = app.screen
        await wait_for(pilot, lambda: app.session.state.finished, 300, "the run to finish")
        table = runs.query_one("#runs-table", DataTable)

        def status_shown() -> str:
            return str(table.get_cell(str(run), runs._cols["status"]))
        await wait_for(pilot, lambda: status_shown() == "completed", 15, "the Runs row to say completed")
        assert app.session.state.status == "completed"

        await pilot.press("3")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen", 30, "the Train screen")
        await pilot.press("a")
        await wait_for(pilot, lambda: "step 12" in app.screen.query_one(SamplesPanel).text.plain, 30,
                       "the step-12 samples")
        body = app.screen.query_one(SamplesPanel).text.plain
        assert "expected" in body and "base" in body and "step 12" in body

    from tui.services import run_actions as ra
    from tui.widgets.runs.lineage_view import lineage_text

    lineage = lineage_text(ra.load_lineage(run)).plain  # the source file, the version, its operations
    assert f"tickets_messy.jsonl → {info.version}" in lineage and "drop_exact_duplicates" in lineage
    data_json = json.loads((run / rundir.DATA).read_text())
    assert data_json["version"] == info.version
    assert data_json["source"] == str(info.path)
    events = [json.loads(x) for x in (run / rundir.EVENTS).read_text().splitlines()]
    samples = [e for e in events if e["type"] == "samples"]
    assert samples[0]["base"] is True and samples[0]["step"] == 0
    assert [e["step"] for e in samples[1:]] == [4, 8, 12]
    assert all(len(e["samples"]) == 3 and all(s["expected"] for s in e["samples"]) for e in samples)
