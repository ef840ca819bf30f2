"""The Runs screen: every run with its status, method, model, dataset version, steps,
best val loss and duration; open one, overlay the loss curves of several (space
selects), diff two configs, resume a stopped one. For the run under the cursor: its
lineage (dataset version -> run -> evaluations -> exports), base vs fine-tuned scores
and sample generations (e runs `ftwb eval` when there are none), the worst examples
by loss (enter opens one on the Data screen), the playground (p) and export (x).

Evaluation and export run as `ftwb` subprocesses: the TUI process never loads a model."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from engine.config import ConfigError
from tui.services import run_actions as ra
from tui.services import run_history
from tui.widgets.braille import ChartLine
from tui.widgets.line_chart import LineChart
from tui.widgets.progress_panel import STATUS_STYLE
from tui.widgets.runs.eval_table import EvalScores, SamplesTable
from tui.widgets.runs.lineage_view import LineageView
from tui.widgets.runs.worst_list import WorstList

PALETTE = ("#5fafd7", "#ffaf5f", "#87d787", "#d787d7", "#ff5f5f", "#d7d75f", "#5fd7d7", "#afafaf")
COLUMNS = ("", "status", "run", "method", "model", "data ver", "steps", "best val", "duration")


class RunsScreen(Screen):
    SCOPED_CSS = False  # the layout follows the app's .compact class
    DEFAULT_CSS = """
    #runs-lineage { height: auto; max-height: 8; border-top: solid $panel; }
    #runs-tabs { height: 1fr; }
    #runs-tabs TabPane { padding: 0; }
    #runs-eval-pane SamplesTable { min-height: 6; }
    #runs-worst-state { height: auto; padding: 0 1; }
    .compact #runs-table { height: 7; }
    .compact #runs-lineage { max-height: 5; }
    .roomy #runs-tabs { height: 2fr; }
    """
    BINDINGS = [
        Binding("e", "evaluate", "Eval", id="runs.eval",
                tooltip="Base vs fine-tuned scores and samples; runs `ftwb eval` when there are none"),
        Binding("w", "worst", "Worst", id="runs.worst",
                tooltip="Highest-loss examples; enter on one opens it on the Data screen"),
        Binding("p", "playground", "Play", id="runs.playground",
                tooltip="Chat with the base and the fine-tuned model side by side"),
        Binding("x", "export", "Export", id="runs.export", tooltip="Export the adapter or a merged model"),
        Binding("space", "toggle_select", "Select", id="runs.select", tooltip="Select runs to overlay or diff"),
        Binding("enter", "open_run", "Open", id="runs.open", show=False,
                tooltip="Show this run on the Train screen (attach if live)"),
        Binding("E", "evaluate(True)", "Re-eval", id="runs.reeval", show=False,
                tooltip="Run `ftwb eval` again even though results exist"),
        Binding("o", "overlay", "Overlay", id="runs.overlay", show=False,
                tooltip="Overlay the loss curves of the selected runs"),
        Binding("v", "diff", "Diff", id="runs.diff", show=False, tooltip="Config diff of two selected runs"),
        Binding("g", "toggle_rewards", "Margin", id="runs.rewards", show=False,
                tooltip="Preference runs: overlay the reward margin instead of the loss"),
        Binding("u", "resume", "Resume", id="runs.resume", show=False,
                tooltip="Resume the run under the cursor from its last checkpoint"),
        Binding("f5", "refresh_runs", "Refresh", id="runs.refresh", show=False,
                tooltip="Re-read the runs directory"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.runs: list = []
        self.selected: set[str] = set()
        self.show_margin = False  # overlay reward margins (preference runs) instead of losses
        self._curves: list = []
        self.lineage: ra.Lineage | None = None
        self.results: dict | None = None      # eval results of the run under the cursor
        self.samples: list[dict] = []
        self.worst: list[dict] | None = None  # None: not loaded or never computed
        self.evaluating: dict[str, float] = {}  # run path -> start time of its `ftwb eval`
        self.computing_worst: set[str] = set()
        self.eval_errors: dict[str, str] = {}     # run path -> the one-line message of its failed eval
        self.last_argv: list[str] | None = None  # the last ftwb command line run (tests read it)
        self.last_result: ra.CliResult | None = None
        self._details_for: str | None = None
        self._eval_key: tuple | None = None
        self._cols: dict = {}              # column title -> DataTable column key
        self._live: tuple | None = None    # (run dir, state version) of the open run, as last shown
        self._listing: frozenset = frozenset()  # run directory names, as last listed

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title", classes="title-bar")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield LineageView(id="runs-lineage")
        with TabbedContent(id="runs-tabs"):
            with TabPane("Curves", id="tab-curves"):
                yield LineChart("loss curves", ascii_mode=self.app.ascii_charts, id="runs-chart")
            with TabPane("Eval", id="tab-eval"):
                with VerticalScroll(id="runs-eval-pane"):
                    yield EvalScores(id="runs-eval")
                    yield SamplesTable(id="runs-samples")
            with TabPane("Worst", id="tab-worst"):
                yield Static(id="runs-worst-state")
                yield WorstList(id="runs-worst")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        self._cols = dict(zip(COLUMNS, table.add_columns(*COLUMNS)))
        table.focus()
        self.action_refresh_runs()
        self.set_interval(5.0, self._poll_listing)
        self.set_interval(1.0, self._tick)

    def on_screen_resume(self) -> None:
        self.action_refresh_runs()

    def _poll_listing(self) -> None:  # not _auto_refresh: Widget uses that name itself
        """A new run directory (started elsewhere) re-reads the list; the runs' logs are not
        polled: the open run's row follows the app's event reader (see _follow_live)."""
        if self.app.screen is not self:
            return
        try:
            names = frozenset(p.name for p in Path(self.app.runs_dir).iterdir() if p.is_dir())
        except OSError:
            names = frozenset()
        if names != self._listing:
            self.action_refresh_runs()

    def _follow_live(self) -> None:
        """Update the open run's row from the RunState the Train screen reads."""
        s = self.app.session
        if s is None or self.app.screen is not self:
            return
        st = s.state
        key = str(s.run_dir)
        if self._live is not None and self._live[:2] == (key, st.version):
            return
        was_finished = self._live is not None and self._live[0] == key and self._live[2]
        self._live = (key, st.version, st.finished)
        if not any(str(r.path) == key for r in self.runs):
            self.action_refresh_runs()  # a run this list has not seen yet
            return
        if st.finished and not was_finished:
            self.action_refresh_runs()  # its final summary (adapter, duration) from its directory
            return
        table, c = self.table, self._cols
        steps = f"{st.step}/{st.total_steps}" if st.total_steps else str(st.step)
        table.update_cell(key, c["status"], Text(st.status, style=STATUS_STYLE.get(st.status, "")),
                          update_width=True)
        table.update_cell(key, c["steps"], steps, update_width=True)
        if st.best is not None:
            table.update_cell(key, c["best val"], f"{st.best[1]:.4g}", update_width=True)

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    # ------------------------------------------------------------ loading
    def action_refresh_runs(self) -> None:
        self._load_runs(self.app.runs_dir)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _load_runs(self, runs_dir: Path) -> None:
        runs = run_history.summaries(runs_dir)
        self.app.call_from_thread(self._show_runs, runs)

    def _show_runs(self, runs: list) -> None:
        # The cursor stays on the same run (by its directory), not on the same row number.
        before = self._current()
        self.runs = runs
        self._listing = frozenset(Path(r.path).name for r in runs)
        table = self.table
        cursor = table.cursor_row
        if before is not None:
            cursor = next((i for i, r in enumerate(runs) if r.path == before.path), cursor)
        # Columns too: their widths then follow the new contents ("running" -> "completed").
        table.clear(columns=True)
        self._cols = dict(zip(COLUMNS, table.add_columns(*COLUMNS)))
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
        self._refresh_details()

    def _current(self):
        table = self.table
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "runs-table":
            return
        if not self.selected:
            self._preview()
        self._refresh_details()

    # ------------------------------------------------------------ details of the run under the cursor
    def _refresh_details(self) -> None:
        r = self._current()
        if r is None:
            self.query_one(LineageView).show(None)
            return
        self._load_details(str(r.path), self._worst_tab_active())

    def _worst_tab_active(self) -> bool:
        return self.query_one("#runs-tabs", TabbedContent).active == "tab-worst"

    @work(thread=True, exclusive=True, group="runs-details", exit_on_error=False)
    def _load_details(self, path: str, with_worst: bool) -> None:
        lineage = ra.load_lineage(path)
        samples = ra.read_samples(path)
        worst = ra.read_worst(path) if with_worst else None
        self.app.call_from_thread(self._show_details, path, lineage, samples, worst, with_worst)

    def _show_details(self, path: str, lineage, samples: list[dict], worst, with_worst: bool) -> None:
        r = self._current()
        if r is None or str(r.path) != path:
            return  # the cursor moved on
        changed = self._details_for != path
        self._details_for = path
        self.lineage, self.results = lineage, lineage.results
        self.query_one(LineageView).show(lineage)
        key = (path, (self.results or {}).get("created"), len(samples))
        if key != self._eval_key:
            self._eval_key = key
            self.samples = samples
            self.query_one(SamplesTable).show(samples)
        self._show_eval_state()
        if with_worst:
            self.worst = worst
            self._show_worst()
        elif changed:
            self.worst = None

    def _show_eval_state(self) -> None:
        r = self._current()
        started = self.evaluating.get(str(r.path)) if r is not None else None
        state = f"evaluating {r.name} with `ftwb eval`… {time.monotonic() - started:.0f} s " \
                "(base and fine-tuned on the held-out split)" if started is not None else ""
        if not state and r is not None and str(r.path) in self.eval_errors:
            state = f"the last `ftwb eval` failed: {self.eval_errors[str(r.path)]}"
        self.query_one(EvalScores).show(self.results, state)

    def _tick(self) -> None:
        self._follow_live()
        r = self._current()
        if r is not None and str(r.path) in self.evaluating | {p: 0 for p in self.computing_worst}:
            self._show_eval_state()
            self._show_worst()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-worst":
            self._refresh_details()

    # ------------------------------------------------------------ evaluation
    def action_evaluate(self, again: bool = False) -> None:
        r = self._current()
        if r is None:
            return
        self.query_one("#runs-tabs", TabbedContent).active = "tab-eval"
        path = str(r.path)
        if path in self.evaluating:
            self.notify(f"{r.name} is being evaluated already.", severity="warning")
            return
        if self.results is not None and self._details_for == path and not again:
            self.notify("Evaluation results on file are shown; E evaluates again.")
            return
        if self.evaluating:
            self.notify("Another evaluation is running; one at a time (each loads a model).", severity="warning")
            return
        self.evaluating[path] = time.monotonic()
        self._show_eval_state()
        self._evaluate(path, r.name)

    @work(group="runs-eval", exit_on_error=False)
    async def _evaluate(self, path: str, name: str) -> None:
        argv = ra.eval_argv(path)
        self.last_argv = argv
        try:
            res = await ra.run_cli(argv)
        finally:
            self.evaluating.pop(path, None)
        self.last_result = res
        if res.rc == 0:
            self.eval_errors.pop(path, None)
            self.notify(f"{name}: evaluation done")
        else:
            self.eval_errors[path] = res.message.removeprefix("ftwb eval: ")
            self.notify(f"{name}: {self.eval_errors[path]}", severity="error", timeout=10)
        self._eval_key = None  # re-read results and samples from RUN_DIR/eval/
        self._refresh_details()

    # ------------------------------------------------------------ worst examples
    def action_worst(self) -> None:
        r = self._current()
        if r is None:
            return
        tabs = self.query_one("#runs-tabs", TabbedContent)
        if tabs.active != "tab-worst":
            tabs.active = "tab-worst"  # the tab's activation loads the list
            self.query_one(WorstList).focus()
            return
        self.query_one(WorstList).focus()
        path = str(r.path)
        if self.worst is None and self._details_for == path and path not in self.computing_worst:
            self.computing_worst.add(path)
            self._show_worst()
            self._compute_worst(path, r.name)

    @work(group="runs-worst", exit_on_error=False)
    async def _compute_worst(self, path: str, name: str) -> None:
        argv = ra.worst_argv(path)
        self.last_argv = argv
        try:
            res = await ra.run_cli(argv)
        finally:
            self.computing_worst.discard(path)
        self.last_result = res
        if res.rc != 0:
            self.notify(f"{name}: {res.message}", severity="error", timeout=10)
        self._refresh_details()

    def _show_worst(self) -> None:
        r = self._current()
        state = self.query_one("#runs-worst-state", Static)
        if r is not None and str(r.path) in self.computing_worst:
            state.update(Text("computing the loss of every example with `ftwb eval --worst` (loads the model)…",
                              "bold yellow"))
        elif self.worst is None:
            state.update(Text("No per-sample losses for this run yet: press w to compute them.", "dim"))
        else:
            state.update(Text(f"{len(self.worst)} highest-loss examples · enter opens one on the Data screen "
                              "to fix its label", "dim"))
        wl = self.query_one(WorstList)
        if (self.worst or []) != wl.records:
            wl.show(self.worst or [])

    def on_worst_list_jump(self, event: WorstList.Jump) -> None:
        r = self._current()
        if r is None:
            return
        path = ra.dataset_path(r.path)
        if path is None:
            self.notify(f"{r.name} names no dataset (no data.json, no data.path in config.yaml).", severity="error")
            return
        open_dataset_at(self.app, path, event.row, event.line)

    # ------------------------------------------------------------ playground and export
    def action_playground(self) -> None:
        r = self._current()
        if r is None:
            self.notify("No run under the cursor.", severity="warning")
            return
        from tui.screens.playground import PlaygroundScreen

        self.app.push_screen(PlaygroundScreen(r.path))

    def action_export(self) -> None:
        r = self._current()
        if r is None:
            return
        from tui.widgets.runs.export_dialog import ExportDialog

        def chosen(choice: dict | None) -> None:
            if choice:
                self.export(r.path, choice["merge"], choice["out"])
        self.app.push_screen(ExportDialog(r.name, str(ra.default_export_dir(r.path, False)),
                                          str(ra.default_export_dir(r.path, True))), chosen)

    def export(self, run: Path, merge: bool, out: str | None, force: bool = False) -> None:
        self.notify(f"exporting {'a merged model' if merge else 'the adapter'} of {Path(run).name}…")
        self._export(Path(run), merge, out, force)

    @work(group="runs-export", exit_on_error=False)
    async def _export(self, run: Path, merge: bool, out: str | None, force: bool) -> None:
        argv = ra.export_argv(run, merge, out, force)
        self.last_argv = argv
        res = await ra.run_cli(argv)
        self.last_result = res
        if res.target_exists and not force:
            from tui.widgets.config.confirm_dialog import ConfirmDialog

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.export(run, merge, out, force=True)
                else:
                    self.notify("Export cancelled: nothing was overwritten.")
            msg = res.message.removeprefix("ftwb export: ")
            self.app.push_screen(ConfirmDialog(f"{msg}\n\nReplace it with this export?", yes="Overwrite"), confirmed)
            return
        if res.rc == 0:
            self.notify(res.message, timeout=8)
        else:
            self.notify(res.message, severity="error", timeout=10)
        self._refresh_details()

    # ------------------------------------------------------------ open, select, overlay, diff, resume
    def action_open_run(self) -> None:
        r = self._current()
        if r is None:
            return
        self.app.open_run(r.path)
        self.app.switch_mode("train")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "runs-table":
            self.action_open_run()

    def action_toggle_select(self) -> None:
        r = self._current()
        if r is None:
            return
        key = str(r.path)
        self.selected.symmetric_difference_update({key})
        table = self.table
        table.update_cell(key, table.ordered_columns[0].key, "●" if key in self.selected else " ")
        self.action_overlay() if self.selected else self._preview()

    def _preview(self) -> None:
        r = self._current()
        if r is not None:
            self._load_curves([str(r.path)])

    def action_overlay(self) -> None:
        paths = sorted(self.selected) or ([str(self._current().path)] if self._current() else [])
        if paths:
            self.query_one("#runs-tabs", TabbedContent).active = "tab-curves"
            self._load_curves(paths)

    @work(thread=True, exclusive=True, group="runs-curves", exit_on_error=False)
    def _load_curves(self, paths: list[str]) -> None:
        curves = [run_history.load_curves(Path(p)) for p in paths]
        self.app.call_from_thread(self._show_curves, curves)

    def _show_curves(self, curves: list) -> None:
        self._curves = curves
        margin = self.show_margin and any(c.margin is not None for c in curves)
        lines, legend = [], Text()
        for i, c in enumerate(curves):
            color = PALETTE[i % len(PALETTE)]
            if margin:
                if c.margin is not None:
                    lines.append(ChartLine(c.name, c.margin.x, c.margin.y, color))
            else:
                lines.append(ChartLine(c.name, c.train.x, c.train.y, color))
                if len(c.val):
                    lines.append(ChartLine(c.name + " val", c.val.x, c.val.y, f"bold {color}"))
            legend.append(f"━ {c.name}", color)
            if c.margin is not None:  # a preference run: its last margin and accuracy, to compare
                acc = c.accuracy.last() if c.accuracy is not None else None
                legend.append(f" margin {c.margin.last()[1]:.3g}" + (f" acc {acc[1]:.0%}" if acc else ""), "dim")
            legend.append("  ")
        chart = self.query_one(LineChart)
        if margin:
            chart.title = "reward margin overlay" if len(curves) > 1 else "reward margin"
        else:
            chart.title = "overlay" if len(curves) > 1 else "loss curves"
        chart.set_lines(lines, legend=legend)

    def action_toggle_rewards(self) -> None:
        self.show_margin = not self.show_margin
        if self._curves:
            self._show_curves(self._curves)

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
        from tui.widgets.config.diff_view import DiffView

        a, b = Path(paths[0]).name, Path(paths[1]).name
        self.app.push_screen(DiffView("Config diff", a, b, rows))

    def action_resume(self) -> None:
        r = self._current()
        if r is not None:
            self.app.action_resume_run(str(r.path))


def open_dataset_at(app, path: str, row: int, line: int | None = None) -> None:
    """Show `path` on the Data screen with the cursor on a loaded-dataset row, once the
    screen has indexed far enough to have it (it opens files in a worker)."""
    from tui.screens.data_workbench import DataWorkbenchScreen
    from tui.widgets.data.rows_table import RowsTable

    app.switch_mode("data")
    screen = app.screen
    cfg = getattr(app, "config", None)
    shown = getattr(screen, "path", None) or (str(cfg.data.path) if cfg is not None else None)
    if not (isinstance(screen, DataWorkbenchScreen) and ra.same_file(shown, path)):
        screen = DataWorkbenchScreen(path)
        app.push_screen(screen)
    deadline = time.monotonic() + 120

    def seek() -> None:
        wb = getattr(screen, "wb", None)
        if wb is None:
            if screen.loaded or time.monotonic() > deadline:  # the file could not be opened
                timer.stop()
            return
        k = ra.source_index(wb.source, row, line)
        if k is None and not screen.loaded:
            return  # not indexed that far yet
        table = screen.query_one(RowsTable)
        if k is not None and (not table.size.height or table.virtual_size.height <= k
                              or (k >= table.size.height and not table.allow_vertical_scroll)):
            return  # laid out with its scrollbar first: a scroll before that is dropped
        timer.stop()
        if k is None:
            screen.notify(f"row {row} is not in {path} any more: the file changed since the run", severity="warning")
            return
        if not table.move_to_source(k):
            screen.action_clear_filter()
            table.move_to_source(k)
        table.focus()
    timer = app.set_interval(0.1, seek)
