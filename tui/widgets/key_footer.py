"""KeyFooter: Textual's Footer, with its keys in the screen's first frame and rebuilt only
when they change.

Textual's Footer composes empty, then rebuilds itself after every bindings update (the
first one comes right after the screen is shown; others on each focus change), removing
and mounting all its keys again even when they are the same. Each new key also starts
compact and is restyled twice as the footer's `compact` is bound to it. Here the keys are
composed with the footer, each bound key starts with the footer's `compact`, and a bindings
update rebuilds the footer only when what it shows (keys, labels, enabled, tooltips)
differs from what it was built from: the same widgets as Textual's, built once.
"""
from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    def __init__(self, *children, **kw) -> None:
        super().__init__(*children, **kw)
        self._built_from: tuple | None = None

    def _shown(self) -> tuple:
        """What compose reads from the screen's bindings: equal tuples compose equal keys."""
        app = self.app
        active = self.screen.active_bindings
        keys = tuple((b, enabled, tooltip, app.get_key_display(b))
                     for _node, b, enabled, tooltip in active.values() if b.show)
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            entry = active.get(app.COMMAND_PALETTE_BINDING)
            if entry is not None:
                palette = (entry[1], entry[2], entry[3], app.get_key_display(entry[1]))
        return keys, palette, self.compact

    def compose(self):
        self.set_reactive(Footer._bindings_ready, True)
        self._built_from = self._shown()
        compact = self.compact
        for widget in super().compose():  # every key is yielded (a group's too, inside its `with`)
            if isinstance(widget, FooterKey) and "compact" in (widget._reactive_connect or {}):
                widget.set_reactive(FooterKey.compact, compact)  # bound to ours (the palette key is not)
            yield widget

    def bindings_changed(self, screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._rebuild_if_changed)

    async def _rebuild_if_changed(self) -> None:
        if self.is_attached and self._shown() != self._built_from:
            await self.recompose()
