"""The Runs screen: every run with its status, method, model, dataset version, steps,
best val loss and duration; open one, overlay the loss curves of several (space
selects), diff two configs, resume a stopped one."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from engine.config import ConfigError
from tui.services import run_history
from tui.widgets.braille import ChartLine
from tui.widgets.line_chart import LineChart
from tui.widgets.progress_panel import STATUS_STYLE

PALETTE = ("#5fafd7", "#ffaf5f", "#87d787", "#d787d7", "#ff5f5f", "#d7d75f", "#5fd7d7", "#afafaf")
COLUMNS = ("", "status", "run", "method", "model", "data ver", "steps", "best val", "duration")


class RunsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open_run", "Open", tooltip="Show this run on the Train screen (attach if live)"),
        Binding("space", "toggle_select", "Select", tooltip="Select runs to overlay or diff"),
        Binding("o", "overlay", "Overlay", tooltip="Overlay the loss curves of the selected runs"),
        Binding("v", "diff", "Diff", tooltip="Config diff of two selected runs"),
        Binding("u", "resume", "Resume", tooltip="Resume the run under the cursor from its last checkpoint"),
        Binding("f5", "refresh_runs", "Refresh", tooltip="Re-read the runs directory"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.runs: list = []
        self.selected: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title", classes="title-bar")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield LineChart("loss curves", ascii_mode=self.app.ascii_charts, id="runs-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.action_refresh_runs()
        self.set_interval(5.0, self._auto_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh_runs()

    def _auto_refresh(self) -> None:
        if self.app.screen is self:
            self.action_refresh_runs()

    # ------------------------------------------------------------ loading
    def action_refresh_runs(self) -> None:
        self._load_runs(self.app.runs_dir)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _load_runs(self, runs_dir: Path) -> None:
        runs = run_history.summaries(runs_dir)
        self.app.call_from_thread(self._show_runs, runs)

    def _show_runs(self, runs: list) -> None:
        self.runs = runs
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in runs:
            sel = "●" if str(r.path) in self.selected else " "
            best = f"{r.best_val_loss:.4g}" if r.best_val_loss is not None else "-"
            steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            table.add_row(sel, Text(r.status, style=STATUS_STYLE.get(r.status, "")), r.name, r.method,
                          Path(r.model).name or r.model, r.dataset_version, steps, best,
                          run_history.fmt_duration(r.duration_s), key=str(r.path))
        if runs:
            table.move_cursor(row=min(max(cursor, 0), len(runs) - 1))
        title = self.query_one("#runs-title", Static)
        title.update(Text.assemble(("Runs", "bold"), f"  {len(runs)} in {self.app.runs_dir}",
                                   ("  (none yet: press s on the Train screen to start one)" if not runs else "", "dim")))
        if runs and not self.selected:
            self._preview()

    def _current(self):
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self.selected:
            self._preview()

    # ------------------------------------------------------------ actions
    def action_open_run(self) -> None:
        r = self._current()
        if r is None:
            return
        self.app.open_run(r.path)
        self.app.switch_mode("train")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def action_toggle_select(self) -> None:
        r = self._current()
        if r is None:
            return
        key = str(r.path)
        self.selected.symmetric_difference_update({key})
        table = self.query_one(DataTable)
        table.update_cell(key, table.ordered_columns[0].key, "●" if key in self.selected else " ")
        self.action_overlay() if self.selected else self._preview()

    def _preview(self) -> None:
        r = self._current()
        if r is not None:
            self._load_curves([str(r.path)])

    def action_overlay(self) -> None:
        paths = sorted(self.selected) or ([str(self._current().path)] if self._current() else [])
        if paths:
            self._load_curves(paths)

    @work(thread=True, exclusive=True, group="runs-curves", exit_on_error=False)
    def _load_curves(self, paths: list[str]) -> None:
        curves = [run_history.load_curves(Path(p)) for p in paths]
        self.app.call_from_thread(self._show_curves, curves)

    def _show_curves(self, curves: list) -> None:
        lines, legend = [], Text()
        for i, c in enumerate(curves):
            color = PALETTE[i % len(PALETTE)]
            lines.append(ChartLine(c.name, c.train.x, c.train.y, color))
            if len(c.val):
                lines.append(ChartLine(c.name + " val", c.val.x, c.val.y, f"bold {color}"))
            legend.append(f"━ {c.name}  ", color)
        chart = self.query_one(LineChart)
        chart.title = "overlay" if len(curves) > 1 else "loss curves"
        chart.set_lines(lines, legend=legend)

    def action_diff(self) -> None:
        paths = sorted(self.selected)
        if len(paths) != 2:
            self.notify("Select exactly two runs with space to diff their configs.", severity="warning")
            return
        try:
            rows = run_history.config_diff(Path(paths[0]), Path(paths[1]))
        except ConfigError as e:
            self.notify(str(e), severity="error")
            return
        from tui.screens.dialogs import DiffScreen

        self.app.push_screen(DiffScreen(Path(paths[0]).name, Path(paths[1]).name, rows))

    def action_resume(self) -> None:
        r = self._current()
        if r is not None:
            self.app.action_resume_run(str(r.path))
