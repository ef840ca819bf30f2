"""LineChart: a widget that shows braille line charts with a legend line.

The owner hands it data with `set_lines`; it redraws only then or on resize. Drawing
itself is tui.widgets.braille.render_chart.
"""
from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from tui.widgets.braille import ChartLine, ChartOptions, Marker, render_chart


class LineChart(Widget):
    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 4; }
    """

    def __init__(self, title: str = "", ascii_mode: bool = False, y_label_width: int = 8, **kw):
        super().__init__(**kw)
        self.title = title
        self.ascii_mode = ascii_mode
        self.y_label_width = y_label_width
        self.lines: list[ChartLine] = []
        self.markers: list[Marker] = []
        self.legend: Text | None = None
        self.log_y = False
        self.x_range: tuple[float, float] | None = None

    def set_lines(self, lines: list[ChartLine], markers: list[Marker] | None = None,
                  legend: Text | None = None, log_y: bool = False,
                  x_range: tuple[float, float] | None = None) -> None:
        self.lines, self.markers, self.legend = lines, markers or [], legend
        self.log_y, self.x_range = log_y, x_range
        self.refresh()

    def render(self):
        w, h = self.content_size.width, self.content_size.height
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(self.title, "bold")
        if self.legend is not None:
            head.append("  ")
            head.append_text(self.legend)
        if h < 3:
            return head
        opts = ChartOptions(log_y=self.log_y, ascii=self.ascii_mode, markers=self.markers,
                            x_range=self.x_range, y_label_width=self.y_label_width)
        return Group(head, render_chart(self.lines, w, h - 1, opts))
