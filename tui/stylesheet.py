"""A Textual Stylesheet that parses each CSS source once per set of theme variables.

Textual re-parses every source from scratch on each `refresh_css` (the theme set at start,
the first switch to a mode, a screen's own CSS) and keeps parsed sources in a 64-entry LRU
that ftwb's ~90 widget and screen sources overflow, so each pass misses every entry. Before
the first frame that was four full parses (~20 ms each on 2 cores). Parsed rules depend only
on a source's text and the variables, so with the variables unchanged the cached rules are
exactly what a fresh parse gives: reuse them and parse only what is new.
"""
from __future__ import annotations

from textual.cache import LRUCache
from textual.css.stylesheet import Stylesheet

PARSE_CACHE_SIZE = 1024  # sources (DEFAULT_CSS of each widget class, each screen's CSS, app.tcss)


class CachedStylesheet(Stylesheet):
    def __init__(self, *, variables: dict[str, str] | None = None) -> None:
        super().__init__(variables=variables)
        self._parse_cache = LRUCache(PARSE_CACHE_SIZE)

    def set_variables(self, variables: dict[str, str]) -> None:
        if variables == self._variables:
            return  # same theme: the parsed rules and styles stay valid
        super().set_variables(variables)

    def reparse(self) -> None:
        # The cache is cleared whenever the variables change (set_variables), so what it
        # holds was parsed with the current ones: an incremental parse equals a fresh one.
        self.parse()
        self._rules_map = None

    def copy(self) -> Stylesheet:
        # Textual copies the stylesheet to reload edited CSS files (textual run --dev).
        stylesheet = CachedStylesheet(variables=self._variables.copy())
        stylesheet.source = self.source.copy()
        return stylesheet
