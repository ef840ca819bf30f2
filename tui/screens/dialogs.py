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
                yield Button("Leave running [d]", variant="primary", id="detach")
                yield Button("Stop run [s]", variant="error", id="stop")
                yield Button("Cancel [esc]", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()  # enter is the safe answer: the run goes on

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)


class ChoiceDialog(ModalScreen[str | None]):
    """A question with a few answers; returns the id chosen, None on escape. Each answer's
    label ends in "[k]": k chooses it. The first answer has the focus (enter)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, question: str, answers: list[tuple[str, str, str]]):
        super().__init__()
        self.title_text, self.question, self.answers = title, question, answers
        self.keys = {label[label.rfind("[") + 1:-1]: aid for aid, label, _ in answers if label.endswith("]")}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Label(self.question)
            with Horizontal(id="dialog-buttons"):
                for aid, label, variant in self.answers:
                    yield Button(label, variant=variant, id=f"choice-{aid}")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_key(self, event) -> None:
        aid = self.keys.get(event.key)
        if aid is not None and aid != "cancel":
            event.stop()
            self.dismiss(aid)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        aid = (event.button.id or "")[len("choice-"):]
        self.dismiss(None if aid == "cancel" else aid)


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

