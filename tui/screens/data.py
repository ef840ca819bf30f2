"""The Data screen (basic): the dataset's rows in a table with the detected format and
any per-row problems. Loading runs in a thread worker."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from tui.services.dataset_preview import PREVIEW_ROWS, load_preview


class DataScreen(Screen):
    BINDINGS = [
        Binding("ctrl+l", "focus_path", "Path", tooltip="Edit the dataset path"),
        Binding("f5", "reload", "Reload", tooltip="Load the dataset again"),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("Data", style="bold"), id="data-title", classes="title-bar")
        with Horizontal(id="data-path-row"):
            yield Label("dataset ")
            yield Input(value=str(self.app.config.data.path), id="data-path",
                        placeholder="a JSONL/JSON/CSV/Parquet file or saved dataset directory")
        yield Static(id="data-status")
        yield DataTable(id="data-table", zebra_stripes=True)
        yield Static(id="data-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(DataTable).focus()

    def action_focus_path(self) -> None:
        self.query_one("#data-path", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if path:
            self.app.config.data.path = path
            self.action_reload()
            self.action_focus_table()

    def action_reload(self) -> None:
        path = self.query_one("#data-path", Input).value.strip() or str(self.app.config.data.path)
        self.query_one("#data-status", Static).update(Text(f"loading {path} ...", style="dim"))
        self._load(path)

    @work(thread=True, exclusive=True, group="data-load", exit_on_error=False)
    def _load(self, path: str) -> None:
        pv = load_preview(path)
        self.app.call_from_thread(self._show, pv)

    def _show(self, pv) -> None:
        status = self.query_one("#data-status", Static)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        problems = self.query_one("#data-problems", Static)
        if pv.error:
            status.update(Text(pv.error, style="bold red"))
            problems.update("")
            return
        shown = len(pv.rows)
        more = f" (first {PREVIEW_ROWS})" if shown >= PREVIEW_ROWS else ""
        t = Text()
        t.append(f"{shown} rows{more}", "bold")
        t.append(f" from {pv.source}  ", "dim")
        t.append("format ", "dim")
        t.append(pv.format, "bold")
        if pv.format_reason:
            t.append(f" ({pv.format_reason})", "dim")
        t.append(f"  source {pv.kind}", "dim")
        status.update(t)
        table.add_column("#")
        for c in pv.columns:
            table.add_column(c)
        for i, row in enumerate(pv.rows):
            table.add_row(str(i), *row)
        if pv.problems:
            problems.update(Text(f"{len(pv.problems)} problem(s): " + "; ".join(pv.problems[:5]), style="yellow"))
        else:
            problems.update("")
