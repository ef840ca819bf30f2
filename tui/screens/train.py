"""The Train screen: loss chart (train + validation, best step marked), learning rate
and grad norm, progress and ETA, GPU gauges and the event log with alerts.

It reads the app's current RunSession's state on timers: alerts and log lines four
times a second (even when hidden, so alerts reach any screen), charts once a second
and only while this screen is shown and something changed.
"""
from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui.screens.first_show import FirstShowScreen
from tui.services.series import smooth, window
from tui.widgets.braille import ChartLine, Marker
from tui.widgets.event_log import EventLog
from tui.widgets.gpu_pane import GpuPane
from tui.widgets.key_footer import KeyFooter
from tui.widgets.line_chart import LineChart
from tui.widgets.progress_panel import ProgressPanel
from tui.widgets.samples_panel import SamplesPanel

WINDOWS = (None, 100, 1000)  # whole run, or the last N steps
LOG_BATCH = 500               # at most this many log lines written per drain


class TrainScreen(FirstShowScreen):
    BINDINGS = [
        Binding("s", "app.start_run", "Start", tooltip="Start a run from the current config"),
        Binding("x", "app.stop_run", "Stop", tooltip="Stop after this step, with a checkpoint (SIGTERM)"),
        Binding("k", "app.save_now", "Save now", tooltip="Write a checkpoint now (SIGUSR1)"),
        Binding("u", "app.resume_run", "Resume", tooltip="Resume this run from its last checkpoint"),
        Binding("l", "toggle_log", "Log y", tooltip="Log-scale loss axis"),
        Binding("m", "toggle_smooth", "Smooth", tooltip="Smooth the train loss (moving average)"),
        Binding("w", "cycle_window", "Window", tooltip="Whole run, last 100 or last 1000 steps"),
        Binding("a", "toggle_samples", "Answers",
                tooltip="Sample answers: expected, the base model's and the latest, instead of the charts"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.log_y = False
        self.smoothing = False
        self.window_i = 0
        self._bound = None       # the RunSession the widgets show
        self._drawn_version = -1
        self._samples_key = None

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        ascii_mode = self.app.ascii_charts
        yield Static(id="train-title", classes="title-bar")
        yield ProgressPanel(ascii_mode=ascii_mode, id="progress")
        with Horizontal(id="train-main"):
            yield LineChart("loss", ascii_mode=ascii_mode, id="loss-chart")
            with Vertical(id="train-side"):
                yield LineChart("learning rate", ascii_mode=ascii_mode, id="lr-chart")
                yield LineChart("grad norm", ascii_mode=ascii_mode, id="gnorm-chart")
                # Preference runs show these two in place of the two above.
                yield LineChart("reward margin", ascii_mode=ascii_mode, id="margin-chart")
                yield LineChart("reward accuracy", ascii_mode=ascii_mode, id="accuracy-chart")
            yield SamplesPanel(id="samples-panel")
        with Horizontal(id="train-bottom"):
            yield EventLog(id="event-log")
            yield GpuPane(ascii_mode=ascii_mode, pid_source=self._engine_pid,
                          sample=self.app.sample_devices, id="gpu-pane")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(0.25, self.drain)
        self.set_interval(1.0, self.redraw)
        self.redraw(force=True)

    def on_screen_resume(self) -> None:
        self.redraw(force=True)

    def _engine_pid(self) -> int | None:
        s = self.app.session
        return s.pid() if s is not None else None

    # ------------------------------------------------------------ updates
    def _check_session(self) -> None:
        s = self.app.session
        if s is not self._bound:
            self._bound = s
            self._drawn_version = -1
            self.query_one(EventLog).reset()

    def drain(self) -> None:
        """Move new log lines and alerts to the screen (runs even when hidden)."""
        self._check_session()
        s = self._bound
        if s is None:
            return
        entries, alerts = s.state.drain()
        log = self.query_one(EventLog)
        if len(entries) > LOG_BATCH:
            log.write(Text(f"({len(entries) - LOG_BATCH} earlier lines are in events.jsonl)", style="dim"))
            entries = entries[-LOG_BATCH:]
        for e in entries:
            log.add(e)
        for a in alerts:
            timeout = 20 if a.severity == "error" else 8
            self.app.notify(a.message, title=a.title, severity=a.severity, timeout=timeout)

    def redraw(self, force: bool = False) -> None:
        self._check_session()
        if not force and self.app.screen is not self:
            return  # hidden: charts pause
        s = self._bound
        title = self.query_one("#train-title", Static)
        if s is None:
            from tui.services.dataset_label import dataset_label

            title.update(Text.assemble(("Train", "bold"), "  no run yet: press ", ("s", "bold reverse"),
                                       " to start one from the current config, or open a run on the Runs screen (r)",
                                       ("  · will train on ", "dim"), (dataset_label(self.app.config.data.path), "bold")))
            self.query_one(ProgressPanel).update_values(status="waiting")
            for chart in self.query(LineChart):
                chart.set_lines([])
            return
        st = s.state
        if not force and st.version == self._drawn_version:
            return
        with st.lock:
            self._drawn_version = st.version
            self._draw(s, st)

    def _draw(self, s, st) -> None:
        title = self.query_one("#train-title", Static)
        procs = st.processes_label
        title.update(Text.assemble(("Train", "bold"), "  ", (s.run_dir.name, "bold"),
                                   ("  " + procs, "bold cyan") if procs else "", f"  ({s.run_dir.parent})",
                                   ("  · data ", "dim"), (self._data_label(s), ""),
                                   ("  resumed from step %d" % st.resumed_from, "dim") if st.resumed_from else ""))
        last_tps = st.tokens_per_s.last()
        last_loss = st.loss.last()
        self.query_one(ProgressPanel).update_values(
            status=st.status, step=st.step, total_steps=st.total_steps, epoch=st.epoch, phase=st.phase,
            tokens_per_s=last_tps[1] if last_tps else None, eta_s=st.eta_s,
            loss=last_loss[1] if last_loss else None, best=st.best)
        theme = self.app.current_theme
        var = theme.variables
        c_train = var.get("train-color", theme.primary)
        c_val = var.get("val-color", theme.accent or theme.warning)
        c_best = var.get("best-color", theme.success)
        n = WINDOWS[self.window_i]
        tx, ty = window(st.loss.x, st.loss.y, n)
        if self.smoothing:
            ty = smooth(ty, max(len(ty) // 50, 5))
        vx, vy = st.val_loss.x, st.val_loss.y
        x_range = (float(tx[0]), float(max(tx[-1], vx[-1] if len(vx) else tx[-1]))) if len(tx) else None
        if x_range is not None and len(vx):
            keep = vx >= x_range[0]
            vx, vy = vx[keep], vy[keep]
        markers = []
        legend = Text()
        legend.append("━ train", c_train)
        if self.smoothing:
            legend.append(" (smoothed)", "dim")
        legend.append("  ━ val", c_val)
        if st.best is not None:
            markers.append(Marker(st.best[0], st.best[1], f"bold {c_best}"))
            legend.append(f"  ◆ best {st.best[1]:.4g} @ step {st.best[0]}", c_best)
        if st.preference and st.reward_margin.last():  # also seen in compact mode, where the side charts hide
            acc = st.reward_accuracy.last()
            legend.append(f"  margin {st.reward_margin.last()[1]:.3g}" + (f" acc {acc[1]:.0%}" if acc else ""), c_best)
        opts = []
        if self.log_y:
            opts.append("log")
        opts.append(f"last {n}" if n else "all steps")
        legend.append("  [" + ", ".join(opts) + "]", "dim")
        self.query_one("#loss-chart", LineChart).set_lines(
            [ChartLine("train", tx, ty, c_train), ChartLine("val", vx, vy, c_val)],
            markers, legend, log_y=self.log_y, x_range=x_range)
        for cid, series, style in (("#lr-chart", st.lr, c_val), ("#gnorm-chart", st.grad_norm, c_train)):
            x, y = window(series.x, series.y, n)
            last = series.last()
            lg = Text(f"{last[1]:.3g}" if last and math.isfinite(last[1]) else "", style="dim")
            self.query_one(cid, LineChart).set_lines([ChartLine(series.name, x, y, style)], legend=lg)
        self.set_class(st.preference, "-preference")
        if st.preference:
            self._draw_preference(st, n, c_train, c_val)
        pane = self.query_one(GpuPane)
        pane.set_engine_memory(st.memory)
        multi = st.world_size > 1 or len(st.rank_memory) > 1
        pane.set_ranks(st.rank_memory if multi else None, st.ranks_tokens_per_s, last_tps[1] if last_tps else None)
        key = (id(st.base_samples), id(st.samples))
        if key != self._samples_key:
            self._samples_key = key
            self.query_one(SamplesPanel).show(st.base_samples, st.samples, st.samples_step)

    def _draw_preference(self, st, n, c_train, c_val) -> None:
        """Reward margin and accuracy, train and validation, beside the loss."""
        for cid, train, val, fmt in (("#margin-chart", st.reward_margin, st.val_reward_margin, "{:.3g}"),
                                     ("#accuracy-chart", st.reward_accuracy, st.val_reward_accuracy, "{:.0%}")):
            x, y = window(train.x, train.y, n)
            lines = [ChartLine("train", x, y, c_train)]
            lg = Text()
            last = train.last()
            if last and math.isfinite(last[1]):
                lg.append("train " + fmt.format(last[1]), c_train)
            if len(val.x):
                vx, vy = window(val.x, val.y, n)
                lines.append(ChartLine("val", vx, vy, c_val))
                lv = val.last()
                lg.append("  val " + fmt.format(lv[1]), c_val)
            self.query_one(cid, LineChart).set_lines(lines, legend=lg)

    # ------------------------------------------------------------ chart toggles
    def action_toggle_log(self) -> None:
        self.log_y = not self.log_y
        self.redraw(force=True)

    def action_toggle_smooth(self) -> None:
        self.smoothing = not self.smoothing
        self.redraw(force=True)

    def _data_label(self, s) -> str:
        """The dataset (version) the open run trains on, read once per run from its config."""
        if getattr(self, "_label_for", None) is not s:
            from engine import config as C
            from tui.services.dataset_label import dataset_label

            try:
                self._label = dataset_label(C.load(s.run_dir / "config.yaml").data.path)
            except C.ConfigError:
                self._label = "?"
            self._label_for = s
        return self._label

    def action_toggle_samples(self) -> None:
        self.toggle_class("-answers")
        self.redraw(force=True)

    def action_cycle_window(self) -> None:
        self.window_i = (self.window_i + 1) % len(WINDOWS)
        self.redraw(force=True)
