"""Using the Config screen (live estimate, row count, preset, import, auto-fit) must not
import torch, transformers, peft, bitsandbytes or datasets into the TUI process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets")

# Each step waits for its own result (a new estimate, the workers done), so the imports
# are checked after the work really ran, however slow the machine.
SCRIPT = r"""
import asyncio, sys
sys.path.insert(0, %r)
from pilot_helpers import wait_for
from tui.app import FtwbApp
from tui.services.open_target import resolve

async def main():
    t = resolve(None); t.mode = "config"
    app = FtwbApp(t, theme="ftwb-256", runs_dir=sys.argv[1], sample_devices=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "_synced", None) is not None, 60, "the config screen")
        screen = app.screen
        bar = screen.query_one("#memory-bar")
        await wait_for(pilot, lambda: bar.view is not None, 60, "the estimate")
        before = bar.view
        screen.apply_preset("qlora")
        await wait_for(pilot, lambda: bar.view is not before, 60, "the QLoRA estimate")
        screen.action_auto_fit()
        await app.workers.wait_for_complete()
        from engine.config_import import import_config
        before = bar.view
        screen.fill(import_config(sys.argv[2]).config)
        await wait_for(pilot, lambda: bar.view is not before, 60, "the imported config's estimate")
        await app.workers.wait_for_complete()
    print("HEAVY", [m for m in %r if m in sys.modules])

asyncio.run(main())
""" % (str(ROOT / "tests"), HEAVY)


def test_config_screen_work_imports_no_heavy_libraries(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"),
                          str(ROOT / "tests/fixtures/axolotl/llama-3-lora-1b.yml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    heavy = next(l for l in out.stdout.splitlines() if l.startswith("HEAVY"))
    assert heavy == "HEAVY []", heavy
