"""Browsing a 50k-row JSONL on the Data workbench: first rows fast, the end reachable,
filters by regex, field and check result."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tui.widgets.data.rows_table import RowsTable
from tui_data_helpers import Host, visible_rows, wait_for, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("browse") / "big.jsonl", 50_000)


async def test_first_rows_show_quickly_and_scrolling_reaches_the_end(big):
    app = Host(big, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        t0 = time.monotonic()
        await wait_for(pilot, lambda: any("question number 0" in r for r in visible_rows(app)), what="first rows")
        # A guard against a full read before the first paint (tens of seconds), loose enough for a
        # loaded CI machine; the figures themselves are benchmarks/bench_data_browse.py's.
        assert time.monotonic() - t0 < 10.0
        await wait_for(pilot, lambda: app.screen.loaded, what="index complete")
        table = app.screen.query_one(RowsTable)
        assert table.count == 50_000
        await pilot.press("end")
        assert table.source_index() == 49_999
        await wait_for(pilot, lambda: any("question number 49999" in r for r in visible_rows(app)),
                       what="the last row on screen")
        await pilot.press("pageup", "up")
        assert table.source_index() == 49_999 - (table.size.height - 1) - 1
        await pilot.press("home")
        assert table.source_index() == 0


async def test_regex_and_field_filters_produce_matching_rows(big):
    app = Host(big, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="index complete")
        table = app.screen.query_one(RowsTable)
        await pilot.press("slash")
        await pilot.press(*"needle")
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.order is not None, what="filter result")
        assert list(table.order[:3]) == [7, 1007, 2007] and table.count == 50
        assert all("needle" in r for r in visible_rows(app) if r.strip())
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.order is None, what="filter cleared")
        assert table.count == 50_000


async def test_checks_list_findings_and_filter_by_check(tmp_path):
    src = tmp_path / "messy.jsonl"
    shutil.copy(ROOT / "sample_data/tickets_messy.jsonl", src)
    app = Host(src, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.wb.findings, what="findings")
        dups = sorted({f.row for f in app.screen.wb.findings if f.check == "exact_duplicate"})
        assert dups
        app.screen._set_filter("check:exact_duplicate")
        table = app.screen.query_one(RowsTable)
        await wait_for(pilot, lambda: table.order is not None, what="check filter")
        assert sorted(int(i) for i in table.order) == dups
        # a finding selected in the list moves the cursor to its row
        from tui.widgets.data.findings_list import FindingsList

        target = next(f.row for f in app.screen.wb.findings if f.check == "invalid_json")
        app.screen.post_message(FindingsList.Jump(target, "invalid_json"))
        await wait_for(pilot, lambda: table.source_index() == target, what="jump to finding")
