"""Bad input on the Data workbench: a clear message in a banner and a notification, the
readable rows still shown, never a crash."""
from __future__ import annotations

import json

import pytest
from textual.widgets import Static


from tui.widgets.data.rows_table import RowsTable
from tui_data_helpers import GOOD, Host, visible_rows, wait_for


def banner(app) -> str:
    return str(app.screen.query_one("#dwb-banner", Static).render())


CASES = {
    # name: (file name, bytes, words the banner must hold, readable rows shown)
    "binary": ("data.jsonl", b"\x00\x01\x02PK\x03\x04" * 100, "binary", 0),
    "utf16": ("data.jsonl", "\ufeff".encode("utf-16-le") + GOOD.encode("utf-16-le"), "UTF-16", 0),
    "empty": ("data.jsonl", b"", "empty", 0),
    "wrong_encoding": ("data.jsonl", (GOOD + '{"text": "caf\xe9"}\n').encode("latin-1") + GOOD.encode(),
                       "not valid UTF-8", 2),
    "broken_array": ("data.json", ("[" + GOOD.strip() + ", {\"text\": \"cut here").encode(), "not valid JSON", 1),
    "ragged_csv": ("data.csv", b"text,label\nhello,a\nbad,row,extra\nbye,b\n", "fields", 2),
    "bom_crlf": ("data.jsonl", b"\xef\xbb\xbf" + (GOOD + "\n" + GOOD).replace("\n", "\r\n").encode(), None, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_shows_a_message_and_the_readable_rows(tmp_path, case):
    name, data, words, rows = CASES[case]
    p = tmp_path / name
    p.write_bytes(data)
    app = Host(p, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        if words:
            await wait_for(pilot, lambda: words in banner(app), what=f"banner with {words!r}")
        else:
            await pilot.pause(0.2)  # a banner would come right after the load
            assert banner(app) == ""
        wb = app.screen.wb
        readable = 0 if wb is None else sum(1 for i in range(len(wb)) if wb.row(i).data is not None)
        assert readable == rows
        if rows:
            await wait_for(pilot, lambda: "hello" in "\n".join(visible_rows(app)), what="the readable rows shown")


async def test_a_50mb_single_line_is_shown_without_parsing_it_in_the_table(tmp_path):
    p = tmp_path / "huge.jsonl"
    with open(p, "w") as fh:
        fh.write(GOOD)
        fh.write(json.dumps({"text": "x" * (50 << 20)}) + "\n")
        fh.write(GOOD)
    app = Host(p, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        table = app.screen.query_one(RowsTable)
        assert table.count == 3
        await wait_for(pilot, lambda: "MB line" in visible_rows(app)[1], what="the huge line's preview")
        lines = visible_rows(app)
        assert "MB line" in lines[1] and "hello" in lines[0] and "hello" in lines[2]
        await pilot.press("down")
        await wait_for(pilot, lambda: "xxxx" in str(app.screen.query_one("#row-raw", Static).render())[:2000],
                       what="huge row parsed in the row view")
