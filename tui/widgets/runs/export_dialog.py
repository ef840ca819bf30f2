"""Export a run: adapter or merged model, and where to (the default is shown)."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label


class ExportDialog(ModalScreen[dict | None]):
    """Dismisses with {"merge": bool, "out": str | None} (None: the default), or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="export.cancel", tooltip="Close without exporting")]

    def __init__(self, run_name: str, default_adapter: str, default_merged: str):
        super().__init__()
        self.run_name, self.defaults = run_name, {False: default_adapter, True: default_merged}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text(f"Export {self.run_name}", style="bold"), id="dialog-title")
            yield Checkbox("merge the adapter into the base model (a full model)", False, id="export-merge")
            yield Label("output directory (empty: the default below)")
            yield Input(placeholder=self.defaults[False], id="export-out")
            yield Label(Text(f"default: {self.defaults[False]}", style="dim"), id="export-default")
            with Horizontal(id="dialog-buttons"):
                yield Button("Export [enter]", variant="primary", id="export-go")
                yield Button("Cancel [esc]", id="export-cancel")

    def on_mount(self) -> None:
        self.query_one("#export-out", Input).focus()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        default = self.defaults[bool(event.value)]
        self.query_one("#export-out", Input).placeholder = default
        self.query_one("#export-default", Label).update(Text(f"default: {default}", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._go()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-go":
            self._go()
        else:
            self.dismiss(None)

    def _go(self) -> None:
        out = self.query_one("#export-out", Input).value.strip()
        self.dismiss({"merge": self.query_one("#export-merge", Checkbox).value, "out": out or None})
