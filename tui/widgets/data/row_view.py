"""One row three ways: the conversation as turns (roles in their own colours), the raw
JSON, and the tokens the model sees (trained and masked in different colours)."""
from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

ROLE_STYLE = {"system": "bold magenta", "user": "bold cyan", "assistant": "bold green", "tool": "bold yellow"}
TRAINED, MASKED, CUT = "green", "grey50", "bold white on red"
SHOW_TOKENS = 4000   # tokens drawn at most; counts always cover the whole row
SHOW_CHARS = 20_000  # characters of one field drawn at most (a 50 MB field would stall the screen)


def clip(s: str) -> str:
    return s if len(s) <= SHOW_CHARS else s[:SHOW_CHARS] + f"\n… {len(s) - SHOW_CHARS:,} more characters"


def turns_text(data, fmt: str) -> Text:
    from engine.data.checks_chat import to_messages

    t = Text()
    if data is None:
        return Text("this row could not be read", "red")
    msgs = to_messages(data, fmt)
    if msgs is None:  # completion or unknown: show the fields
        for k, v in data.items():
            t.append(f"{k}\n", "bold")
            t.append(clip(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) + "\n\n")
        return t
    for n, m in enumerate(msgs):
        role = m.get("role", "?")
        t.append(f"▌{role}", ROLE_STYLE.get(role, "bold red"))
        t.append(f"  turn {n}\n", "dim")
        t.append(clip(m.get("content") or "") + "\n\n")
    if fmt == "preference" and isinstance(data.get("rejected"), (str, dict, list)):
        t.append("▌rejected\n", "bold red")
        rej = data["rejected"]
        t.append((rej if isinstance(rej, str) else json.dumps(rej, ensure_ascii=False)) + "\n")
    return t


def tokens_text(tv) -> Text:
    if getattr(tv, "rejected", None) is not None:  # a preference pair: both sides, one after the other
        return (Text("▌chosen  ", "bold green") + _examples_text(tv) + Text("\n\n▌rejected  ", "bold red")
                + _examples_text(tv.rejected))
    return _examples_text(tv)


def _examples_text(tv) -> Text:
    """Every training example of the row (the per_turn policy gives one per assistant turn)."""
    views = [tv, *tv.more]
    if len(views) == 1:
        return _tokens_text(tv)
    t = Text(f"{len(views)} training examples from this row (data.turn_policy: {tv.policy})\n", "bold")
    for k, v in enumerate(views, 1):
        t.append(f"\n── example {k} of {len(views)}: trains assistant turn {v.turn} ──\n", "bold")
        t.append_text(_tokens_text(v))
    return t


def _tokens_text(tv) -> Text:
    t = Text()
    t.append(f"{tv.total} tokens, {tv.trainable} trained", "bold")
    t.append(f"  (max_seq_len {tv.max_seq_len}", "dim")
    over = tv.total - tv.max_seq_len
    t.append(f"; {over} cut" if over > 0 else "; fits", "bold red" if over > 0 else "dim")
    t.append(")   ", "dim")
    t.append("trained", TRAINED)
    t.append(" / ")
    t.append("masked", MASKED)
    t.append("\n")
    if tv.note:
        t.append(tv.note + "\n", "bold red")
    if tv.policy and not tv.more and tv.turn is None:
        t.append(f"data.turn_policy: {tv.policy}\n", "dim")
    for flag in tv.lint:  # template lint: end-of-turn not trained, reasoning stripped, ...
        t.append(f"⚠ {flag}\n", "bold yellow")
    t.append("\n")
    for k, (piece, trained) in enumerate(zip(tv.pieces[:SHOW_TOKENS], tv.trained)):
        if k == tv.max_seq_len:
            t.append(f" ✂ max_seq_len {tv.max_seq_len}: everything after this is cut ", CUT)
            t.append("\n")
        style = TRAINED if trained else MASKED
        shown = piece.replace("\n", "↵\n")
        t.append(shown, style + (" underline" if k % 2 else ""))
    if tv.total > SHOW_TOKENS:
        t.append(f"\n… {tv.total - SHOW_TOKENS} more tokens not drawn", "dim")
    return t


class RowView(Vertical):
    DEFAULT_CSS = """
    RowView { height: 1fr; }
    RowView TabbedContent { height: 1fr; }
    RowView VerticalScroll { height: 1fr; padding: 0 1; }
    """

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    @active.setter
    def active(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def compose(self) -> ComposeResult:
        with TabbedContent():
            with TabPane("Turns", id="tab-turns"):
                with VerticalScroll():
                    yield Static(id="row-turns")
            with TabPane("Raw", id="tab-raw"):
                with VerticalScroll():
                    yield Static(id="row-raw")
            with TabPane("Tokens", id="tab-tokens"):
                with VerticalScroll():
                    yield Static(Text("press o to render this row through the model's chat template", "dim"),
                                 id="row-tokens")

    def show_row(self, row, fmt: str, label: str | None = None) -> None:
        # `label` is the workbench's "line N (row K)": K counts parsed rows, as the CLI does.
        head = Text((label or (f"line {row.line}" if row.line else f"row {row.index}")) + "\n", "dim")
        if row.error:
            self.query_one("#row-turns", Static).update(head + Text(row.error, "bold red"))
            self.query_one("#row-raw", Static).update(head + Text(row.error, "red"))
            return
        self.query_one("#row-turns", Static).update(head + turns_text(row.data, fmt))
        raw = json.dumps(row.data, ensure_ascii=False, indent=2)
        self.query_one("#row-raw", Static).update(head + Text(clip(raw)))

    def show_tokens(self, content: Text | str) -> None:
        self.query_one("#row-tokens", Static).update(content)
