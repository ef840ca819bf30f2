"""The start-up import list of the TUI must not grow: screens load on first use."""
import subprocess
import sys

# Modules `import tui.app` must not load; each is imported when its screen or service is first used.
NOT_AT_START = ("numpy", "tui.services.engine_client", "tui.screens.config", "tui.screens.data_workbench", "tui.screens.train", "tui.screens.runs",
                "tui.services.dataset_index", "pyarrow", "torch", "transformers", "peft", "datasets")


def test_import_tui_app_loads_no_screen_or_heavy_library():
    code = ("import sys, tui.app; print(' '.join(m for m in %r if m in sys.modules))" % (NOT_AT_START,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"loaded at start-up: {out.strip()}"


def test_modes_build_their_screens_on_demand():
    from textual.screen import Screen

    from tui.app import FtwbApp

    for name, make in FtwbApp.MODES.items():
        assert isinstance(make(), Screen), name
