"""One row identity on the Data screen, in `ftwb data check` (human and --json) and in the
saved manifest, on a file with an unreadable line and a blank line; unreadable lines can
be deleted and are counted at save; nothing unsaved is lost on quit."""
from __future__ import annotations

import json

from engine_helpers import ftwb

from pilot_helpers import wait_for


def _chat(user: str, answer: str = "ok") -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


def _file(tmp_path):
    lines = [_chat("first question"),
             _chat("write to bob@example.org please"),
             '{"messages": [{"role": "user", "content": "cut off',   # line 3: unreadable
             "",                                                      # line 4: blank
             _chat("and to carol@example.org too")]                   # line 5: parsed row 2
    lines += [_chat(f"question number {i}", f"answer {i}") for i in range(10)]
    p = tmp_path / "rows.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def _app(tmp_path, path):
    from tui.app import FtwbApp
    from tui.services.open_target import Target

    from engine.demo import demo_config

    cfg = demo_config()
    cfg.data.path = str(path)
    return FtwbApp(Target(config=cfg, mode="data"), theme="ftwb-dark", runs_dir=str(tmp_path / "runs"),
                   sample_devices=False)


async def test_the_same_row_is_line_5_row_2_on_screen_in_the_cli_and_in_the_manifest(tmp_path):
    from tui.widgets.data.rows_table import RowsTable

    path = _file(tmp_path)
    check = ftwb("data", "check", str(path), "--json")
    found = json.loads(check.stdout)
    emails = [f for f in found["findings"] if f["check"] == "pii_email"]
    assert [(f["row"], f["line"]) for f in emails] == [(1, 2), (2, 5)]
    bad = [f for f in found["findings"] if f["check"] == "invalid_json"]
    assert [f["line"] for f in bad] == [3]
    human = ftwb("data", "check", str(path), env={"COLUMNS": "200"}).stdout
    assert "row 2 / line 5" in human

    app = _app(tmp_path, path)
    async with app.run_test(size=(120, 40)) as pilot:
        data = app.screen
        await wait_for(pilot, lambda: data.loaded and data.wb is not None, 30, "the file indexed")
        table = data.query_one(RowsTable)
        table.move_to_source(3)
        assert data.wb.label(3) == "line 5 (row 2)"
        await wait_for(pilot, lambda: "line 5 (row 2)" in str(data.query_one("#row-turns").render()),
                       what="line 5 in the row view")
        await pilot.press("x")
        await wait_for(pilot, lambda: data.wb.unsaved() == 1, 30, "the delete")
        assert any("deleted line 5 (row 2)" in n.message for n in app._notifications)

        # The unreadable line is a row: it can be deleted, and a second delete restores it.
        table.move_to_source(2)
        assert data.wb.label(2) == "line 3 (unreadable)"
        await wait_for(pilot, lambda: "line 3 (unreadable)" in str(data.query_one("#row-turns").render()),
                       what="line 3 in the row view")
        await pilot.press("x")
        await wait_for(pilot, lambda: data.wb.unsaved() == 2, 30, "the unreadable line deleted")
        assert data.wb.deleted(2)
        # An operation that changes nothing is not logged.
        await pilot.press("D")
        await wait_for(pilot, lambda: any("exact duplicate rows" in n.message for n in app._notifications),
                       what="the drop-duplicates result")
        await pilot.pause(0.2)
        assert data.wb.unsaved() == 2

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: data.last_saved is not None, 30, "the save")
        info = data.last_saved
        assert any("1 unreadable line(s) left out (1 deleted by you)" in n.message for n in app._notifications)

    man = json.loads(info.manifest_path.read_text())
    assert man["operations"] == [{"op": "delete_rows", "rows": [2], "lines": [5]},
                                 {"op": "delete_unreadable", "lines": [3]}]
    assert man["unreadable_left_out"][0]["line"] == 3 and man["unreadable_left_out"][0]["deleted"] is True
    assert "lines: 1-based line" in man["row_numbering"]
    assert man["rows_out"] == 12


async def test_quit_with_unsaved_cleaning_asks_save_discard_cancel(tmp_path):
    from engine.data.versions import list_versions
    from tui.screens.dialogs import ChoiceDialog

    path = _file(tmp_path)
    for answer, saved in (("escape", None), ("d", 0), ("s", 1)):
        app = _app(tmp_path, path)
        async with app.run_test(size=(80, 24)) as pilot:
            data = app.screen
            await wait_for(pilot, lambda: data.loaded and data.wb is not None, 30, "the file indexed")
            await pilot.press("x")
            await wait_for(pilot, lambda: data.wb.unsaved() == 1, 30, "a delete")
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), 10, "the unsaved prompt")
            assert "1 unsaved operation" in app.screen.question
            await pilot.press(answer)
            if saved is None:
                await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceDialog), what="the prompt closed")
                await pilot.pause(0.3)
                assert app.is_running and data.wb.unsaved() == 1  # cancel: nothing lost, still here
                continue
            await wait_for(pilot, lambda: not app.is_running, 30, "the app to quit")
        assert len(list_versions(path)) == saved
