"""Yes/no before something that cannot be undone (overwriting a file)."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Overwrite", no: str = "Cancel"):
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text(self.question, style="bold"), id="dialog-title")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} [y]", variant="warning", id="yes")
                yield Button(f"{self.no} [n/esc]", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()  # enter answers yes

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
