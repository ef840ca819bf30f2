"""A host app that pushes the Data workbench screen, and waiting helpers for its tests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from textual.app import App

from tui.screens.data_workbench import DataWorkbenchScreen
from tui.widgets.data.rows_table import RowsTable
from pilot_helpers import wait_for  # noqa: E402,F401  (re-exported to the data tests)


class Host(App):
    def __init__(self, path, **kw):
        super().__init__()
        self.screen_args = (path, kw)

    def on_mount(self) -> None:
        path, kw = self.screen_args
        self.push_screen(DataWorkbenchScreen(path, **kw))



def visible_rows(app) -> list[str]:
    table = app.screen.query_one(RowsTable)
    return [table.render_line(y).text.rstrip() for y in range(table.size.height)]


def chat_row(i: int, extra: str = "") -> dict:
    return {"messages": [{"role": "user", "content": f"question number {i}{extra}"},
                         {"role": "assistant", "content": f"answer {i}"}]}


def write_jsonl(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps(chat_row(i, " needle" if i % 1000 == 7 else "")) + "\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


GOOD = '{"text": "hello there"}\n'   # a readable row for the bad-input files
