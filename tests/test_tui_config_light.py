"""Using the Config screen (live estimate, row count, preset, import, auto-fit) must not
import torch, transformers, peft, bitsandbytes or datasets into the TUI process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets")

SCRIPT = r"""
import asyncio, sys
from tui.app import FtwbApp
from tui.services.open_target import resolve

async def main():
    t = resolve(None); t.mode = "config"
    app = FtwbApp(t, theme="ftwb-256", runs_dir=sys.argv[1], sample_devices=False)
    async with app.run_test(size=(80, 24)) as pilot:
        while getattr(app.screen, "_synced", None) is None:
            await pilot.pause(0.05)
        screen = app.screen
        await pilot.pause(0.6)
        assert screen.query_one("#memory-bar").view is not None, "no estimate"
        screen.apply_preset("qlora")
        screen.action_auto_fit()
        await pilot.pause(1.0)
        from engine.config_import import import_config
        screen.fill(import_config(sys.argv[2]).config)
        await pilot.pause(0.6)
    print("HEAVY", [m for m in %r if m in sys.modules])

asyncio.run(main())
""" % (HEAVY,)


def test_config_screen_work_imports_no_heavy_libraries(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"),
                          str(ROOT / "tests/fixtures/axolotl/llama-3-lora-1b.yml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    heavy = next(l for l in out.stdout.splitlines() if l.startswith("HEAVY"))
    assert heavy == "HEAVY []", heavy
