"""The Config screen's baseline key: `ftwb eval --base` on the config being edited, as a
subprocess (the TUI never loads a model), and a one-line summary of what it printed."""
from __future__ import annotations

import tempfile
from pathlib import Path

from engine import config as C
from tui.services import run_actions as ra


async def run_baseline(cfg: C.RunConfig) -> tuple[bool, str, dict | None]:
    """(ok, one-line message, results) of the base model's scores on every eval set."""
    from engine.launch import resolve_paths

    with tempfile.TemporaryDirectory(prefix="ftwb-baseline-") as d:
        path = Path(d) / "config.yaml"
        C.save(resolve_paths(cfg), path)
        res = await ra.run_cli(ra.ftwb_argv("eval", "--base", str(path), "--json"))
    if res.rc != 0:
        return False, res.message.removeprefix("ftwb eval: "), None
    try:
        out = ra.parse_json(res.stdout)
    except ValueError:
        return False, "ftwb eval --base printed no results", None
    return True, summary(out), out


def summary(res: dict) -> str:
    """'baseline (stored): test valid JSON 0.00, loss 1.50 · regression loss 9.07 · ...'."""
    from engine.evaluate.evaluate import HEADLINE_KEYS  # the same headline metric per set as the Runs screen

    parts = []
    for name, e in (res.get("sets") or {}).items():
        base = e.get("base") or {}
        keys = [k for k in HEADLINE_KEYS if k in base][:1] + (["loss"] if "loss" in base else [])
        bits = [f"{k.replace('_', ' ')} {base[k]:.2f}" for k in dict.fromkeys(keys)]
        prompted = (e.get("prompted") or {})
        if keys and keys[0] in prompted:
            bits.append(f"prompt-only {prompted[keys[0]]:.2f}")
        parts.append(f"{name} " + ", ".join(bits))
    b = res.get("baseline") or {}
    return f"baseline ({'reused' if b.get('reused') else 'stored'}): " + " · ".join(parts)
