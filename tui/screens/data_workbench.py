"""The Data screen: a dataset workbench. Browse any size (a virtual table over a line
index), read a row as turns, raw JSON or tokens with the loss mask, see statistics and
check findings, clean without losing anything (delete/restore, edit, bulk drops, PII
redaction, undo/redo through engine.data.versions.Session), save versions and split.

Everything slow runs in a thread worker and reports back with call_from_thread; the
source file is only ever read."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from tui.services.dataset_index import BadSource, LineSource
from tui.services.dataset_session import (FILTER_HELP, STATS_SAMPLE, Workbench, WorkbenchError, apply_filter,
                                          compute_stats, detect, load_tokenizer, open_source, run_all_checks,
                                          token_view, write_split)
from tui.widgets.data.dialogs import EditDialog, SplitDialog, VersionsDialog
from tui.widgets.data.filter_bar import FilterBar
from tui.widgets.data.findings_list import FindingsList
from tui.widgets.data.row_view import RowView, tokens_text
from tui.widgets.data.rows_table import RowsTable
from tui.widgets.data.stats_panel import StatsPanel

PROGRESS_EVERY_S = 0.25
CHECKS_REDRAW_S = 0.5          # findings pane redraws at most this often while checks run
SCAN_ERRORS_UNDER = 64 << 20   # bytes: smaller JSONL files are scanned for unreadable lines up front


class DataWorkbenchScreen(Screen):
    DEFAULT_CSS = """
    DataWorkbenchScreen #dwb-title { height: 1; background: $panel; padding: 0 1; }
    DataWorkbenchScreen #dwb-banner { height: auto; max-height: 4; padding: 0 1; display: none; }
    DataWorkbenchScreen #dwb-banner.-shown { display: block; }
    DataWorkbenchScreen #dwb-main { height: 1fr; }
    DataWorkbenchScreen #dwb-rows { width: 3fr; border-right: solid $panel; }
    DataWorkbenchScreen #dwb-side { width: 2fr; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="data.filter", tooltip=FILTER_HELP),
        Binding("e", "edit", "Edit", id="data.edit", tooltip="Edit a text field of this row in a modal editor"),
        Binding("x,delete", "toggle_delete", "Del", id="data.delete",
                tooltip="Delete this row, or restore it if deleted (nothing is lost until saved)"),
        Binding("ctrl+z", "undo", "Undo", id="data.undo", tooltip="Undo the last cleaning operation"),
        Binding("ctrl+y", "redo", "Redo", id="data.redo", show=False, tooltip="Redo the last undone operation"),
        Binding("ctrl+s", "save", "Save", id="data.save", tooltip="Save a new dataset version with its manifest"),
        Binding("i", "checks", "Checks", id="data.checks", tooltip="Run every dataset check and list findings"),
        Binding("s", "stats", "Stats", id="data.stats", show=False,
                tooltip="Format, fields, roles, token-length histogram over every row, truncation, packing"),
        Binding("S", "stats_sample", "Stats (sample)", id="data.stats_sample", show=False,
                tooltip="The same statistics over an even sample of 20,000 rows (quicker on a huge file)"),
        Binding("o", "tokens", "Tokens", id="data.tokens", show=False,
                tooltip="This row through the model's chat template: trained vs masked tokens"),
        Binding("enter", "row_view", "Row", id="data.row", show=False, tooltip="Show the row as turns / raw / tokens"),
        Binding("v", "versions", "Versions", id="data.versions", show=False, tooltip="List saved versions"),
        Binding("p", "split", "Split", id="data.split", show=False,
                tooltip="Write train/val/test splits and report leakage"),
        Binding("D", "drop_duplicates", "Drop dups", id="data.drop_dups", show=False,
                tooltip="Drop every exact duplicate but the first"),
        Binding("P", "redact", "Redact PII", id="data.redact", show=False,
                tooltip="Replace PII and secrets with typed placeholders in the filtered rows"),
        Binding("F", "drop_failing", "Drop failing", id="data.drop_failing", show=False,
                tooltip="With a check:ID filter, delete every row that fails that check"),
        Binding("escape", "clear_filter", "Clear filter", id="data.clear", show=False,
                tooltip="Stop running checks / close the filter bar / show all rows"),
    ]

    def __init__(self, path: str | Path | None = None, model_path: str | None = None, max_seq_len: int | None = None,
                 **kw):
        super().__init__(**kw)
        self.path = str(path) if path is not None else None
        self.model_path = model_path
        self.max_seq_len = max_seq_len
        self.wb: Workbench | None = None
        self.tokenizer = None
        self.filter_spec = ""
        self.loaded = False           # set when the whole source is indexed/loaded (tests wait on it)
        self.last_saved = None        # engine.data.versions.VersionInfo of the last save here
        self._last_progress = 0.0

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="dwb-title")
        yield Static(id="dwb-banner")
        yield FilterBar(FILTER_HELP, id="dwb-filter")
        with Horizontal(id="dwb-main"):
            yield RowsTable(id="dwb-rows")
            with TabbedContent(id="dwb-side"):
                with TabPane("Row", id="side-row"):
                    yield RowView(id="dwb-row")
                with TabPane("Stats", id="side-stats"):
                    yield StatsPanel(id="dwb-stats")
                with TabPane("Checks", id="side-checks"):
                    yield FindingsList(id="dwb-findings")
        yield Footer()

    def on_mount(self) -> None:
        if hasattr(self.app, "workbenches"):
            self.app.workbenches.add(self)  # the quit / leave prompts ask about unsaved operations
        self.query_one(RowsTable).focus()
        path = self.path
        if path is None:
            cfg = getattr(self.app, "config", None)
            path = str(cfg.data.path) if cfg is not None else None
        cfg = getattr(self.app, "config", None)
        if self.model_path is None and cfg is not None:
            self.model_path = cfg.model.name_or_path
        if self.max_seq_len is None:  # the run config's, where the app has one
            self.max_seq_len = int(cfg.data.max_seq_len) if cfg is not None else 1024
        if not path:
            self._title("no dataset: start ftwb with a dataset path")
            return
        self.path = path
        self._title(f"opening {path} …")
        self._open(path)

    # ------------------------------------------------------------ status lines
    def _title(self, msg: str | Text) -> None:
        self.query_one("#dwb-title", Static).update(msg if isinstance(msg, Text) else Text(msg, style="bold"))

    def _status(self, extra: str = "") -> None:
        wb = self.wb
        if wb is None:
            return
        t = Text()
        t.append("Data ", "bold")
        t.append(f"{wb.path.name}  ", "")
        t.append(f"{len(wb):,} rows", "bold")
        if wb.bad is not None and len(wb.bad):
            t.append(f" ({len(wb.bad):,} unreadable)", "red")
        src = wb.source
        if isinstance(src, LineSource) and not src.index.done:
            pct = 100 * src.index.scanned / max(1, src.index.size)
            t.append(f" (indexing {pct:.0f}%)", "yellow")
        shown = self.query_one(RowsTable).count
        if self.filter_spec:
            t.append(f"  filter: {shown:,} match", "cyan")
        t.append(f"  {wb.fmt}", "bold")
        if wb.unsaved():
            t.append(f"  {wb.unsaved()} unsaved ops", "yellow")
        elif getattr(self, "last_saved", None) is not None:
            t.append(f"  saved {self.last_saved.version}", "green")
        if extra:
            t.append(f"  {extra}", "dim")
        self._title(t)

    def _banner(self, msg: str, severity: str = "error") -> None:
        b = self.query_one("#dwb-banner", Static)
        b.update(Text(msg, style="bold red" if severity == "error" else "yellow"))
        b.set_class(bool(msg), "-shown")
        if msg:
            self.notify(msg.splitlines()[0][:300], severity=severity, timeout=8)

    # ------------------------------------------------------------ opening
    @work(thread=True, exclusive=True, group="data-open", exit_on_error=False)
    def _open(self, path: str) -> None:
        if getattr(self, "_checks_stop", None) is not None:
            self._checks_stop.set()  # a scan of the file shown before stops
        self._stop_stats()
        try:
            source, notes = open_source(path)
        except BadSource as e:
            self.app.call_from_thread(self._open_failed, str(e))
            return
        wb = Workbench(source)
        if isinstance(source, LineSource):
            first = [True]

            def progress(done: int, total: int, rows: int) -> None:
                now = time.monotonic()
                if first[0] and rows:
                    first[0] = False
                    wb.fmt, wb.reason = detect(source)
                    self.app.call_from_thread(self._show_source, wb, notes)
                elif now - self._last_progress >= PROGRESS_EVERY_S:
                    self._last_progress = now
                    self.app.call_from_thread(self._grown)
            source.index.build(progress)
            if first[0]:  # no line at all
                self.app.call_from_thread(self._open_failed, f"{source.path}: file has no rows; "
                                                             "point the Data screen at a file with rows")
                return
            wb.fmt, wb.reason = detect(source)
            source.invalidate()
            self.app.call_from_thread(self._grown, True)
            if source.index.size <= SCAN_ERRORS_UNDER:
                bad = wb.unreadable()
                if bad:
                    first_bad = "; ".join(f"line {r.line}: {r.error}" for r in bad[:2])
                    self.app.call_from_thread(
                        self._banner, f"{len(bad)} line(s) could not be read and are marked ✗ "
                                      f"(filter 'error' lists them): {first_bad}", "warning")
        else:
            wb.fmt, wb.reason = detect(source) if len(source) else ("unknown", "no rows")
            self.app.call_from_thread(self._show_source, wb, notes)
            self.app.call_from_thread(self._grown, True)

    def _open_failed(self, msg: str) -> None:
        self.loaded = True
        self._title(Text.assemble(("Data ", "bold"), (str(self.path), ""), ("  cannot be shown", "bold red")))
        self._banner(msg)

    def _show_source(self, wb: Workbench, notes: list[str]) -> None:
        self.wb = wb
        table = self.query_one(RowsTable)
        table.set_workbench(wb)
        table.move_to_source(0)
        if notes:
            self._banner(f"{len(notes)} note(s): " + "; ".join(notes[:3]), "warning")
        self._status()

    def _grown(self, done: bool = False) -> None:
        self.query_one(RowsTable).refresh_rows()
        if done:
            self.loaded = True
            self.query_one(RowsTable)._announce()
        self._status()

    # ------------------------------------------------------------ row view and tokens
    def on_rows_table_cursor_moved(self, event: RowsTable.CursorMoved) -> None:
        if self.wb is None or event.index < 0:
            return
        row = self.wb.row(event.index)
        if row.preview is not None:  # a huge line: parse it off the event loop
            self._load_big_row(event.index)
            return
        self.query_one(RowView).show_row(row, self.wb.fmt, self.wb.label(event.index))
        if self.query_one(RowView).active == "tab-tokens":
            self.action_tokens()

    @work(thread=True, exclusive=True, group="data-row", exit_on_error=False)
    def _load_big_row(self, index: int) -> None:
        row = self.wb.row(index, full=True)
        self.app.call_from_thread(self.query_one(RowView).show_row, row, self.wb.fmt, self.wb.label(index))

    def action_row_view(self) -> None:
        self.query_one("#dwb-side", TabbedContent).active = "side-row"

    def action_tokens(self) -> None:
        if self.wb is None:
            return
        i = self.query_one(RowsTable).source_index()
        if i < 0:
            return
        self.query_one("#dwb-side", TabbedContent).active = "side-row"
        rv = self.query_one(RowView)
        rv.active = "tab-tokens"
        if self.tokenizer is None:
            rv.show_tokens(Text(f"loading the tokenizer of {self.model_path} …", "dim"))
        self._tokens(i)

    @work(thread=True, exclusive=True, group="data-tokens", exit_on_error=False)
    def _tokens(self, index: int) -> None:
        try:
            tok = self._ensure_tokenizer()
            row = self.wb.row(index, full=True)
            if row.data is None:
                raise WorkbenchError(f"row {index} could not be read: {row.error}")
            cfg = getattr(self.app, "config", None)
            tv = token_view(tok, row.data, self.wb.fmt, self.max_seq_len,
                            train_on=cfg.data.train_on if cfg is not None else "assistant",
                            turn_policy=getattr(cfg.data, "turn_policy", "auto") if cfg is not None else "auto")
            content = Text(f"{self.wb.label(index)}  ", "dim") + tokens_text(tv)
        except WorkbenchError as e:
            content = Text(str(e), "bold red")
        self.app.call_from_thread(self.query_one(RowView).show_tokens, content)

    def _ensure_tokenizer(self):
        """Load the model's tokenizer once (called from workers)."""
        if self.tokenizer is None:
            if not self.model_path:
                raise WorkbenchError("no model chosen: set model.name_or_path (a local directory or 'demo')")
            self.tokenizer = load_tokenizer(self.model_path)
        return self.tokenizer

    # ------------------------------------------------------------ stats and checks
    def action_stats(self, sample: int | None = None) -> None:
        if self.wb is None:
            return
        self.query_one("#dwb-side", TabbedContent).active = "side-stats"
        self.query_one(StatsPanel).show_message(Text("computing statistics …", "dim"))
        self._stop_stats()
        self._stats(sample)

    def action_stats_sample(self) -> None:
        self.action_stats(STATS_SAMPLE)

    @work(thread=True, exclusive=True, group="data-stats", exit_on_error=False)
    def _stats(self, sample: int | None = None) -> None:
        import threading

        from textual.worker import get_current_worker

        from engine.data.token_stats import StatsCancelled

        worker = get_current_worker()
        stop = self._stats_stop = threading.Event()
        wb = self.wb
        panel = self.query_one(StatsPanel)
        tok, note = None, ""
        try:
            tok = self._ensure_tokenizer()
        except WorkbenchError as e:
            note = str(e)

        def cancelled() -> bool:
            return stop.is_set() or worker.is_cancelled or wb is not self.wb

        def partial(st) -> None:  # the figures so far, about once a second (compute_stats paces it)
            if not cancelled():
                self.app.call_from_thread(panel.show, st)
        cfg = getattr(self.app, "config", None)
        policy = dict(train_on=cfg.data.train_on, turn_policy=cfg.data.turn_policy) if cfg is not None else {}
        try:
            label = _label_field(wb)
            st = compute_stats(wb, tok, self.max_seq_len, label, sample=sample, cancelled=cancelled,
                               partial=partial, progress=lambda s: self.app.call_from_thread(
                                   panel.show_message, Text(s, "dim")), **policy)
        except StatsCancelled:
            if not worker.is_cancelled and wb is self.wb:
                self.app.call_from_thread(panel.show_message, Text("statistics stopped; press s to compute them "
                                                                   "again", "dim"))
            return
        except Exception as e:  # a tokenizer or template failure: say it, keep the screen
            self.app.call_from_thread(panel.show_message, Text(f"statistics failed: {e}", "bold red"))
            return
        if cancelled():
            return
        self.app.call_from_thread(panel.show, st)
        if note:
            self.app.call_from_thread(self.notify, note, severity="warning")

    def _stop_stats(self) -> bool:
        """Stop a running tokenisation (it returns within a batch). True if one ran."""
        stop = getattr(self, "_stats_stop", None)
        running = stop is not None and not stop.is_set() and any(
            w.group == "data-stats" and w.is_running for w in self.workers)
        if stop is not None:
            stop.set()
        return running

    def action_checks(self) -> None:
        if self.wb is None:
            return
        self.query_one("#dwb-side", TabbedContent).active = "side-checks"
        self._status("running checks …")
        self._checks()

    @work(thread=True, exclusive=True, group="data-checks", exit_on_error=False)
    def _checks(self) -> None:
        import threading

        from textual.worker import get_current_worker

        worker = get_current_worker()
        stop = self._checks_stop = threading.Event()
        wb = self.wb
        so_far: list = []
        line = ["checking …"]
        shown = [0.0]

        def cancelled() -> bool:
            return stop.is_set() or worker.is_cancelled

        def update(force: bool = False) -> None:
            # at most twice a second: the event loop redraws, this thread keeps checking
            now = time.monotonic()
            if (force or now - shown[0] >= CHECKS_REDRAW_S) and not cancelled():
                shown[0] = now
                self.app.call_from_thread(self._show_findings, list(so_far), line[0], True)

        def progress(text: str) -> None:
            line[0] = text
            update()

        def found(batch: list) -> None:
            so_far.extend(batch)
            update()
        findings, note = run_all_checks(wb, self.tokenizer, self.max_seq_len if self.tokenizer else None,
                                        progress=progress, cancelled=cancelled, on_findings=found)
        if worker.is_cancelled or wb is not self.wb:
            return  # the screen went away or shows another file
        wb.findings = findings
        self.app.call_from_thread(self._show_findings, findings, note)

    def _show_findings(self, findings: list, note: str, running: bool = False) -> None:
        self.query_one(FindingsList).show(findings, note, running=running)
        self._status(f"{len(findings)} findings" + (" so far (escape stops)" if running else ""))

    def _stop_checks(self) -> bool:
        """Stop a running scan (it returns within a batch with what it found). True if one ran."""
        stop = getattr(self, "_checks_stop", None)
        running = stop is not None and not stop.is_set() and any(
            w.group == "data-checks" and w.is_running for w in self.workers)
        if stop is not None:
            stop.set()
        return running

    def on_screen_suspend(self) -> None:
        from textual.screen import ModalScreen

        if not isinstance(self.app.screen, ModalScreen):  # a dialog over this screen lets checks go on
            self._stop_checks()
        self._stop_stats()

    def on_unmount(self) -> None:
        self._stop_checks()
        self._stop_stats()

    def on_findings_list_jump(self, event: FindingsList.Jump) -> None:
        if event.row < 0:  # a check heading: filter the table by it
            self._set_filter(f"check:{event.check}")
            return
        table = self.query_one(RowsTable)
        if not table.move_to_source(event.row):
            self._set_filter("")
            table.move_to_source(event.row)
        table.focus()

    # ------------------------------------------------------------ filter
    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.add_class("-open")
        bar.focus()

    def action_clear_filter(self) -> None:
        if self._stop_checks():
            self.notify("checks stopped; the list shows what was found so far", timeout=4)
            return
        if self._stop_stats():
            self.notify("statistics stopped", timeout=4)
            return
        bar = self.query_one(FilterBar)
        if bar.has_class("-open") and bar.value:
            bar.value = ""
        bar.remove_class("-open")
        if self.filter_spec:
            self._set_filter("")
        self.query_one(RowsTable).focus()

    def on_input_submitted(self, event) -> None:
        if isinstance(event.input, FilterBar):
            self._set_filter(event.value.strip())
            self.query_one(RowsTable).focus()

    def _set_filter(self, spec: str) -> None:
        if self.wb is None:
            return
        self.filter_spec = spec
        bar = self.query_one(FilterBar)
        bar.value = spec
        bar.set_class(bool(spec), "-open")
        if not spec:
            self.query_one(RowsTable).set_order(None)
            self._status()
            return
        self._status("filtering …")
        self._filter(spec)

    @work(thread=True, exclusive=True, group="data-filter", exit_on_error=False)
    def _filter(self, spec: str) -> None:
        try:
            order = apply_filter(self.wb, spec)
        except WorkbenchError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error")
            return
        self.app.call_from_thread(self._filtered, spec, order)

    def _filtered(self, spec: str, order) -> None:
        if spec != self.filter_spec:
            return
        self.query_one(RowsTable).set_order(order)
        self._status()

    # ------------------------------------------------------------ cleaning
    def _clean(self, what: str, fn) -> None:
        """Run a cleaning op in a worker (the first one loads every row into the Session)."""
        if self.wb is None:
            return
        if self.wb.session is None:
            self._status("loading every row for cleaning …")
        self._clean_worker(what, fn)

    @work(thread=True, exclusive=False, group="data-clean", exit_on_error=False)
    def _clean_worker(self, what: str, fn) -> None:
        try:
            from engine.data.errors import DataError

            self.wb.start_session()
            msg = fn(self.wb)
        except (WorkbenchError, DataError) as e:
            self.app.call_from_thread(self.notify, str(e), severity="error")
            return
        self.app.call_from_thread(self._cleaned, msg or what)

    def _cleaned(self, msg: str) -> None:
        table = self.query_one(RowsTable)
        table.refresh_rows()
        table._announce()
        self._status()
        self.notify(msg)

    def _current(self) -> int:
        return self.query_one(RowsTable).source_index()

    def _filtered_rows(self):
        table = self.query_one(RowsTable)
        return None if table.order is None else [int(i) for i in table.order]

    def action_toggle_delete(self) -> None:
        i = self._current()
        if i < 0:
            return

        def op(wb: Workbench) -> str:
            name = wb.label(i)
            if wb.deleted(i):
                return f"restored {name}" if wb.restore([i]) else f"{name} was not deleted"
            return f"deleted {name} (x restores it)" if wb.delete([i]) else f"{name} cannot be deleted"
        self._clean("delete", op)
        self.query_one(RowsTable).action_move(1)

    def action_edit(self) -> None:
        i = self._current()
        if i < 0 or self.wb is None:
            return
        row = self.wb.row(i, full=True)
        if row.data is None:
            self.notify(f"{self.wb.label(i)} could not be read ({row.error}); fix the line in the file, "
                        "or delete it (x)", severity="error")
            return

        def done(changes) -> None:
            if changes:
                def op(wb: Workbench) -> str:
                    for path, value in changes:
                        wb.edit(i, path, value)
                    return f"edited {', '.join(p for p, _ in changes)} of {wb.label(i)} (ctrl+z undoes)"
                self._clean("edit", op)
        self.app.push_screen(EditDialog(i, row.data, _first_assistant_path(row.data)), done)

    def action_undo(self) -> None:
        if self.wb is None or self.wb.session is None or not self.wb.session.ops:
            self.notify("nothing to undo")
            return
        self._clean("undo", lambda wb: f"undid {(wb.undo() or {}).get('op', 'nothing')}")

    def action_redo(self) -> None:
        if self.wb is None or self.wb.session is None:
            self.notify("nothing to redo")
            return
        self._clean("redo", lambda wb: (f"redid {op['op']}" if (op := wb.redo()) else "nothing to redo"))

    def action_drop_duplicates(self) -> None:
        self._clean("drop duplicates", lambda wb: f"dropped {wb.drop_duplicates()} exact duplicate rows (first kept)")

    def action_redact(self) -> None:
        rows = self._filtered_rows()
        self._clean("redact", lambda wb: f"redacted PII in {wb.redact(rows)} rows"
                    + (" (the filtered rows)" if rows is not None else ""))

    def action_drop_failing(self) -> None:
        spec = self.filter_spec
        if not spec.startswith("check:") or " & " in spec:
            self.notify("filter by one check first (/ check:ID, or pick a check in the Checks tab), then F",
                        severity="warning")
            return
        cid, rows = spec[6:].strip(), self._filtered_rows()
        self._clean("drop failing", lambda wb: f"dropped {wb.drop_failing(cid, rows)} rows failing {cid}")

    def action_save(self) -> None:
        if self.wb is None or not self.wb.unsaved():
            self.notify("no changes to save: delete, edit or clean rows first", severity="warning")
            return
        self._save(True)

    def save_and(self, then, offer: bool = False) -> None:
        """Save a version, then call `then()` (from the quit / leave prompts)."""
        self._save(offer, then)

    def discard_unsaved(self) -> None:
        """Drop the operations since the last save (the prompt's discard)."""
        sess = self.wb.session if self.wb is not None else None
        if sess is not None:
            sess.ops = list(self.wb.saved_ops)
            sess._redo.clear()
            sess._replay()
            self.wb._refresh_edited()
            self._cleaned("discarded the unsaved operations")

    @work(thread=True, exclusive=True, group="data-save", exit_on_error=False)
    def _save(self, offer: bool, then=None) -> None:
        try:
            info = self.wb.save()
        except OSError as e:
            self.app.call_from_thread(self.notify, f"cannot save: {e.strerror}; check the folder's permissions",
                                      severity="error")
            return
        self.last_saved = info
        self.app.call_from_thread(self._saved, info, offer, then)

    def _saved(self, info, offer: bool, then) -> None:
        left = info.left_out or []
        gone = [x for x in left if not x.get("deleted")]
        note = ""
        if left:
            first = "; ".join(str(x["reason"]) for x in gone[:2])  # each reason names its line
            note = (f"; {len(left)} unreadable line(s) left out"
                    + (f" ({len(left) - len(gone)} deleted by you)" if len(gone) < len(left) else "")
                    + (f": {first}" if first else ""))
        self.notify(f"saved {info.version}: {info.rows_out} rows -> {info.path}{note}", timeout=12,
                    severity="warning" if gone else "information")
        self._status()
        if offer:
            self.offer_training(info, then)
        elif then is not None:
            then()

    def offer_training(self, info, then=None) -> None:
        """Point the config's data.path at the saved version (the default answer is yes)."""
        cfg = getattr(self.app, "config", None)
        if cfg is None:
            return

        def chosen(yes: bool | None) -> None:
            if yes:
                self.app.use_dataset(str(info.path))
            if then is not None:
                then()
        from tui.widgets.config.confirm_dialog import ConfirmDialog

        self.app.push_screen(ConfirmDialog(f"Train on {info.version}? The config's data.path is now "
                                           f"{cfg.data.path}; point it at the saved version.",
                                           yes="Use it for training", no="Keep the config as it is"), chosen)

    def action_versions(self) -> None:
        if self.wb is not None:
            self.app.push_screen(VersionsDialog(str(self.wb.path), self.wb.versions()))

    def action_split(self) -> None:
        if self.wb is None:
            return

        def done(opts) -> None:
            if opts:
                self._split(opts)
        self.app.push_screen(SplitDialog(str(self.wb.path.parent / f"{self.wb.path.stem}-split")), done)

    @work(thread=True, exclusive=True, group="data-split", exit_on_error=False)
    def _split(self, opts: dict) -> None:
        try:
            res = write_split(self.wb, opts["val"], opts["test"], opts["seed"], opts["stratify"], Path(opts["out"]))
        except (WorkbenchError, OSError) as e:
            self.app.call_from_thread(self.notify, f"split: {e}", severity="error")
            return
        sizes = ", ".join(f"{k} {v}" for k, v in res.rows.items())
        leaks = "; ".join(f"{n} {k} rows repeat a train row" if n else f"no leakage into {k}"
                          for k, n in res.leaks.items())
        self.app.call_from_thread(self.notify, f"split written to {res.out}: {sizes}. {leaks}", timeout=12,
                                  severity="warning" if any(res.leaks.values()) else "information")
        self.last_split = res


def _first_assistant_path(row: dict) -> str | None:
    for key in ("messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list):
            for n, t in enumerate(turns):
                if isinstance(t, dict) and (t.get("role") or t.get("from")) in ("assistant", "gpt"):
                    return f"{key}[{n}].{'content' if 'content' in t else 'value'}"
    return None


def _label_field(wb: Workbench) -> str | None:
    """A field worth a balance count: a short string field shared by most rows (label, category ...)."""
    for name in ("label", "category", "class", "intent", "task", "source"):
        r = wb.rows(0, 1)
        if r and r[0].data is not None and isinstance(r[0].data.get(name), (str, int, bool)):
            return name
    return None
