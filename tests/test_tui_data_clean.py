"""Cleaning on the Data workbench loses nothing: delete/restore, a field edited in the
modal editor, undo/redo, a saved version with its manifest, and the source untouched."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from textual.widgets import TextArea

from tui.widgets.data.dialogs import EditDialog, SplitDialog, VersionsDialog
from tui.widgets.data.rows_table import RowsTable
from tui_data_helpers import Host, sha256, visible_rows, wait_for

ROOT = Path(__file__).resolve().parents[1]


async def test_edit_delete_undo_redo_and_save_never_touch_the_source(tmp_path):
    src = tmp_path / "tickets.jsonl"
    shutil.copy(ROOT / "sample_data/tickets_messy.jsonl", src)
    before = sha256(src)
    app = Host(src, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded, what="loaded")
        table = scr.query_one(RowsTable)

        # delete row 0, then restore it
        await pilot.press("x")
        await wait_for(pilot, lambda: scr.wb.session is not None and scr.wb.deleted(0), what="row 0 deleted")
        assert "−" in visible_rows(app)[0]
        await pilot.press("up", "x")
        await wait_for(pilot, lambda: not scr.wb.deleted(0), what="row 0 restored")

        # x moves on to the next row, so the cursor is on row 1: edit its answer in the modal editor
        assert table.source_index() == 1
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditDialog), what="editor open")
        app.screen.query_one(TextArea).text = "EDITED ANSWER"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: scr.wb.row(1).data["messages"][2]["content"] == "EDITED ANSWER",
                       what="edit applied")
        assert scr.wb.is_edited(1) and "✎" in visible_rows(app)[1]

        await pilot.press("ctrl+z")
        await wait_for(pilot, lambda: scr.wb.row(1).data["messages"][2]["content"] != "EDITED ANSWER",
                       what="edit undone")
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: scr.wb.row(1).data["messages"][2]["content"] == "EDITED ANSWER",
                       what="edit redone")

        # bulk: drop exact duplicates, then save a version
        await pilot.press("D")
        await wait_for(pilot, lambda: any(op["op"] == "drop_exact_duplicates" for op in scr.wb.session.ops),
                       what="duplicates dropped")
        dropped = len(scr.wb.session.ops[-1]["rows"])
        assert dropped > 0
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: scr.last_saved is not None, what="version saved")
        info = scr.last_saved
        manifest = json.loads(info.manifest_path.read_text())
        assert [op["op"] for op in manifest["operations"]] == ["delete_rows", "restore_rows", "edit_field",
                                                               "drop_exact_duplicates"]
        saved = [json.loads(line) for line in info.path.read_text().splitlines()]
        assert len(saved) == manifest["rows_out"] == manifest["rows_in"] - dropped
        assert any(r["messages"][-1]["content"] == "EDITED ANSWER" for r in saved)

        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, VersionsDialog), what="versions list")
        assert app.screen.versions[-1].version == info.version
        await pilot.press("escape")
    assert sha256(src) == before


async def test_split_writes_files_and_reports_leakage(tmp_path):
    src = tmp_path / "tickets.jsonl"
    shutil.copy(ROOT / "sample_data/tickets_messy.jsonl", src)
    app = Host(src, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded, what="loaded")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, SplitDialog), what="the split dialog")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: getattr(scr, "last_split", None) is not None, what="split written")
        res = scr.last_split
        assert set(res.files) == {"train", "val"}
        assert sum(res.rows.values()) == 411        # every readable row, once
        assert res.leaks["val"] >= 0 and Path(res.files["val"]).exists()
