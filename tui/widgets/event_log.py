"""EventLog: the run's event log; warnings and errors stand out and stay here after
their notification fades."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui.widgets.progress_panel import fmt_duration

SEVERITY_STYLE = {"warning": "bold yellow", "error": "bold red"}
KEEP = 2000


class EventLog(RichLog):
    DEFAULT_CSS = """
    EventLog { height: 1fr; }
    """

    def __init__(self, **kw):
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=KEEP, **kw)
        self.texts: list[str] = []  # plain text of what was written, for search and tests

    def add(self, entry) -> None:
        t = Text()
        t.append("+" + fmt_duration(entry.elapsed).rjust(6) + " " if entry.elapsed is not None else "        ", "dim")
        style = SEVERITY_STYLE.get(entry.severity, "")
        if entry.severity in SEVERITY_STYLE:
            t.append("▲ " if entry.severity == "warning" else "✖ ", style)
        t.append(entry.text, style)
        self.texts.append(t.plain)
        if len(self.texts) > KEEP:
            del self.texts[: len(self.texts) - KEEP]
        self.write(t)

    def reset(self) -> None:
        self.texts.clear()
        self.clear()
