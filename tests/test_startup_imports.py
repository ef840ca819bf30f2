"""The start-up import list of the TUI must not grow: screens load on first use."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Modules `import tui.app` must not load; each is imported when its screen or service is first used.
NOT_AT_START = ("numpy", "tui.services.engine_client", "tui.screens.dialogs", "tui.screens.config",
                "tui.screens.data_workbench", "tui.screens.train", "tui.screens.runs",
                "tui.services.dataset_index", "pyarrow", "torch", "transformers", "peft", "datasets",
                "engine.rundir", "engine.events", "engine.data.sources", "engine.data.load", "engine.evaluate.sets")


def test_import_tui_app_loads_no_screen_or_heavy_library():
    code = ("import sys, tui.app; print(' '.join(m for m in %r if m in sys.modules))" % (NOT_AT_START,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"loaded at start-up: {out.strip()}"


def test_modes_build_their_screens_on_demand():
    from textual.screen import Screen

    from tui.app import FtwbApp

    for name, make in FtwbApp.MODES.items():
        assert isinstance(make(), Screen), name


# Modules the first frame of `ftwb` (the demo, on the Train screen) must not have loaded:
# the other screens import in a worker after it, numpy when a chart first has data, the
# run directory code when a run or the runs root is first used, the GPU sampler when it
# starts (after the first frame), the rank gauges for a run on several processes, the data
# and eval modules when the demo config's checks across fields run (in that worker).
NOT_AT_FIRST_FRAME = ("numpy", "tui.screens.dialogs", "tui.screens.config", "tui.screens.data_workbench",
                      "tui.screens.runs",
                      "tui.services.engine_client", "tui.services.dataset_index", "tui.services.run_history",
                      "pyarrow", "torch", "transformers", "datasets",
                      "engine.rundir", "engine.events", "tui.services.gpu_probe", "tui.widgets.rank_gauges",
                      # the demo config's checks across fields run after it (engine.config.check)
                      "engine.data", "engine.data.sources", "engine.data.load", "engine.evaluate.sets")

FIRST_FRAME = """
import sys
from pathlib import Path
import tui.app
from tui.app import FtwbApp
from tui.services.open_target import resolve

class FirstFrame(FtwbApp):
    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))  # resolved beside the class's file otherwise

    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self._painted)

    def _painted(self):
        # Only what the main thread loaded: the preload worker may have started by now.
        print("LOADED", " ".join(m for m in %r if m in self.loaded_at_paint), flush=True)
        self.exit()

    def _after_first_frame(self):
        self.loaded_at_paint = set(sys.modules)
        super()._after_first_frame()

FirstFrame(resolve(None), sample_devices=False).run(headless=True, size=(120, 40))
""" % (NOT_AT_FIRST_FRAME,)


def test_first_frame_of_the_train_screen_loads_no_other_screen_nor_numpy(tmp_path):
    script = tmp_path / "first_frame.py"
    script.write_text(FIRST_FRAME)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(root), "FTWB_RUNS_DIR": str(tmp_path / "runs")})
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("LOADED"))
    assert line.strip() == "LOADED", f"loaded before the first frame: {line[7:]}"


def test_cached_stylesheet_gives_the_rules_of_a_fresh_parse_across_theme_changes():
    from textual.css.stylesheet import Stylesheet

    from tui.stylesheet import CachedStylesheet

    sources = {f"w{i}": f"W{i} {{ color: $primary; background: $surface; }}\nW{i} > .x {{ width: {i}; }}"
               for i in range(80)}  # more sources than Textual's own 64-entry parse cache
    cached = CachedStylesheet(variables={"primary": "red", "surface": "black"})
    for name, css in list(sources.items())[:40]:
        cached.add_source(css, read_from=(name, ""))
    cached.parse()
    for name, css in list(sources.items())[40:]:
        cached.add_source(css, read_from=(name, ""))
    seen = []
    for variables in ({"primary": "red", "surface": "black"}, {"primary": "blue", "surface": "white"}):
        cached.set_variables(dict(variables))
        cached.reparse()
        fresh = Stylesheet(variables=dict(variables))
        for name, css in sources.items():
            fresh.add_source(css, read_from=(name, ""))
        fresh.parse()
        assert cached.css == fresh.css
        seen.append(cached.css)
    assert seen[0] != seen[1]  # the second theme's colours, not the first's from the cache


def test_config_checks_left_out_of_from_dict_are_the_ones_check_runs():
    from engine import config as C

    data = {"data": {"val_split": 0.5, "test_split": 0.45}}  # each in range, together too much
    with pytest.raises(C.ConfigError) as full:
        C.from_dict(data)
    cfg = C.from_dict(data, cross_checks=False)
    with pytest.raises(C.ConfigError) as later:
        C.check(cfg)
    assert str(later.value) == str(full.value)
    with pytest.raises(C.ConfigError):  # the schema itself is still checked
        C.from_dict({"data": {"val_split": 0.7}}, cross_checks=False)


async def test_demo_target_leaves_its_config_checks_to_the_app_which_reports_a_problem(tmp_path):
    from engine import config as C
    from pilot_helpers import wait_for
    from tui.app import FtwbApp
    from tui.services.open_target import Target, resolve

    demo = resolve(None)
    assert demo.checks_pending
    C.check(demo.config)  # the bundled config passes them

    cfg = C.from_dict({"data": {"val_split": 0.5, "test_split": 0.45}}, cross_checks=False)
    app = FtwbApp(Target(config=cfg, checks_pending=True), runs_dir=str(tmp_path / "runs"), sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any("leaves almost nothing" in n.message for n in app._notifications),
                       what="the demo config's problem notified")
        assert not app.target.checks_pending
        messages = [n.message for n in app._notifications]
    assert any(m.startswith("The demo config has a problem: data.val_split + data.test_split") for m in messages)


def test_stored_css_gives_the_rules_of_a_fresh_parse_and_follows_edits(tmp_path):
    from textual.css.stylesheet import Stylesheet

    from tui.stylesheet import CachedStylesheet

    variables = {"primary": "red", "surface": "black"}
    sources = {f"w{i}": f"W{i} {{ color: $primary; background: $surface; }}\nW{i} > .x {{ width: {i}; }}"
               for i in range(20)}

    def sheet(srcs, store=tmp_path, v=variables):
        s = CachedStylesheet(variables=dict(v), store=store)
        for name, css in srcs.items():
            s.add_source(css, read_from=(name, ""))
        s.parse()
        return s

    def fresh_css(srcs, v=variables):
        s = Stylesheet(variables=dict(v))
        for name, css in srcs.items():
            s.add_source(css, read_from=(name, ""))
        s.parse()
        return s.css

    first = sheet(sources)
    assert len(first._fresh) == len(sources)
    first.save()
    again = sheet(sources)
    assert again._fresh == {}                               # all read back, nothing parsed
    assert again.css == fresh_css(sources)
    edited = {**sources, "w3": "W3 { color: $surface; }"}
    changed = sheet(edited)
    assert [k[1] for k in changed._fresh] == [("w3", "")]  # only the edited source is parsed
    assert changed.css == fresh_css(edited)
    changed.save()
    assert sheet(edited)._fresh == {}
    stored = sheet(edited)._stored_rules()
    assert len(stored) == len(sources)                      # the old text of w3 was replaced, not kept
    other = {"primary": "blue", "surface": "white"}
    assert len(sheet(edited, v=other)._fresh) == len(sources)  # another theme: its own file
    for f in tmp_path.glob("css-*.pickle"):
        f.write_bytes(b"not a pickle")
    broken = sheet(edited)
    assert broken.css == fresh_css(edited) and len(broken._fresh) == len(sources)
    broken.save()
    assert sheet(edited)._fresh == {}
