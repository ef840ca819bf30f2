"""A field-by-field change list: the config against the last run's, or a proposed change
(auto-fit) that the user accepts with enter or drops with esc. Returns True on accept."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class DiffView(ModalScreen[bool]):
    def __init__(self, title: str, a_name: str, b_name: str, rows: list[tuple[str, object, object]],
                 accept: bool = False, note: str = ""):
        super().__init__()
        self.title_text, self.a_name, self.b_name = title, a_name, b_name
        self.rows, self.accept, self.note = rows, accept, note

    BINDINGS = [Binding("escape,q", "dismiss(False)", "Close"),
                Binding("enter,y", "accept", "Accept", show=False)]

    def compose(self) -> ComposeResult:
        table = Table(box=None, header_style="bold")
        table.add_column("field")
        table.add_column(self.a_name, style="red")
        table.add_column(self.b_name, style="green")
        for path, a, b in self.rows:
            table.add_row(path, repr(a), repr(b))
        with VerticalScroll(id="dialog"):
            yield Label(Text(self.title_text, style="bold"), id="dialog-title")
            if self.note:
                yield Label(Text(self.note, style="dim"))
            yield Static(table if self.rows else Text("No differences.", style="dim"), id="diff-table")
            hint = "enter accepts these changes, esc drops them" if self.accept and self.rows else "esc closes"
            yield Label(Text(hint, style="dim"))

    def action_accept(self) -> None:
        self.dismiss(bool(self.accept and self.rows))
