"""A virtual table of dataset rows: draws only the visible lines, fetching each from the
workbench's page cache, so a million-row file costs what one screen of rows costs."""
from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

ROLE_MARK = {"system": "S", "user": "U", "assistant": "A", "tool": "T"}


def summary(data) -> str:
    """One line for a row: chat turns as 'U: text | A: text', other rows as key=value pairs."""
    if not isinstance(data, dict):
        return ""
    turns = data.get("messages") or data.get("conversations")
    if isinstance(turns, list) and turns:
        parts = []
        for t in turns:
            if not isinstance(t, dict):
                continue
            who = str(t.get("role") or t.get("from") or "?")
            if who == "system" and len(turns) > 1:
                continue  # usually the same for every row: show what differs
            text = t.get("content") if "content" in t else t.get("value", "")
            parts.append(f"{ROLE_MARK.get(who, who[:1].upper() or '?')}: "
                         + (text if isinstance(text, str) else repr(text)))
            if sum(map(len, parts)) > 400:
                break
        s = " | ".join(parts)
    else:
        s = "  ".join(f"{k}={v!r}"[:120] for k, v in list(data.items())[:6])
    return " ".join(s[:400].split())


class RowsTable(ScrollView, can_focus=True):
    """Rows of a workbench in display order (all rows, or a filter's index array)."""

    COMPONENT_CLASSES = {"rows--cursor"}
    DEFAULT_CSS = """
    RowsTable { height: 1fr; }
    RowsTable > .rows--cursor { background: $accent 40%; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First row", show=False),
        Binding("end,G", "jump(-1)", "Last row", show=False),
    ]

    class CursorMoved(Message):
        """The highlighted row changed (source row index, or -1 when empty)."""

        def __init__(self, index: int):
            super().__init__()
            self.index = index

    def __init__(self, **kw):
        super().__init__(**kw)
        self.wb = None
        self.order: np.ndarray | None = None
        self.cursor = 0

    # ------------------------------------------------------------ model
    def set_workbench(self, wb) -> None:
        self.wb = wb
        self.refresh_rows()

    def set_order(self, order: np.ndarray | None) -> None:
        self.order = order
        self.cursor = 0
        self.scroll_to(y=0, animate=False)
        self.refresh_rows()
        self._announce()

    @property
    def count(self) -> int:
        if self.wb is None:
            return 0
        return len(self.order) if self.order is not None else len(self.wb)

    def source_index(self, k: int | None = None) -> int:
        k = self.cursor if k is None else k
        if not 0 <= k < self.count:
            return -1
        return int(self.order[k]) if self.order is not None else k

    def refresh_rows(self) -> None:
        """The row count or contents changed (index grew, edit, delete)."""
        self.virtual_size = Size(self.size.width, self.count)
        if self.cursor >= self.count:
            self.cursor = max(0, self.count - 1)
        self.refresh()

    def move_to_source(self, index: int) -> bool:
        """Put the cursor on a source row, if it is in the current order."""
        if self.order is None:
            k = index if 0 <= index < self.count else -1
        else:
            hits = np.flatnonzero(self.order == index)
            k = int(hits[0]) if len(hits) else -1
        if k < 0:
            return False
        self._set_cursor(k)
        return True

    # ------------------------------------------------------------ keys
    def action_move(self, delta: int) -> None:
        self._set_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self.cursor + direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        self._set_cursor(0 if where == 0 else self.count - 1)

    def _set_cursor(self, k: int) -> None:
        if not self.count:
            return
        self.cursor = max(0, min(self.count - 1, k))
        self._keep_cursor_visible()
        # Layout may still change the height (panels appearing): check again after it.
        self.call_after_refresh(self._keep_cursor_visible)
        self.refresh()
        self._announce()

    def _keep_cursor_visible(self) -> None:
        k = self.cursor
        top, h = int(self.scroll_offset.y), max(1, self.size.height)
        if k < top:
            self.scroll_to(y=k, animate=False, immediate=True)
        elif k >= top + h:
            self.scroll_to(y=k - h + 1, animate=False, immediate=True)

    def _announce(self) -> None:
        self.post_message(self.CursorMoved(self.source_index()))

    def on_click(self, event) -> None:
        self._set_cursor(int(self.scroll_offset.y) + event.y)

    # ------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        k = int(self.scroll_offset.y) + y
        width = self.size.width
        if self.wb is None or k >= self.count:
            return Strip.blank(width, self.rich_style)
        i = self.source_index(k)
        r = self.wb.rows(i, 1)
        if not r:
            return Strip.blank(width, self.rich_style)
        r = r[0]
        # The number is the file's 1-based line (what an editor and `ftwb data check` show),
        # or the row's position for sources without lines.
        num_w = max(4, len(str(len(self.wb))) + 1)
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"{r.line if r.line is not None else i:>{num_w}} ", "dim")
        if r.error:
            gone = self.wb.deleted(i)
            t.append("− " if gone else "✗ ", "bold red")
            t.append(f"line {r.line}: {r.error}", "dim strike" if gone else "red")
        else:
            deleted, edited = self.wb.deleted(i), self.wb.is_edited(i)
            t.append("− " if deleted else ("✎ " if edited else "  "), "bold yellow" if edited else "dim")
            body = summary(r.data) if r.data is not None else f"({r.size / 1e6:.1f} MB line) {r.preview}"
            t.append(body, "dim strike" if deleted else "")
        style = self.rich_style
        if k == self.cursor:
            style = style + (self.get_component_rich_style("rows--cursor") if self.has_focus
                             else Style(reverse=True, dim=True))
        segments = list(t.render(self.app.console))
        strip = Strip(segments).crop(int(self.scroll_offset.x), int(self.scroll_offset.x) + width)
        return strip.extend_cell_length(width).apply_style(style)

    def on_resize(self, event) -> None:
        self.virtual_size = Size(event.size.width, self.count)
        self.call_after_refresh(self._keep_cursor_visible)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
