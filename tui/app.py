"""FtwbApp: the declarative head of the TUI. Screens, keys, themes and run control
entry points; the work is in tui/screens, tui/widgets and tui/services."""
from __future__ import annotations

import gc
import os
import weakref
from typing import TYPE_CHECKING
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.widgets import Input

from tui.services.open_target import OpenError, Target, resolve
from tui.stylesheet import CachedStylesheet, store_dir

if TYPE_CHECKING:
    from tui.services.engine_client import RunSession

SCREENS = (("data", "Data", "1", "d"), ("config", "Config", "2", "c"),
           ("train", "Train", "3", "t"), ("runs", "Runs", "4", "r"))
COMPACT_BELOW = (120, 36)   # width, height: under either, the compact layout
ROOMY_FROM = (160, 45)


SCREEN_MODULES = ("tui.screens.data_workbench", "tui.screens.config", "tui.screens.train", "tui.screens.runs",
                  "tui.screens.dialogs")


def _preload_screens() -> None:
    from importlib import import_module

    for module in SCREEN_MODULES:
        import_module(module)


def _lazy_screen(module: str, name: str):
    """A MODES entry that imports its screen on first use, so start-up loads only the first one."""
    def make():
        from importlib import import_module

        return getattr(import_module(module), name)()
    return make


START_GC_THRESHOLD = 50_000  # allocations between young collections until the first frame (Python: 700)


def _start_up_gc() -> tuple[int, ...]:
    """Collect less while the first screen is built; returns the thresholds to restore.

    What the imports made (modules, classes, Textual's tables) lives as long as the process:
    once per process it is frozen out of the collector's reach, as Python otherwise runs
    full collections over all of it (one of them ~50 ms on 2 cores during the first paint).
    The first screen's widgets and styles live on too, so until its first frame the young
    collections, which would find almost nothing, run rarely."""
    global _FROZEN
    if not _FROZEN:
        _FROZEN = True
        gc.freeze()
    was = gc.get_threshold()
    gc.set_threshold(max(was[0], START_GC_THRESHOLD), *was[1:])
    return was


_FROZEN = False


def default_theme() -> str:
    """Truecolor terminals get ftwb-dark; anything else (COLORTERM lost over SSH) ftwb-256."""
    return "ftwb-dark" if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit") else "ftwb-256"


class FtwbApp(App[int]):
    TITLE = "ftwb"
    CSS_PATH = "app.tcss"
    MODES = {"data": _lazy_screen("tui.screens.data_workbench", "DataWorkbenchScreen"),
             "config": _lazy_screen("tui.screens.config", "ConfigScreen"),
             "train": _lazy_screen("tui.screens.train", "TrainScreen"),
             "runs": _lazy_screen("tui.screens.runs", "RunsScreen")}
    BINDINGS = [
        *(Binding(f"{num},{key}", f"switch_mode('{mode}')", label, show=False, tooltip=f"{label} screen")
          for mode, label, num, key in SCREENS),
        Binding("f1", "help", "Help", tooltip="Keys of this screen"),
        Binding("q", "quit", "Quit", tooltip="Quit (asks about a live run)"),
        Binding("ctrl+c", "quit_any", "Quit", show=False, priority=True),
    ]

    def __init__(self, target: Target, theme: str | None = None, ascii_charts: bool = False,
                 runs_dir: str | None = None, sample_devices: bool = True):
        self._gc_threshold: tuple[int, ...] | None = _start_up_gc()
        super().__init__()
        # One parse per theme, and none at all where a previous start stored the parsed rules.
        self.stylesheet = CachedStylesheet(variables=self.get_css_variables(), store=store_dir())
        from themes import THEMES

        for t in THEMES:
            self.register_theme(t)
        self.theme = theme or default_theme()
        self.target = target
        self.config = target.config
        self.config_path = target.config_path
        self.config_problem: str | None = None  # set by the Config screen while its form is invalid
        self.ascii_charts = ascii_charts
        self._runs_dir_flag = runs_dir
        self._runs_dir: Path | None = None
        self.sample_devices = sample_devices
        self.session: RunSession | None = None
        self.workbenches: weakref.WeakSet = weakref.WeakSet()  # Data screens (unsaved cleaning)
        self.findings_answers: dict[tuple, bool] = {}  # dataset version -> "train anyway" given

    @property
    def runs_dir(self) -> Path:
        """The runs root: --runs-dir, $FTWB_RUNS_DIR, the config's output.runs_dir, ./runs (engine.rundir),
        settled on first use (the first frame of the Train screen has none)."""
        if self._runs_dir is None:
            from engine import rundir

            cfg_value = self.target.config.output.runs_dir
            self._runs_dir = rundir.default_runs_dir(self._runs_dir_flag, cfg_value if cfg_value != "runs" else None)
        return self._runs_dir

    def on_mount(self) -> None:
        # Layout class first, so the first screen lays out (and wraps its log) at its final size.
        self._apply_size_classes(self.size.width, self.size.height)
        if self.target.run_dir is not None:
            self.open_run(self.target.run_dir)
        self.switch_mode(self.target.mode)
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        # The other screens' modules import in a thread once the first frame is up, so the
        # first switch to each is quick and start-up pays for none of them; the collector
        # goes back to its usual pace when they are in.
        stylesheet = self.stylesheet

        def preload() -> None:
            try:
                stylesheet.save()  # what the first frame parsed, for the next start
                self._check_target_config()
                _preload_screens()
            finally:
                self._restore_gc()
        self.run_worker(preload, thread=True, exit_on_error=False, group="preload")

    def _check_target_config(self) -> None:
        """The checks across fields of the bundled demo config, left out of the first frame
        (any run start checks its config again in full)."""
        if not self.target.checks_pending:
            return
        from engine import config as C

        self.target.checks_pending = False
        try:
            C.check(self.target.config)
        except C.ConfigError as e:
            self.call_from_thread(self.notify, f"The demo config has a problem: {e}", title="Config",
                                  severity="error", timeout=20)

    def _restore_gc(self) -> None:
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    def on_unmount(self) -> None:
        self._restore_gc()  # an app that quits before its first frame
        if isinstance(self.stylesheet, CachedStylesheet):
            self.stylesheet.save()  # the other screens' CSS parsed since

    def on_resize(self, event) -> None:
        self._apply_size_classes(event.size.width, event.size.height)

    def _apply_size_classes(self, w: int, h: int) -> None:
        self.set_class(w < COMPACT_BELOW[0] or h < COMPACT_BELOW[1], "compact")
        self.set_class(w >= ROOMY_FROM[0] and h >= ROOMY_FROM[1], "roomy")

    # ------------------------------------------------------------ run control
    def open_run(self, run_dir: str | Path) -> None:
        """Attach to a run (replay, then follow) and show it on the Train screen."""
        if self.session is not None and self.session.run_dir == Path(run_dir):
            return
        from tui.services.engine_client import ControlError, RunSession
        try:
            new = RunSession.attach(run_dir)
        except ControlError as e:
            self.notify(str(e), severity="error")
            return
        self._replace_session(new)

    def _replace_session(self, new: RunSession) -> None:
        if self.session is not None:
            self.session.detach()  # the old run (if live) keeps training
        self.session = new

    def _control(self, fn, done: str) -> None:
        from tui.services.engine_client import ControlError, RunSession
        try:
            result = fn()
        except ControlError as e:
            self.notify(str(e), severity="error", timeout=8)
            return
        if done:
            self.notify(done.format(result=result))

    def use_dataset(self, path: str) -> None:
        """Point the config's data.path at `path` (a saved version): what the next run trains."""
        self.config = self.config.copy()
        self.config.data.path = path
        self.notify(f"data.path is now {path}: the next run trains on it (save the config with ctrl+s on Config)")

    def action_start_run(self) -> None:
        if self.config_problem:
            self.notify(f"Cannot start: the config is invalid. {self.config_problem}", severity="error", timeout=8)
            return
        if self.session is not None and self.session.is_live():
            self.notify("A run is already live here; stop it (x) or open another view first.", severity="warning")
            return
        cfg = self.config.copy()
        self.notify(f"pre-flight: model, data ({Path(str(cfg.data.path)).name}), template and runs directory"
                    + ("" if cfg.data.allow_findings else "; then secrets, PII and errors") + " …", timeout=3)
        self._gate(cfg)

    @work(thread=True, exclusive=True, group="start-gate", exit_on_error=False)
    def _gate(self, cfg) -> None:
        from engine import preflight
        from tui.services.dataset_label import gate_report, version_key

        problems = preflight.check(cfg, runs_dir=str(self.runs_dir))  # before any run directory or model
        if problems:
            self.call_from_thread(self.notify, "Cannot start: " + preflight.summary(problems), severity="error",
                                  timeout=12)
            return
        if cfg.data.allow_findings:
            self.call_from_thread(self._launch, cfg)
            return
        key = version_key(cfg)
        report = gate_report(cfg) if key not in self.findings_answers else None
        self.call_from_thread(self._gated, cfg, key, report)

    def _gated(self, cfg, key, report) -> None:
        if report is None or not report.blocking:
            if self.findings_answers.get(key):
                cfg.data.allow_findings = True  # asked before for this very version: the answer stands
            self._launch(cfg)
            return

        def chosen(what: str | None) -> None:
            if what == "train":
                self.findings_answers[key] = True
                cfg.data.allow_findings = True  # recorded in the run's config.yaml
                self._launch(cfg)
            elif what == "data":
                self.switch_mode("data")
        from tui.screens.dialogs import ChoiceDialog

        self.push_screen(ChoiceDialog(
            "The dataset has findings", report.summary() + ". Train on it anyway? The answer is recorded "
            "in the run's config (data.allow_findings: true).",
            [("cancel", "Cancel [esc]", "primary"), ("data", "Clean it on Data [d]", "default"),
             ("train", "Train anyway [t]", "warning")]), chosen)

    def _launch(self, cfg) -> None:
        def start():
            from tui.services.engine_client import RunSession
            s = RunSession.launch(cfg, str(self.runs_dir))
            self._replace_session(s)
            return s.run_dir.name
        self._control(start, "Started {result}")
        self.switch_mode("train")

    def action_stop_run(self) -> None:
        if self.session is None:
            self.notify("No run is open.", severity="warning")
            return
        self._control(self.session.stop, "Stopping (pid {result}): it finishes the step and saves a checkpoint")

    def action_save_now(self) -> None:
        if self.session is None:
            self.notify("No run is open.", severity="warning")
            return
        self._control(self.session.save_now, "Asked the engine (pid {result}) to save a checkpoint now")

    def action_resume_run(self, run_dir: str | None = None) -> None:
        target = Path(run_dir) if run_dir else (self.session.run_dir if self.session else None)
        if target is None:
            self.notify("No run to resume: open one on the Runs screen.", severity="warning")
            return

        def resume():
            from tui.services.engine_client import RunSession
            s = RunSession.resume(target)
            self._replace_session(s)
            return target.name
        # The engine takes a while to load the model again: say so at once.
        self._control(resume, "Resuming {result} from its last checkpoint: loading the model and data …")
        self.switch_mode("train")

    # ------------------------------------------------------------ quit, help, palette
    # ------------------------------------------------------------ unsaved cleaning
    def _unsaved_workbench(self):
        return next((w for w in list(self.workbenches) if w.is_mounted and w.wb is not None and w.wb.unsaved()),
                    None)

    def ask_unsaved(self, then, offer: bool = False) -> None:
        """With unsaved cleaning operations: save / discard / cancel, then `then()`
        (`offer`: after a save, offer to train on the new version first)."""
        w = self._unsaved_workbench()
        if w is None:
            then()
            return
        n = w.wb.unsaved()

        def chosen(what: str | None) -> None:
            if what == "save":
                w.save_and(then, offer)
            elif what == "discard":
                w.discard_unsaved()
                then()
        from tui.screens.dialogs import ChoiceDialog

        self.push_screen(ChoiceDialog(
            "Unsaved cleaning", f"{w.wb.path.name} has {n} unsaved operation(s). Save them as a new version?",
            [("save", "Save version [s]", "primary"), ("discard", "Discard [d]", "error"),
             ("cancel", "Cancel [esc]", "default")]), chosen)

    async def action_switch_mode(self, mode: str) -> None:
        if self.current_mode == "data" and mode != "data" and self._unsaved_workbench() is not None:
            self.ask_unsaved(lambda: self.switch_mode(mode), offer=True)
            return
        self.switch_mode(mode)

    def check_action(self, action: str, parameters) -> bool | None:
        # While a text field has the focus, q and the screen digits type into it: the
        # footer then leaves them out (ctrl+c, F1 and the palette still work).
        if action in ("quit", "switch_mode") and isinstance(self.focused, Input):
            return False
        return True

    def action_quit_any(self) -> None:
        self.action_quit()

    def action_quit(self) -> None:
        self.ask_unsaved(self._quit_run_prompt)

    def _quit_run_prompt(self) -> None:
        s = self.session
        if s is None or not s.is_live():
            self.exit(0)
            return

        def chosen(what: str | None) -> None:
            if what == "stop":
                from tui.services.engine_client import ControlError
                try:
                    s.stop()
                except ControlError as e:
                    self.notify(str(e), severity="error")
                    return
                s.detach()
                self.exit(0)
            elif what == "detach":
                s.detach()
                self.exit(0)
        from tui.screens.dialogs import QuitDialog

        self.push_screen(QuitDialog(s.run_dir.name), chosen)

    def action_help(self) -> None:
        rows, seen = [], set()
        for key, ab in self.screen.active_bindings.items():
            b = ab.binding
            if b.action in seen or not b.description:
                continue
            seen.add(b.action)
            rows.append((b.key_display or key, b.description, b.tooltip or ""))
        rows += [("1-4 / d c t r", "Screens", "Data, Config, Train, Runs"), ("ctrl+p", "Palette", "all commands")]
        from tui.screens.dialogs import HelpScreen

        self.push_screen(HelpScreen(type(self.screen).__name__.replace("Screen", ""), rows))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        # Textual saves into ~/Downloads, which a server often lacks: fall back to the
        # current directory (Textual's own toast names the file).
        if path is None:
            from platformdirs import user_downloads_path

            down = Path(user_downloads_path())
            path = str(down if down.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for mode, label, num, _ in SCREENS:
            yield SystemCommand(f"Screen: {label}", f"Go to the {label} screen ({num})",
                                lambda m=mode: self.switch_mode(m))
        from themes import NAMES

        for name in NAMES:
            yield SystemCommand(f"Theme: {name}", "Switch the colour theme", lambda n=name: setattr(self, "theme", n))
        yield SystemCommand("Run: start", "Start a run from the current config (s)", self.action_start_run)
        yield SystemCommand("Run: stop", "Stop the open run with a checkpoint (x)", self.action_stop_run)
        yield SystemCommand("Run: save now", "Checkpoint the open run now (k)", self.action_save_now)
        yield SystemCommand("Run: resume", "Resume the open run from its last checkpoint (u)", self.action_resume_run)


def run_app(path: str | None = None, theme: str | None = None, ascii_charts: bool = False,
            runs_dir: str | None = None, attach: str | None = None, attach_latest: bool = False) -> int:
    import sys

    from themes import NAMES

    if theme is not None and theme not in NAMES:
        print(f"ftwb: unknown theme {theme!r}; choose one of {', '.join(NAMES)}", file=sys.stderr)
        return 2
    try:
        target = resolve(path, runs_dir, attach, attach_latest)
    except OpenError as e:
        print(f"ftwb: {e}", file=sys.stderr)
        return 2
    app = FtwbApp(target, theme=theme, ascii_charts=ascii_charts, runs_dir=runs_dir)
    rc = app.run()
    return int(rc or 0)
