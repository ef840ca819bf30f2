"""The filter bar: one line of filter terms (regex, check:, FIELD=, len>, sort:)."""
from __future__ import annotations

from textual.widgets import Input


class FilterBar(Input):
    DEFAULT_CSS = """
    FilterBar { height: 3; display: none; }
    FilterBar.-open { display: block; }
    """

    def __init__(self, help_text: str, **kw):
        super().__init__(placeholder=help_text, **kw)
