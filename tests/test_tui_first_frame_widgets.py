"""What the first frame's shortcuts must not change: KeyFooter shows what Textual's Footer
shows after every bindings change, and a FirstShowScreen ends with the styles a full
restyle gives, also when the app's classes or theme changed while it was in the background."""
from __future__ import annotations

import re

from textual.app import App
from textual.binding import Binding
from textual.widgets import Button, Footer, Input, Static
from textual.widgets._footer import FooterKey

from pilot_helpers import wait_for
from tui.screens.first_show import FirstShowScreen
from tui.widgets.key_footer import KeyFooter


class _Keys(App):
    BINDINGS = [Binding("q", "leave", "Quit"), Binding("f1", "help", "Help", tooltip="Keys"),
                Binding("ctrl+s", "save", "Save")]

    def __init__(self, footer: type[Footer]):
        super().__init__()
        self.footer = footer

    def compose(self):
        yield Button("one", id="one")
        yield Button("two", id="two")
        yield Input(id="field")
        yield self.footer()

    def check_action(self, action, parameters):
        if action == "leave" and isinstance(self.focused, Input):
            return False  # hidden while typing
        if action == "save" and isinstance(self.focused, Input):
            return None  # shown disabled
        return True

    def action_leave(self) -> None: ...
    def action_save(self) -> None: ...


def _keys(app) -> list[tuple]:
    return [(k.key, k.description, k.has_class("-disabled"), k.has_class("-compact"), str(k.tooltip or ""))
            for k in app.screen.query(FooterKey)]


def _svg(app) -> str:
    return re.sub(r"terminal-\d+", "terminal", app.export_screenshot())


def _follows_the_focus(app) -> bool:
    """The footer shows the keys for the focused widget: q hidden and Save disabled while typing."""
    keys = {k.key: k.has_class("-disabled") for k in app.screen.query(FooterKey)}
    typing = isinstance(app.focused, Input)
    return ("q" in keys) != typing and keys.get("ctrl+s") == typing


async def _settled_svg(pilot, app) -> str:
    # The footer rebuilds after the focus change, and draws a frame after that: two exports agree.
    last = None
    for _ in range(100):
        await pilot.pause(0.1)
        svg = _svg(app)
        if svg == last:
            break
        last = svg
    return svg


async def _steps(footer: type[Footer]):
    app = _Keys(footer)
    seen = []
    async with app.run_test(size=(80, 8)) as pilot:
        for focus in ("one", "field", "two", "one"):
            app.screen.set_focus(app.screen.query_one(f"#{focus}"))
            await wait_for(pilot, lambda: app.focused is app.screen.query_one(f"#{focus}") and _follows_the_focus(app),
                           what=f"the footer for #{focus}")
            svg = await _settled_svg(pilot, app)
            seen.append((_keys(app), svg, tuple(id(k) for k in app.screen.query(FooterKey))))
    return seen


async def test_key_footer_shows_what_the_textual_footer_shows_and_rebuilds_only_on_a_change():
    ours, textual = await _steps(KeyFooter), await _steps(Footer)
    for (keys, svg, _), (t_keys, t_svg, _) in zip(ours, textual):
        assert keys == t_keys
        assert svg == t_svg
    assert ("q", "Quit", False, False, "") not in ours[1][0]            # hidden while the Input has the focus
    assert ("ctrl+s", "Save", True, False, "") in ours[1][0]              # and Save disabled
    assert ours[2][2] != ours[1][2]                                       # field -> two: keys changed, rebuilt
    assert ours[3][2] == ours[2][2]                                       # two -> one: the same keys, kept


class _Pane(FirstShowScreen):
    def compose(self):
        yield Static("text", id="text")
        yield Button("button")


class _Other(FirstShowScreen):
    def compose(self):
        yield Static("other")


class _Modes(App):
    CSS = ("Static { background: $primary; color: $text; } Button { background: $accent; } "
           ".wide Static { background: red; }")  # as ftwb's .compact / .roomy layouts
    MODES = {"pane": _Pane, "other": _Other}

    def on_mount(self) -> None:
        self.switch_mode("pane")


def _styles(screen) -> list:
    return [(type(n).__name__, n.rich_style, n.styles.background) for n in screen.walk_children(with_self=True)]


async def _restyled(app, pilot, screen) -> list:
    app.stylesheet.update_nodes(screen.walk_children(with_self=True), animate=False)
    await pilot.pause(0.05)
    return _styles(screen)


async def test_first_show_screen_has_the_styles_of_a_full_restyle_also_after_changes_in_the_background():
    app = _Modes()
    async with app.run_test(size=(40, 8)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, _Pane) and app.screen.query("#text"), what="pane")
        await pilot.pause(0.1)
        pane = app.screen
        assert _styles(pane) == await _restyled(app, pilot, pane)
        first = _styles(pane)
        for change in (lambda: app.add_class("wide"), lambda: setattr(app, "theme", "textual-light")):
            app.switch_mode("other")
            await pilot.pause(0.1)
            change()
            await pilot.pause(0.1)
            app.switch_mode("pane")
            assert app.screen is pane
            await wait_for(pilot, lambda: _styles(pane) != first, what="the change reaching the pane")
            await pilot.pause(0.2)  # the whole restyle, not its first node
            after = _styles(pane)
            assert after == await _restyled(app, pilot, pane)
            first = after
