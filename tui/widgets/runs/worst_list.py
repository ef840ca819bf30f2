"""The highest-loss training and validation examples; choosing one opens it on the Data screen."""
from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable


class WorstList(DataTable):
    DEFAULT_CSS = "WorstList { height: 1fr; }"

    class Jump(Message):
        """Open the dataset at this example (0-based loaded row, 1-based source line)."""

        def __init__(self, row: int, line: int | None):
            super().__init__()
            self.row, self.line = row, line

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.records: list[dict] = []

    def on_mount(self) -> None:
        self.add_columns("split", "row", "line", "loss", "example")

    def show(self, records: list[dict]) -> None:
        self.records = records
        self.clear()
        for i, r in enumerate(records):
            loss = r.get("loss")
            self.add_row(r.get("split", "?"), str(r.get("row")), "-" if r.get("line") is None else str(r["line"]),
                         Text("-" if loss is None else f"{loss:.4f}", "bold"), r.get("preview", ""), key=str(i))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        k = event.cursor_row
        if 0 <= k < len(self.records):
            r = self.records[k]
            self.post_message(self.Jump(int(r["row"]), r.get("line")))
