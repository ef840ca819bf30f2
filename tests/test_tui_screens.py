"""Runs, Config, Data screens and the app shell: listing runs with status, overlaying
curves, config diffs, validating and saving a config, previewing a dataset, help,
quitting without a live run, and the PATH argument."""
from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from engine import config as C
from tui.app import FtwbApp, run_app
from tui.services.open_target import resolve
from pilot_helpers import wait_for, wait_for_screen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "tests/fixtures/events/runs"



def _app(target=None, runs=RUNS):
    return FtwbApp(target or resolve(None), theme="ftwb-256", runs_dir=str(runs), sample_devices=False)


async def test_runs_screen_lists_runs_with_status_and_best_val():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: len(app.screen.runs) == 5)
        table = app.screen.query_one(DataTable)
        rows = {table.get_row_at(i)[2]: table.get_row_at(i) for i in range(table.row_count)}
        assert str(rows["healthy"][1]) == "completed" and str(rows["crash"][1]) == "crashed"
        assert str(rows["oom"][1]) == "failed" and rows["healthy"][6] == "300/300"
        assert rows["healthy"][7] != "-"


async def test_runs_overlay_and_config_diff_of_two_selected_runs():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: len(app.screen.runs) == 5)
        names = [r.name for r in app.screen.runs]
        table = app.screen.query_one(DataTable)
        table.focus()
        for name in ("healthy", "oom"):
            table.move_cursor(row=names.index(name))
            await pilot.press("space")
        chart = app.screen.query_one("#runs-chart")
        await wait_for(pilot, lambda: "healthy" in chart.legend.plain and "oom" in chart.legend.plain
                       if chart.legend is not None else False)
        await pilot.press("v")
        await wait_for_screen(pilot, "DiffView")
        fields = [r[0] for r in app.screen.rows]
        assert "method" in fields and "train.max_steps" in fields


async def test_opening_a_run_from_the_runs_screen_shows_it_on_train():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: len(app.screen.runs) == 5)
        names = [r.name for r in app.screen.runs]
        app.screen.query_one(DataTable).move_cursor(row=names.index("nan"))
        app.screen.action_open_run()
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen" and app.session.state.finished)
        assert app.session.run_dir.name == "nan" and app.session.state.status == "failed"


async def test_config_screen_validates_each_change_and_saves_atomically(tmp_path):
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfigScreen"
                       and getattr(app.screen, "_synced", None) is not None, what="the config screen")
        await pilot.pause(0.2)  # the editors' own mount-time messages
        lr = app.screen.query_one("#cfg-train--learning_rate", Input)
        lr.value = "-1"
        await wait_for(pilot, lambda: "train.learning_rate" in str(app.screen.query_one("#config-status").render()),
                       what="the error in the status line")
        status = str(app.screen.query_one("#config-status").render())
        assert "train.learning_rate" in status and "greater than 0" in status
        lr.value = "0.0003"
        await wait_for(pilot, lambda: app.config.train.learning_rate == 3e-4, what="the new learning rate")
        out = tmp_path / "my.yaml"
        app.screen.query_one("#config-file", Input).value = str(out)
        app.screen.action_save()
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog")  # not the file it came from
        await pilot.press("y")
        await wait_for(pilot, lambda: out.exists())
        assert C.load(out).train.learning_rate == 3e-4
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


async def test_opening_a_dataset_shows_it_in_the_data_workbench(tmp_path):
    from tui.widgets.data.rows_table import RowsTable

    ds = tmp_path / "chat.jsonl"
    ds.write_text("".join('{"messages":[{"role":"user","content":"hi %d"},{"role":"assistant","content":"yo"}]}\n' % i
                          for i in range(30)))
    app = _app(resolve(str(ds)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.query_one(RowsTable).count == 30)
        await wait_for(pilot, lambda: "chat" in str(app.screen.query_one("#dwb-title").render()))
        assert "30 rows" in str(app.screen.query_one("#dwb-title").render())


async def test_a_missing_dataset_is_reported_in_one_line(tmp_path):
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1")
        await wait_for_screen(pilot, "DataWorkbenchScreen")
        app.screen._open(str(tmp_path / "nope.jsonl"))
        await wait_for(pilot, lambda: "nope.jsonl" in str(app.screen.query_one("#dwb-banner").render()))


async def test_help_lists_the_screen_keys_and_quit_exits_without_a_live_run():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for_screen(pilot, "TrainScreen")
        await pilot.press("f1")
        await wait_for(pilot, lambda: any(desc == "Save now" for _, desc, _ in app.screen.rows), what="the help rows")
        await pilot.press("escape")
        await wait_for_screen(pilot, "TrainScreen")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to quit")
    assert app.return_value == 0


async def test_compact_and_roomy_layout_classes_follow_the_terminal_size():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.has_class("compact") and not app.has_class("roomy"), what="the compact layout")
        await pilot.resize_terminal(200, 50)
        await wait_for(pilot, lambda: app.has_class("roomy") and not app.has_class("compact"), what="the roomy layout")


def test_bad_path_and_theme_give_one_line_errors(capsys, tmp_path):
    assert run_app(path=str(tmp_path / "missing.jsonl")) == 2
    assert "no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: -3\n")
    assert run_app(path=str(bad)) == 2
    assert "train.learning_rate" in capsys.readouterr().err
    assert run_app(theme="neon") == 2
    assert "unknown theme" in capsys.readouterr().err


def test_default_theme_follows_colorterm(monkeypatch):
    from tui.app import default_theme

    monkeypatch.setenv("COLORTERM", "truecolor")
    assert default_theme() == "ftwb-dark"
    monkeypatch.delenv("COLORTERM")
    assert default_theme() == "ftwb-256"
