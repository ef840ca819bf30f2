"""FirstShowScreen: a Screen that is not restyled whole when first shown, right after it
was styled.

Textual restyles a screen's whole tree on every ScreenResume, and a mode's screen gets
two of them when it is first shown (one as the mode starts, one as the app switches to
it), both after its widgets were mounted, and so styled, with the same stylesheet: on
the Train screen that was two thirds of the style work before the first frame. Here a
resume skips the restyle while nothing it would catch can have happened: the screen has
not been suspended since it was mounted (so it has been the current screen throughout,
and every class and stylesheet change since reached it), and no stylesheet change (a
theme) is pending. Every later resume restyles as Textual does.
"""
from __future__ import annotations

from textual import events
from textual.screen import Screen


class FirstShowScreen(Screen):
    _styled_at: int | None = None  # the app's CSS update count when the mounted tree was styled

    def _on_mount(self, event: events.Mount) -> None:
        # Textual's own count (private): without it, every resume restyles as in Textual.
        self._styled_at = getattr(self.app, "_css_update_count", None)

    def _on_screen_suspend(self) -> None:
        self._styled_at = None  # in the background, app class and theme changes pass it by

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Screen's own handler (Textual calls each class's handler, subclass first).
        if self._styled_at is not None and self._styled_at == getattr(self.app, "_css_update_count", None):
            event.refresh_styles = False
