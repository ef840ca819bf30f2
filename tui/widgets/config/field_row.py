"""One config field as a form row: its label, the editor its type calls for, its one-line
help with the usual range, and a red line under it naming a bad value and what is allowed."""
from __future__ import annotations

from typing import Any, get_args

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label, Select, Static, Switch

from engine import config as C
from tui.services import config_form as F

# Block linears of Llama-shaped models: the usual LoRA targets, offered as checkboxes.
COMMON_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGETS = "lora.target_modules"


def editor_id(path: str) -> str:
    return "cfg-" + path.replace(".", "--")


def _range(meta: dict) -> str:
    lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
    if gt is not None and hi is not None:
        return f"> {gt}, <= {hi}"
    if gt is not None:
        return f"> {gt}"
    if lo is not None and hi is not None:
        return f"{lo}-{hi}"
    if lo is not None:
        return f">= {lo}"
    return ""


def field_error(path: str, value: Any) -> str | None:
    """engine.config's verdict on this one value (other fields at their defaults)."""
    d: dict = {}
    node = d
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    try:
        C.from_dict(d)
    except C.ConfigError as e:
        return str(e)
    return None


def parse(path: str, meta: dict, text: str) -> Any:
    if path == TARGETS:
        s = text.strip()
        return s if s == "all-linear" else [p.strip() for p in s.split(",") if p.strip()]
    if not text.strip() and type(None) in get_args(meta["type"]):
        return None  # an empty optional field (`str | None`) means "not set"
    return F.from_text(text, meta)


class FieldRow(Vertical):
    """Posts the editors' own Changed messages; the screen validates the whole form."""

    def __init__(self, path: str, meta: dict, value: Any):
        super().__init__(id="row-" + path.replace(".", "--"), classes="field-row")
        self.path, self.meta, self.initial = path, meta, value
        self.kind = F.kind(meta)

    def compose(self) -> ComposeResult:
        help_text = self.meta.get("help", "")
        rng = _range(self.meta)
        with Horizontal(classes="field-line"):
            yield Label(self.path.split(".")[-1], classes="field-label")
            if self.kind == "bool":
                yield Switch(value=bool(self.initial), id=editor_id(self.path), animate=False)
            elif self.kind == "choice":
                yield Select([(str(c), c) for c in F.choices(self.meta)], value=self.initial, allow_blank=False,
                             id=editor_id(self.path), compact=True)
            else:
                yield Input(value=F.to_text(self.initial), id=editor_id(self.path), compact=True,
                            placeholder=self.meta.get("type_name", ""))
            t = Text(help_text, style="dim")
            if rng and rng not in help_text:
                t.append(f" [{rng}]", style="dim italic")
            yield Label(t, classes="field-help")
        if self.path == TARGETS:
            with Horizontal(classes="module-boxes"):
                for name in COMMON_MODULES:
                    yield Checkbox(name, value=self._has(name, self.initial), id="mod-" + name, compact=True)
        yield Static(classes="field-error")

    @staticmethod
    def _has(name: str, value: Any) -> bool:
        return value == "all-linear" or (isinstance(value, list) and name in value)

    # ---- value in and out
    @property
    def editor(self):
        return self.query_one("#" + editor_id(self.path))

    def value(self) -> Any:
        w = self.editor
        if isinstance(w, (Switch, Select)):
            return w.value
        return parse(self.path, self.meta, w.value)

    def set_value(self, value: Any) -> None:
        """Fill the editor without posting Changed (the screen revalidates once after)."""
        w = self.editor
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed, Checkbox.Changed):
            if isinstance(w, Switch):
                w.value = bool(value)
            elif isinstance(w, Select):
                w.value = value
            else:
                w.value = F.to_text(value)
            self._sync_boxes(value)

    def _sync_boxes(self, value: Any) -> None:
        if self.path == TARGETS:
            for box in self.query(Checkbox):
                box.value = self._has(str(box.label), value)

    def show_error(self, message: str | None) -> None:
        err = self.query_one(".field-error", Static)
        err.update(Text("✖ " + message, style="bold red") if message else "")
        err.display = bool(message)
        self.set_class(bool(message), "-invalid")

    # ---- target_modules: text and checkboxes follow each other
    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        chosen = [str(b.label) for b in self.query(Checkbox) if b.value]
        text = "all-linear" if len(chosen) == len(COMMON_MODULES) else ", ".join(chosen)
        self.editor.value = text  # posts Input.Changed: the screen validates

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.path == TARGETS:
            with self.prevent(Checkbox.Changed):
                self._sync_boxes(parse(self.path, self.meta, event.value))
