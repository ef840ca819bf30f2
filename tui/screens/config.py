"""The Config screen (basic): every config field as an input, grouped by section, with
its help line; each change is validated by engine.config; load and save YAML (atomic)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Select, Static, Switch

from engine import config as C
from tui.services import config_form as F


def _wid(path: str) -> str:
    return "cfg-" + path.replace(".", "--")


class ConfigScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Save the config to the file named at the top (atomic)"),
        Binding("ctrl+o", "load", "Load", tooltip="Load the config file named at the top"),
        Binding("escape", "leave_field", "Leave field", tooltip="Leave the field so screen keys work"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("Config", style="bold"), classes="title-bar")
        with Horizontal(id="config-file-row"):
            yield Label("file ")
            yield Input(value=str(self.app.config_path or "ftwb.yaml"), id="config-file")
        yield Static(id="config-status")
        values = self.app.config.to_dict()
        with VerticalScroll(id="config-form"):
            group = None
            for g, path, meta in F.fields():
                if g != group:
                    group = g
                    yield Label(Text(g, style="bold underline"), classes="config-group")
                with Horizontal(classes="config-row"):
                    yield Label(path.split(".")[-1], classes="config-label")
                    k = F.kind(meta)
                    value = F.get(values, path)
                    if k == "bool":
                        yield Switch(value=bool(value), id=_wid(path))
                    elif k == "choice":
                        yield Select([(str(c), c) for c in F.choices(meta)], value=value, allow_blank=False,
                                     id=_wid(path))
                    else:
                        yield Input(value=F.to_text(value), id=_wid(path))
                    yield Label(meta.get("help", ""), classes="config-help")
        yield Footer()

    def on_mount(self) -> None:
        self._status(None)

    def _status(self, error: str | None) -> None:
        st = self.query_one("#config-status", Static)
        if error:
            st.update(Text("✖ " + error, style="bold red"))
        else:
            st.update(Text(f"✔ valid  method {self.app.config.method}, model {self.app.config.model.name_or_path}, "
                           f"data {self.app.config.data.path}", style="green"))

    # ------------------------------------------------------------ form <-> config
    def form_dict(self) -> dict:
        d = self.app.config.to_dict()
        for _, path, meta in F.fields():
            w = self.query_one("#" + _wid(path))
            if isinstance(w, Switch):
                value = w.value
            elif isinstance(w, Select):
                value = w.value
            else:
                value = F.from_text(w.value, meta)
            F.put(d, path, value)
        return d

    def validate_form(self) -> C.RunConfig | None:
        try:
            cfg = C.from_dict(self.form_dict())
        except C.ConfigError as e:
            self._status(str(e))
            return None
        self.app.config = cfg
        self._status(None)
        return cfg

    def fill(self, cfg: C.RunConfig) -> None:
        values = cfg.to_dict()
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            for _, path, meta in F.fields():
                w = self.query_one("#" + _wid(path))
                v = F.get(values, path)
                if isinstance(w, Switch):
                    w.value = bool(v)
                elif isinstance(w, Select):
                    w.value = v
                else:
                    w.value = F.to_text(v)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("cfg-"):
            self.validate_form()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.validate_form()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.validate_form()

    # ------------------------------------------------------------ actions
    def _file(self) -> Path:
        return Path(self.query_one("#config-file", Input).value.strip() or "ftwb.yaml").expanduser()

    def action_save(self) -> None:
        cfg = self.validate_form()
        if cfg is None:
            self.notify("Fix the config first: " + str(self.query_one("#config-status", Static).render()),
                        severity="error")
            return
        path = self._file()
        try:
            C.save(cfg, path)
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}; pick another file", severity="error")
            return
        self.app.config_path = path
        self.notify(f"Saved {path}")

    def action_load(self) -> None:
        path = self._file()
        try:
            cfg = C.load(path)
        except C.ConfigError as e:
            self.notify(str(e), severity="error", timeout=10)
            return
        self.app.config, self.app.config_path = cfg, path
        self.fill(cfg)
        self._status(None)
        self.notify(f"Loaded {path}")

    def action_leave_field(self) -> None:
        self.query_one("#config-form").focus()
