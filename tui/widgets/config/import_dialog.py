"""F3: import an Axolotl or LLaMA-Factory YAML. Type a path, enter shows which keys were
mapped to which ftwb fields and which were ignored (and why); enter again loads the
result into the form. Returns the RunConfig, or None."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine import config as C
from engine.config_import import ImportResult, import_config


def _short(v: object, n: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def report(result: ImportResult) -> Table:
    kind = {"axolotl": "Axolotl", "llamafactory": "LLaMA-Factory"}.get(result.source_kind, result.source_kind)
    table = Table(box=None, header_style="bold", title=f"{kind} config: {len(result.mapped)} keys mapped, "
                  f"{len(result.ignored)} ignored", title_justify="left")
    table.add_column("source key")
    table.add_column("value")
    table.add_column("ftwb field")
    table.add_column("becomes")
    for key, value, target, new in result.mapped:
        note = result.notes.get(key)
        table.add_row(key, _short(value), target, _short(new) + (f"  ({note})" if note else ""))
    for key, reason in result.ignored:
        table.add_row(Text(key, style="yellow"), "", Text("ignored", style="yellow"), Text(reason, style="dim"))
    return table


class ImportDialog(ModalScreen[C.RunConfig | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("ctrl+l", "load", "Load into form")]

    def __init__(self, path: str = ""):
        super().__init__()
        self.path = path
        self.result: ImportResult | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label("Import an Axolotl / LLaMA-Factory config", id="dialog-title")
            yield Input(value=self.path, placeholder="path/to/config.yml, then enter", id="import-path")
            yield Static(id="import-report")
            yield Label(Text("enter: read it · enter again or ctrl+l: load into the form · esc: cancel",
                             style="dim"), id="import-hint")

    def on_mount(self) -> None:
        self.query_one("#import-path", Input).focus()  # type the path at once

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.result is not None and event.value.strip() == self.path:
            self.action_load()
        else:
            self.read(event.value.strip())

    def read(self, path: str) -> None:
        self.path, self.result = path, None
        out = self.query_one("#import-report", Static)
        if not path:
            out.update(Text("type the path of the YAML to import", style="yellow"))
            return
        try:
            self.result = import_config(path)
        except C.ConfigError as e:
            out.update(Text("✖ " + str(e), style="bold red"))
            return
        self.report = report(self.result)
        out.update(self.report)

    def action_load(self) -> None:
        if self.result is None:
            self.read(self.query_one("#import-path", Input).value.strip())
            if self.result is None:
                return
        self.dismiss(self.result.config)
