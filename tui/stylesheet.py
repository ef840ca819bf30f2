"""A Textual Stylesheet that parses each CSS source once per set of theme variables, and
keeps what it parsed for the next start.

Textual re-parses every source from scratch on each `refresh_css` (the theme set at start,
the first switch to a mode, a screen's own CSS) and keeps parsed sources in a 64-entry LRU
that ftwb's ~90 widget and screen sources overflow, so each pass misses every entry. Before
the first frame that was four full parses (~20 ms each on 2 cores). Parsed rules depend only
on a source's text, where it was read from and the variables, so with the variables
unchanged the cached rules are exactly what a fresh parse gives: reuse them and parse only
what is new.

The first frame still parsed every source once (its largest single cost after the
imports, tokenizer set-up included). So the parsed rules are also stored, one file per
Textual install, Python version and set of variables (a theme), under the ftwb cache directory:
a later start reads them back instead of parsing. A stored entry is used only for the very
text it was parsed from; a source whose text changed is parsed again and replaces its old
entry; a file that cannot be read is ignored (and rewritten).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

from textual.cache import LRUCache
from textual.css.stylesheet import Stylesheet

PARSE_CACHE_SIZE = 1024  # sources (DEFAULT_CSS of each widget class, each screen's CSS, app.tcss)
STORE_FORMAT = 2         # bump when what a stored file holds changes


def store_dir() -> Path:
    """Where parsed CSS is kept: $FTWB_CACHE_DIR/css, default ~/.cache/ftwb/css."""
    root = os.environ.get("FTWB_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "ftwb") / "css"


def _textual_build() -> tuple:
    """Which Textual the rules were parsed by: where its CSS modules are, their sizes and
    times (textual.__version__ reads the package metadata: slower than a parse)."""
    import textual.css.model
    import textual.css.styles

    out = []
    for mod in (textual.css.model, textual.css.styles):
        st = os.stat(mod.__file__)
        out.append((mod.__file__, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _slot(key: tuple) -> tuple:
    css, read_from, is_default, tie_breaker, scope = key
    return read_from, is_default, tie_breaker, scope  # one source; its text is the rest of the key


class CachedStylesheet(Stylesheet):
    def __init__(self, *, variables: dict[str, str] | None = None, store: Path | None = None) -> None:
        super().__init__(variables=variables)
        self._parse_cache = LRUCache(PARSE_CACHE_SIZE)
        self._store = store                 # None: nothing is read or written
        # What the store holds for the current variables (read on first use): each source's
        # rules pickled on their own, so a start unpickles only the sources it uses.
        self._stored: dict | None = None
        self._fresh: dict = {}              # parsed here and not in the store yet

    def set_variables(self, variables: dict[str, str]) -> None:
        if variables == self._variables:
            return  # same theme: the parsed rules and styles stay valid
        self.save()  # what was parsed with the old variables, before they go
        super().set_variables(variables)
        self._stored, self._fresh = None, {}

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

    # ------------------------------------------------------------ the store
    def _parse_rules(self, css, read_from, is_default_rules=False, tie_breaker=0, scope=""):
        key = (css, read_from, is_default_rules, tie_breaker, scope)
        if self._store is None or key in self._parse_cache:
            return super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
        blob = self._stored_rules().get(key)
        if blob is not None:
            try:
                rules = pickle.loads(blob)
            except Exception:
                rules = None  # written by another version of a class in it: parse
            if isinstance(rules, list):
                self._parse_cache[key] = rules
                return rules
        rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
        if not any(rule.errors for rule in rules):
            self._fresh[key] = rules
        return rules

    def _store_file(self) -> Path:
        blob = repr((STORE_FORMAT, _textual_build(), sys.version, sorted(self._variables.items())))
        return self._store / f"css-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.pickle"

    def _stored_rules(self) -> dict:
        if self._stored is None:
            try:
                with open(self._store_file(), "rb") as fh:
                    stored = pickle.load(fh)
                self._stored = stored if isinstance(stored, dict) else {}
            except Exception:  # none yet, or unreadable (another version wrote it, a torn disk): parse
                self._stored = {}
        return self._stored

    def save(self) -> None:
        """Write what was parsed since the last save into the store (atomically); a no-op
        without a store or when nothing new was parsed. Safe from a thread: it reads the
        parsed rules, which nothing changes once they are made."""
        fresh = dict(self._fresh)
        if self._store is None or not fresh:
            return
        path = self._store_file()
        slots = {_slot(key) for key in fresh}
        merged = {key: blob for key, blob in self._stored_rules().items() if _slot(key) not in slots}
        merged.update((key, pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)) for key, rules in fresh.items())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    pickle.dump(merged, fh, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return  # a read-only or full cache directory: the next start parses again
        self._stored = merged
        for key in fresh:
            self._fresh.pop(key, None)
