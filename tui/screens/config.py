"""The Config screen: every run-config field as a form row validated as you type by
engine.config, a live memory estimate beside it (debounced, in a worker), the effective
batch and step count, presets, Axolotl / LLaMA-Factory import, a diff against the last
run, a measured pre-flight (in a subprocess: torch never loads here) and auto-fit.

While the form holds an invalid value, `valid` is False and app.config_problem says why:
the app refuses to start a run from it.
"""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Label, Select, Static, Switch

from engine import config as C
from engine import rundir
from tui.services import config_estimate as E
from tui.services import config_form as F
from tui.services import presets as P
from tui.widgets.config.batch_summary import BatchSummary
from tui.widgets.config.confirm_dialog import ConfirmDialog
from tui.widgets.config.diff_view import DiffView
from tui.widgets.config.field_row import FieldRow, field_error
from tui.widgets.config.import_dialog import ImportDialog
from tui.widgets.config.memory_bar import MemoryBar
from tui.widgets.config.preset_picker import PresetPicker

DEBOUNCE_S = 0.2


class ConfigScreen(Screen):
    # The form container, not a field: digits and letters still switch screens until tab.
    AUTO_FOCUS = "#config-form"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Save the config to the file named at the top (atomic; "
                                                  "asks before overwriting another file)"),
        Binding("ctrl+o", "load", "Load", show=False, tooltip="Load the config file named at the top"),
        Binding("f2", "preset", "Preset", tooltip="LoRA, QLoRA, full or smoke test; keeps model and data paths"),
        Binding("f3", "import_config", "Import", tooltip="Import an Axolotl or LLaMA-Factory YAML"),
        Binding("f4", "diff_last", "Diff last", tooltip="What changed since the last run's config"),
        Binding("f5", "measure", "Measure", tooltip="Measure peak memory with a few real steps (CUDA)"),
        Binding("f6", "auto_fit", "Auto-fit", tooltip="Largest micro-batch that fits; grad accum rebalanced"),
        Binding("f7", "next_gpu", "GPU size", show=False, tooltip="Cycle the target GPU size (no GPU here)"),
        Binding("f8", "baseline", "Baseline", id="config.baseline",
                tooltip="Score the base model on every eval set before training (`ftwb eval --base`); "
                        "stored, so runs of this config show baseline -> tuned"),
        Binding("ctrl+r", "app.start_run", "Start", tooltip="Start a run from this config (refused while invalid)"),
        Binding("ctrl+e", "toggle_estimate", "Estimate", tooltip="Show or fold the memory estimate and "
                                                                  "batch panel (folded to one line at 80x24)"),
        Binding("escape", "leave_field", "Leave field", show=False, tooltip="Leave the field"),
    ]

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.errors: dict[str, str] = {}          # field -> its own inline error
        self.problem: str | None = None           # why the whole form is invalid
        self.models = E.ModelConfigs()
        self.gpu_detected: int | None = None
        self.gpu_count: int | None = None  # what `train.devices: all` means here
        self.gpu_target = E.DEFAULT_GPU_GB * E.GB
        self.rows_cache: dict[str, E.DataSize] = {}
        self._timer: Timer | None = None
        self._synced: dict | None = None  # app.config as this form last set or showed it

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def gpu_total(self) -> int:
        return self.gpu_detected or self.gpu_target

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(self._title_text(), id="config-title", classes="title-bar")
        with Horizontal(id="config-file-row"):
            yield Label("save to ")
            yield Input(value=str(self.app.config_path or ""), id="config-file", compact=True,
                        placeholder="a .yaml file to save this config to (ctrl+s), e.g. ftwb.yaml")
        yield Static(id="config-status")
        values = self.app.config.to_dict()
        with Horizontal(id="config-body"):
            with VerticalScroll(id="config-form"):
                group = None
                for g, path, meta in F.fields():
                    if g != group:
                        group = g
                        yield Label(Text(g, style="bold underline"), classes="config-group")
                    yield FieldRow(path, meta, F.get(values, path))
            with Vertical(id="config-side"):
                yield MemoryBar(id="memory-bar")
                with Horizontal(id="gpu-row"):
                    yield Label("target GPU ")
                    yield Select([(f"{g} GB", g) for g in E.GPU_CHOICES_GB], value=E.DEFAULT_GPU_GB,
                                 allow_blank=False, id="gpu-target", compact=True)
                yield BatchSummary(id="batch-summary")
        yield Footer()

    def _title_text(self) -> Text:
        """The header always names where the form's values came from."""
        src = self.app.config_path
        t = Text.assemble(("Config", "bold"), "  from ")
        t.append(str(src) if src else "the bundled demo config (not saved to a file yet)", "bold" if src else "italic")
        return t

    def on_descendant_focus(self, event) -> None:
        # Keyboard focus moved to a field: bring its whole row into view.
        row = next((a for a in event.widget.ancestors_with_self if isinstance(a, FieldRow)), None)
        if row is not None:
            self.query_one("#config-form").scroll_to_widget(row, animate=False)

    def action_toggle_estimate(self) -> None:
        side = self.query_one("#config-side")
        side.toggle_class("-open")
        self.query_one(MemoryBar).refresh(layout=True)

    def on_mount(self) -> None:
        self._synced = self.app.config.to_dict()
        self.validate_form()  # once, as the form opens (its editors' own Changed are no-ops)
        self._detect_gpu()
        self._recompute()

    def on_screen_resume(self) -> None:
        # Other screens may have changed app.config (e.g. the dataset path on Data).
        if self._synced is not None and self.app.config.to_dict() != self._synced:
            self.fill(self.app.config)

    # ------------------------------------------------------------ form <-> config
    def row(self, path: str) -> FieldRow:
        return self.query_one("#row-" + path.replace(".", "--"), FieldRow)

    def form_dict(self) -> dict:
        d = self.app.config.to_dict()
        for row in self.query(FieldRow):
            F.put(d, row.path, row.value())
        return d

    def validate_form(self, changed: str | None = None) -> C.RunConfig | None:
        """Each changed (or still-wrong) field alone, then the whole form; updates the
        inline errors, the status line, app.config and app.config_problem."""
        rows = {r.path: r for r in self.query(FieldRow)}
        for path in {changed, *self.errors} - {None}:
            msg = field_error(path, rows[path].value())
            if msg:
                self.errors[path] = msg
            else:
                self.errors.pop(path, None)
            rows[path].show_error(msg)
        cfg = None
        try:
            cfg = C.from_dict(self.form_dict())
        except C.ConfigError as e:
            whole = str(e)
        else:
            whole = None
        if whole and not self.errors:
            # A cross-field problem (e.g. val + test split): show it under the field just edited.
            target = changed or whole.split(":", 1)[0].split(" ")[0]
            if target in rows:
                rows[target].show_error(whole)
                self.errors[target] = whole
        self.problem = next(iter(self.errors.values()), None) or whole
        self.app.config_problem = self.problem
        if self.problem is None and cfg is not None:
            self.app.config = cfg
        self._synced = self.app.config.to_dict()
        self._status()
        return cfg if self.problem is None else None

    def fill(self, cfg: C.RunConfig) -> None:
        values = cfg.to_dict()
        for row in self.query(FieldRow):
            row.set_value(F.get(values, row.path))
            row.show_error(None)
        self.errors.clear()
        self.validate_form()
        self._recompute()

    def _status(self) -> None:
        st = self.query_one("#config-status", Static)
        if self.problem:
            n = len(self.errors) or 1
            st.update(Text(f"✖ {self.problem}" + (f"  (+{n - 1} more)" if n > 1 else "")
                           + "  · a run cannot start until this is fixed", style="bold red"))
            return
        c = self.app.config
        from tui.services.dataset_label import dataset_label

        st.update(Text(f"✔ valid · {c.method} · model {c.model.name_or_path} · trains on {dataset_label(c.data.path)}",
                       style="green"))
        self._preflight(c.copy())

    @work(thread=True, exclusive=True, group="cfg-preflight", exit_on_error=False)
    def _preflight(self, cfg: C.RunConfig) -> None:
        """The cheap pre-flight (no tokenizer): the badge never says valid for a config a Start would refuse."""
        from engine import preflight

        problems = preflight.check(cfg, runs_dir=str(self.app.runs_dir), deep=False)
        if problems:
            self.app.call_from_thread(self._preflight_failed, cfg, problems)

    def _preflight_failed(self, cfg: C.RunConfig, problems: list) -> None:
        if self.problem or self.app.config.to_dict() != cfg.to_dict():
            return  # the form changed meanwhile: its own check is newer
        more = f"  (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        self.query_one("#config-status", Static).update(
            Text(f"✖ pre-flight: {problems[0]}{more}  · Start will refuse this run", style="bold red"))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("cfg-"):
            self._changed(event.input)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._changed(event.switch)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "gpu-target":
            self.gpu_target = int(event.value) * E.GB
            self._recompute()
        elif event.select.id and event.select.id.startswith("cfg-"):
            self._changed(event.select)

    def _changed(self, editor) -> None:
        row = next(a for a in editor.ancestors if isinstance(a, FieldRow))
        if row.path not in self.errors and self._synced is not None:
            try:
                same = row.value() == F.get(self._synced, row.path)
            except Exception:  # noqa: BLE001 - text that does not parse: validate it (and say why)
                same = False
            if same:
                # Nothing changed: each editor posts Changed as it mounts with its value (one
                # whole-form validation per field, seconds on the first visit) or on a no-op.
                return
        self.validate_form(row.path)
        self._recompute()

    # ------------------------------------------------------------ live estimate and steps
    def _recompute(self) -> None:
        """Debounced: a burst of keystrokes costs one estimate."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self._start_estimate)
        self._show_steps()

    def _start_estimate(self) -> None:
        self._timer = None
        if self.valid:
            self._estimate(self.app.config.copy(), self.gpu_total, self.gpu_detected is not None)

    @work(thread=True, exclusive=True, group="cfg-estimate", exit_on_error=False)
    def _estimate(self, cfg: C.RunConfig, gpu_total: int, detected: bool) -> None:
        view = E.memory_view(cfg, self.models, gpu_total, detected)
        self.app.call_from_thread(self.query_one(MemoryBar).show, view)

    def _show_steps(self) -> None:
        cfg = self.app.config
        path = cfg.data.path
        size = self.rows_cache.get(path)
        if size is None:
            self._count_rows(path)
        devices = C.device_count(cfg.train.devices) or self.gpu_count or 1
        self.query_one(BatchSummary).show(cfg.train.micro_batch_size, cfg.train.grad_accum,
                                          E.steps_info(cfg, size, devices), E.auto_fit_line(cfg, self.app.runs_dir),
                                          all_unknown=cfg.train.devices == "all" and self.gpu_count is None,
                                          strategy_note=E.strategy_note(cfg))

    @work(thread=True, exclusive=True, group="cfg-rows", exit_on_error=False)
    def _count_rows(self, path: str) -> None:
        size = E.count_rows(path)

        def done() -> None:
            self.rows_cache[path] = size
            self._show_steps()
        self.app.call_from_thread(done)

    @work(thread=True, group="cfg-gpu", exit_on_error=False)
    def _detect_gpu(self) -> None:
        total, count = E.detect_gpu(), E.detect_gpu_count()

        def done() -> None:
            self.gpu_detected, self.gpu_count = total, count
            self.query_one("#gpu-row").set_class(total is not None, "-detected")
            self._recompute()
        self.app.call_from_thread(done)

    def action_next_gpu(self) -> None:
        sel = self.query_one("#gpu-target", Select)
        i = E.GPU_CHOICES_GB.index(sel.value)
        sel.value = E.GPU_CHOICES_GB[(i + 1) % len(E.GPU_CHOICES_GB)]

    # ------------------------------------------------------------ measure, auto-fit
    def action_measure(self) -> None:
        if not self._require_valid("measure"):
            return
        bar = self.query_one(MemoryBar)
        bar.measuring = True
        bar.show(measured=None)
        self._measure(self.app.config.copy(), None if self.gpu_detected else self.gpu_target / E.GB)

    @work(thread=True, exclusive=True, group="cfg-measure", exit_on_error=False)
    def _measure(self, cfg: C.RunConfig, gpu_gb: float | None) -> None:
        result = E.measure(cfg, gpu_gb)

        def done() -> None:
            bar = self.query_one(MemoryBar)
            bar.measuring = False
            bar.show(measured=result)
        self.app.call_from_thread(done)

    def action_baseline(self) -> None:
        if not self._require_valid("baseline"):
            return
        self.notify("Scoring the base model on every eval set (`ftwb eval --base`)…", timeout=5)
        self._baseline(self.app.config.copy())

    @work(exclusive=True, group="cfg-baseline", exit_on_error=False)
    async def _baseline(self, cfg: C.RunConfig) -> None:
        from tui.services.baseline import run_baseline

        ok, message, _ = await run_baseline(cfg)
        self.notify(message, severity="information" if ok else "error", timeout=20)

    def action_auto_fit(self) -> None:
        if self._require_valid("auto-fit"):
            self._auto_fit(self.app.config.copy(), self.gpu_total)

    @work(thread=True, exclusive=True, group="cfg-autofit", exit_on_error=False)
    def _auto_fit(self, cfg: C.RunConfig, gpu_total: int) -> None:
        try:
            fit = E.auto_fit(cfg, self.models, gpu_total)
        except C.ConfigError as e:
            self.app.call_from_thread(self.notify, f"auto-fit: {e}", severity="error", timeout=8)
            return
        self.app.call_from_thread(self._offer_fit, fit)

    def _offer_fit(self, fit: E.AutoFit) -> None:
        if fit.micro_batch_size is None:
            self.notify(fit.message, severity="error", timeout=8)
            return
        if not fit.changes:
            self.notify(fit.message + ": nothing to change")
            return

        def accepted(ok: bool | None) -> None:
            if ok:
                d = self.app.config.to_dict()
                for path, _, new in fit.changes:
                    F.put(d, path, new)
                self.fill(C.from_dict(d))
                self.notify("Auto-fit applied")
        self.app.push_screen(DiffView("Auto-fit", "now", "proposed", fit.changes, accept=True,
                                      note=fit.message), accepted)

    # ------------------------------------------------------------ presets, import, diff
    def action_preset(self) -> None:
        self.app.push_screen(PresetPicker(), self.apply_preset)

    def apply_preset(self, key: str | None) -> None:
        if not key:
            return
        if not self._require_valid("apply a preset"):
            return
        before = self.app.config
        try:
            after = P.apply(before, key)
        except C.ConfigError as e:
            self.notify(str(e), severity="error")
            return
        self.fill(after)
        changed = [p for p, _, _ in C.diff(before, after)]
        self.notify(f"Preset {P.BY_KEY[key].title}: " + (", ".join(changed) if changed else "no changes"))

    def action_import_config(self) -> None:
        def loaded(cfg: C.RunConfig | None) -> None:
            if cfg is not None:
                self.fill(cfg)
                self.notify(f"Imported: {cfg.method} on {cfg.model.name_or_path}; save it with ctrl+s")
        self.app.push_screen(ImportDialog(), loaded)

    def action_diff_last(self) -> None:
        last = rundir.latest_run(self.app.runs_dir)
        if last is None:
            self.notify(f"No runs in {self.app.runs_dir} to compare with.", severity="warning")
            return
        try:
            prev = C.load(last / rundir.CONFIG)
        except C.ConfigError as e:
            self.notify(str(e), severity="error", timeout=8)
            return
        now = C.from_dict(self.form_dict()) if self.valid else self.app.config
        self.app.push_screen(DiffView(f"Config vs the last run ({last.name})", last.name, "this form",
                                      C.diff(prev, now)))

    # ------------------------------------------------------------ files
    def _require_valid(self, what: str) -> bool:
        if self.valid:
            return True
        self.notify(f"Cannot {what}: {self.problem}", severity="error", timeout=8)
        return False

    def _file(self) -> Path:
        return Path(self.query_one("#config-file", Input).value.strip() or "ftwb.yaml").expanduser()

    def action_save(self) -> None:
        if not self._require_valid("save"):
            return
        path = self._file()
        cfg = self.app.config
        loaded = self.app.config_path
        same = loaded is not None and Path(loaded).resolve() == path.resolve()
        if not same:
            # Another file than the form came from: say both, and ask.
            came = f"The form came from {loaded}." if loaded else "The form holds the bundled demo config."
            q = f"{came} Save it to {path}?" + (f" {path} exists and will be overwritten." if path.exists() else "")
            self.app.push_screen(ConfirmDialog(q, yes="Overwrite" if path.exists() else "Save"),
                                 lambda ok: ok and self._write(cfg, path))
            return
        self._write(cfg, path)

    def _write(self, cfg: C.RunConfig, path: Path) -> None:
        if path.is_dir():
            self.notify(f"{path} is a directory; name a .yaml file", severity="error")
            return
        try:
            C.save(cfg, path)
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}; pick another file", severity="error")
            return
        self.app.config_path = path
        self.query_one("#config-title", Static).update(self._title_text())
        self.notify(f"Saved {path}")

    def action_load(self) -> None:
        path = self._file()
        try:
            cfg = C.load(path)
        except C.ConfigError as e:
            self.notify(str(e), severity="error", timeout=10)
            return
        self.app.config_path = path
        self.query_one("#config-title", Static).update(self._title_text())
        self.fill(cfg)
        self.notify(f"Loaded {path}")

    def action_leave_field(self) -> None:
        self.query_one("#config-form").focus()
