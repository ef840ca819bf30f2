"""F2: pick a preset (LoRA, QLoRA, full, smoke test); returns its key or None."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tui.services.presets import PRESETS


class PresetPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                *(Binding(str(i + 1), f"pick('{p.key}')", p.title, show=False) for i, p in enumerate(PRESETS))]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Preset (model and data paths are kept)", id="dialog-title")
            opts = []
            for i, p in enumerate(PRESETS):
                t = Text()
                t.append(f"{i + 1} {p.title:<15}", style="bold")
                t.append(p.description, style="dim")
                opts.append(Option(t, id=p.key))
            yield OptionList(*opts, id="preset-list")
            yield Label(Text("enter or 1-4 applies, esc cancels", style="dim"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_pick(self, key: str) -> None:
        self.dismiss(key)
