"""Config by keyboard: visible focus in every theme, keys that type while a field has the
focus, dialogs that focus their first field, the form following the focus, the one-line
estimate at 80x24, and a header that always names where the form came from."""
from __future__ import annotations

import pytest

from engine.demo import demo_config
from pilot_helpers import wait_for


def _app(tmp_path, theme="ftwb-256", config_path=None):
    from tui.app import FtwbApp
    from tui.services.open_target import Target

    cfg = demo_config()
    return FtwbApp(Target(config=cfg, config_path=config_path, mode="config"), theme=theme,
                   runs_dir=str(tmp_path / "runs"), sample_devices=False)


def _footer_keys(app) -> set[str]:
    from textual.widgets._footer import FooterKey

    return {k.key for k in app.screen.query(FooterKey)}


@pytest.mark.parametrize("theme", ["ftwb-256", "ftwb-dark", "ftwb-light"])
async def test_focused_field_is_visible_and_q_types_into_it(tmp_path, theme):
    from textual.widgets import Input, Label

    app = _app(tmp_path, theme)
    async with app.run_test(size=(120, 40)) as pilot:
        # The footer rebuilds after the first frame; on a loaded machine that takes a while.
        await wait_for(pilot, lambda: "q" in _footer_keys(app), what="q in the footer")
        await pilot.press("tab")
        await wait_for(pilot, lambda: isinstance(app.focused, Input) and app.focused.id.startswith("cfg-"),
                       what="a form field focused")
        field = app.focused
        row = next(a for a in field.ancestors if a.has_class("field-row"))
        label = row.query_one(".field-label", Label)
        await wait_for(pilot, lambda: "reverse" in str(label.styles.text_style), what="the focused row's label reversed")
        assert field.styles.background != app.screen.query_one("#config-form").styles.background
        before = field.value
        await pilot.press("end", "q", "1")
        await wait_for(pilot, lambda: field.value == before + "q1", what="q1 typed")
        assert app.is_running and app.screen.__class__.__name__ == "ConfigScreen"
        # the footer no longer offers it
        await wait_for(pilot, lambda: "q" not in _footer_keys(app), what="q gone from the footer")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "q" in _footer_keys(app), what="q back in the footer")


async def test_dialogs_focus_their_field_and_the_form_follows_the_focus(tmp_path):
    from textual.widgets import Input

    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfigScreen"
                       and getattr(app.screen, "_synced", None) is not None, what="the config screen")
        await pilot.pause(0.2)  # the editors' own mount-time messages
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ImportDialog", what="the import dialog")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "import-path",
                       what="the path field focused")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfigScreen", what="back on the form")
        form = app.screen.query_one("#config-form")
        last = app.screen.query_one("#cfg-output--name", Input)
        last.focus()
        await wait_for(pilot, lambda: form.scroll_y > 0 and form.region.contains_region(last.region),
                       what="the form scrolled to the last field")


async def test_estimate_is_one_line_at_80x24_and_opens_on_demand(tmp_path):
    from tui.widgets.config.memory_bar import MemoryBar

    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one(MemoryBar).view is not None, 60, "the estimate")
        side = screen.query_one("#config-side")
        await wait_for(pilot, lambda: "ctrl+e" in screen.query_one(MemoryBar).render().plain, what="the one-line estimate")
        await pilot.pause(0.3)  # the layout after the estimate arrived
        assert side.size.height == 1
        assert screen.query_one("#config-form").size.height >= 12
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: side.size.height > 3, what="the estimate opened")


async def test_header_names_the_source_and_saving_elsewhere_asks(tmp_path):
    from textual.widgets import Input

    from tui.widgets.config.confirm_dialog import ConfirmDialog

    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfigScreen", what="the config screen")
        await wait_for(pilot, lambda: "bundled demo config" in str(app.screen.query_one("#config-title").render()),
                       what="the title naming the demo config")
        out = tmp_path / "mine.yaml"
        app.screen.query_one("#config-file", Input).value = str(out)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the save-elsewhere question")
        assert "bundled demo config" in app.screen.question
        await pilot.press("enter")
        await wait_for(pilot, lambda: out.exists() and app.config_path == out, what="the saved file")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfigScreen"
                       and str(out) in str(app.screen.query_one("#config-title").render()), what="the title naming it")


async def test_screenshot_without_a_downloads_folder_lands_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))   # no ~/Downloads there
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(tmp_path / "home" / "Downloads"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        app.deliver_screenshot()
        await wait_for(pilot, lambda: any(work.glob("*.svg")), what="the screenshot file")
        await wait_for(pilot, lambda: any("Saved screenshot" in n.message for n in app._notifications),
                       what="the saved-screenshot toast")
        assert not any("Failed" in n.message for n in app._notifications)
