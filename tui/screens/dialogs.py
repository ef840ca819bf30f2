"""Modal dialogs: quit with a live run (stop or detach), key help, config diff."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class QuitDialog(ModalScreen[str | None]):
    """Returns "stop", "detach" or None (cancel)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("s", "choose('stop')", "Stop run"),
                Binding("d", "choose('detach')", "Detach")]

    def __init__(self, run_name: str):
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"The run {self.run_name} is still training.", id="dialog-title")
            yield Label("Stop it (a checkpoint is saved) or leave it running? "
                        "You can re-attach later with `ftwb attach`.")
            with Horizontal(id="dialog-buttons"):
                yield Button("Stop run [s]", variant="error", id="stop")
                yield Button("Leave running [d]", variant="primary", id="detach")
                yield Button("Cancel [esc]", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)


class HelpScreen(ModalScreen[None]):
    """F1: the keys of the screen underneath, and the global ones."""

    BINDINGS = [Binding("escape,f1,q", "dismiss(None)", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]):
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_column(style="dim")
        for key, desc, tip in self.rows:
            table.add_row(key, desc, tip)
        with VerticalScroll(id="dialog"):
            yield Label(Text(f"Keys: {self.title_text}", style="bold"), id="dialog-title")
            yield Static(table)
            yield Label(Text("ctrl+p opens the command palette (screens, themes, run control). "
                             "esc closes this.", style="dim"))

