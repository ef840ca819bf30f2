"""The Data screen's modals: edit one text field of a row, split the dataset, list the
saved versions. Each returns its answer through dismiss()."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

DIALOG_CSS = """
{name} { align: center middle; }
{name} > Vertical { width: 90%; max-width: 120; height: auto; max-height: 90%; border: round $primary;
                    background: $surface; padding: 0 1; }
{name} .dlg-title { text-style: bold; }
{name} .dlg-buttons { height: auto; }
{name} .dlg-buttons Button { margin-right: 2; }
"""


def text_fields(value, path: str = "") -> list[tuple[str, str]]:
    """(json path, text) of every string in a row, e.g. ('messages[1].content', '...')."""
    out = []
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out += text_fields(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += text_fields(v, f"{path}[{i}]")
    return out


class EditDialog(ModalScreen[list[tuple[str, str]] | None]):
    """Pick a text field of the row (left), edit it (right); ctrl+s applies every change
    as one edit per field: [(json path, new text), ...]."""

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "EditDialog") + """
    EditDialog #edit-body { height: 20; }
    EditDialog #edit-fields { width: 30; }
    EditDialog #edit-area { width: 1fr; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", tooltip="Close without changing the row"),
                Binding("ctrl+s", "apply", "Apply", tooltip="Apply the edit (undo with ctrl+z)", priority=True)]

    def __init__(self, row_index: int, row: dict, start_path: str | None = None):
        super().__init__()
        self.row_index = row_index
        self.fields = text_fields(row)
        self.current = next((k for k, (p, _) in enumerate(self.fields) if p == start_path), 0)
        self.changes: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Edit row {self.row_index}  (ctrl+s apply · esc cancel)", classes="dlg-title")
            with Horizontal(id="edit-body"):
                yield OptionList(*[Option(p, id=str(k)) for k, (p, _) in enumerate(self.fields)], id="edit-fields")
                yield TextArea(self.fields[self.current][1] if self.fields else "", id="edit-area",
                               soft_wrap=True)

    def on_mount(self) -> None:
        if self.fields:
            self.query_one("#edit-fields", OptionList).highlighted = self.current
        self.query_one(TextArea).focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._stash()
        self.current = int(event.option.id)
        path, text = self.fields[self.current]
        self.query_one(TextArea).text = self.changes.get(path, text)

    def _stash(self) -> None:
        if self.fields:
            path, old = self.fields[self.current]
            text = self.query_one(TextArea).text
            if text != old:
                self.changes[path] = text
            else:
                self.changes.pop(path, None)

    def action_apply(self) -> None:
        self._stash()
        self.dismiss(list(self.changes.items()) or None)


class SplitDialog(ModalScreen[dict | None]):
    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "SplitDialog") + """
    SplitDialog .split-row { height: 3; }
    SplitDialog .split-row Label { width: 22; padding: 1 1 0 0; }
    SplitDialog .split-row Input { width: 1fr; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", tooltip="Close without splitting"),
                Binding("ctrl+s", "apply", "Split", tooltip="Write the splits", priority=True)]

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Split into train / val / test  (ctrl+s write · esc cancel)", classes="dlg-title")
            for label, wid, value in (("validation fraction", "split-val", "0.1"), ("test fraction", "split-test", "0"),
                                      ("seed", "split-seed", "42"), ("stratify by field", "split-stratify", ""),
                                      ("output directory", "split-out", self.out_dir)):
                with Horizontal(classes="split-row"):
                    yield Label(label)
                    yield Input(value, id=wid)
            yield Static(id="split-error")
            with Horizontal(classes="dlg-buttons"):
                yield Button("Write splits [ctrl+s]", variant="primary", id="split-ok")
                yield Button("Cancel [esc]", id="split-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_apply() if event.button.id == "split-ok" else self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        get = (lambda w: self.query_one(f"#{w}", Input).value.strip())
        try:
            val, test, seed = float(get("split-val") or 0), float(get("split-test") or 0), int(get("split-seed") or 0)
        except ValueError:
            self.query_one("#split-error", Static).update(
                Text("fractions are numbers like 0.1 and the seed a whole number", "bold red"))
            return
        self.dismiss({"val": val, "test": test, "seed": seed, "stratify": get("split-stratify") or None,
                      "out": get("split-out") or self.out_dir})


class VersionsDialog(ModalScreen[None]):
    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "VersionsDialog")
    BINDINGS = [Binding("escape,v,q", "dismiss(None)", "Close", tooltip="Close the versions list")]

    def __init__(self, source: str, versions: list):
        super().__init__()
        self.source, self.versions = source, versions

    def compose(self) -> ComposeResult:
        table = Table(box=None, header_style="bold")
        for c in ("version", "rows in → out", "operations", "created", "file"):
            table.add_column(c)
        for v in reversed(self.versions):
            ops = ", ".join(op["op"] for op in v.operations) or "(none)"
            table.add_row(v.version, f"{v.rows_in} → {v.rows_out}", ops[:60], v.created, str(v.path.name))
        with Vertical():
            yield Label(f"Saved versions of {self.source}", classes="dlg-title")
            yield Static(table if self.versions else Text("no saved versions yet: clean, then ctrl+s", "dim"))
            if self.versions:
                yield Static(Text(f"in {self.versions[-1].path.parent}", "dim"))
