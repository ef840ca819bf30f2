"""Ship a run: the adapter in PEFT format, or a merged full model, with a model card.

Everything is written into a temp directory beside the target and renamed into place; an
existing target is never overwritten unless `force` (then it is swapped out only after
the new export is complete). Each export is recorded in RUN_DIR/exports.json.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from engine import config as C
from engine import events as ev
from engine import rundir

EXPORTS = "exports.json"
EXPORT_DIR = "export"


class ExportError(ValueError):
    """An export that cannot be done; the message says why and what to do."""


def default_out_dir(run_dir: Path, merge: bool) -> Path:
    return Path(run_dir) / EXPORT_DIR / ("merged" if merge else "adapter")


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, merge: bool = False,
               force: bool = False, emit: Callable[..., Any] | None = None) -> Path:
    """Export RUN_DIR's adapter (or the merged model) into out_dir; returns the directory."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).exists():
        raise ExportError(f"{run_dir} is not a run directory (no {rundir.CONFIG}); see `ftwb runs`")
    try:
        cfg = C.load(run_dir / rundir.CONFIG)
    except C.ConfigError as e:
        raise ExportError(str(e)) from None
    adapter = run_dir / rundir.ADAPTER
    if not adapter.is_dir() or not any(adapter.glob("*.safetensors")):
        raise ExportError(f"{run_dir} has no trained adapter ({rundir.ADAPTER}/ is missing); "
                          "wait for the run to complete, or resume it with `ftwb train --resume RUN_DIR`")
    target = Path(out_dir) if out_dir else default_out_dir(run_dir, merge)
    target = target.expanduser().absolute()
    if target.exists() and not force:
        raise ExportError(f"{target} already exists; pass --force to replace it, or --out DIR for a new place")
    if target == adapter.absolute() or adapter.absolute() in target.parents:
        raise ExportError(f"{target} is inside the run's own adapter; pick another --out DIR")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create {target.parent}: {e.strerror}; pick another --out DIR") from None
    if emit:
        emit("phase", phase="exporting")
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if merge and cfg.method != "full":
            _write_merged(run_dir, cfg, tmp)
        else:
            # The adapter (or a full fine-tune's model) is already in its shipping format.
            shutil.copytree(adapter, tmp, ignore=shutil.ignore_patterns("README.md", ".*"))
        merged = merge or cfg.method == "full"
        (tmp / "README.md").write_text(model_card(run_dir, cfg, merged), encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _record(run_dir, target, merged)
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename tmp to target; an existing target (force) is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def merge_dtype(cfg: C.RunConfig, device: str):
    """Merge in the run's dtype; a QLoRA run merges into a bf16 base, never into 4-bit weights."""
    import torch

    from engine.train.model import pick_dtype

    if cfg.method == "qlora":
        return getattr(torch, cfg.quant.compute_dtype) if cfg.quant.compute_dtype != "float32" else torch.float32
    return pick_dtype(cfg, device)


def _write_merged(run_dir: Path, cfg: C.RunConfig, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.evaluate.generate import load_tokenizer
    from engine.train.model import ModelError, resolve_model_path

    device = "cpu"  # merging is a few matmuls per layer; CPU memory is where a full model fits
    path = resolve_model_path(cfg.model.name_or_path)
    try:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=merge_dtype(cfg, device),
                                                    trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise ModelError(f"cannot load the base model from {path}: {e}") from None
    model = PeftModel.from_pretrained(base, str(run_dir / rundir.ADAPTER)).merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(run_dir, cfg).save_pretrained(out)


def _record(run_dir: Path, target: Path, merged: bool) -> None:
    path = run_dir / EXPORTS
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            records = []
    except (FileNotFoundError, ValueError):
        records = []
    records.append({"path": str(target), "merged": merged, "time": round(time.time(), 3)})
    C.atomic_write_text(path, json.dumps(records, indent=1))


def read_exports(run_dir: str | Path) -> list[dict]:
    try:
        records = json.loads((Path(run_dir) / EXPORTS).read_text())
        return records if isinstance(records, list) else []
    except (FileNotFoundError, ValueError):
        return []


# ---------------------------------------------------------------- model card

def _read_json(path: Path) -> dict:
    try:
        v = json.loads(path.read_text())
        return v if isinstance(v, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def _done_summary(run_dir: Path) -> dict:
    done = {}
    for e in ev.read_all(run_dir / rundir.EVENTS):
        if e.get("type") == "done":
            done = e
    return done


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def _eval_sets_card(results: dict) -> list[str]:
    """Every eval set baseline -> fine-tuned, the regressions and the judge's verdict."""
    sets = results.get("sets") or {}
    lines: list[str] = []
    if len(sets) > 1:
        flagged = {(r.get("set"), r.get("metric")) for r in results.get("regressions") or []}
        lines += ["", "Every eval set (baseline = the base model, same template):", "",
                  "| eval set | scorer | metric | baseline | fine-tuned | |", "|---|---|---|---|---|---|"]
        for name, e in sets.items():
            base, tuned = e.get("base") or {}, e.get("tuned") or {}
            for k in [k for k in ("loss", "refusal_rate", "schema_valid", "regex_match", "contains", "exact_match",
                                  "json_valid", "field_accuracy", "rouge_l") if k in base or k in tuned]:
                mark = "regression" if (name, k) in flagged else ""
                lines.append(f"| {name} | {e.get('scorer', '')} | {k} | {_fmt(base.get(k))} | "
                             f"{_fmt(tuned.get(k))} | {mark} |")
    regs = results.get("regressions") or []
    if regs:
        lines += ["", f"Regressions beyond eval.regression_threshold {results.get('regression_threshold', '')}: "
                  + "; ".join(f"{r['set']} {r['metric']} {_fmt(r['base'])} -> {_fmt(r['tuned'])}" for r in regs) + "."]
    j = results.get("judge") or {}
    if j.get("skipped"):
        lines += ["", f"LLM judge: {j['skipped']}."]
    elif j:
        wr = j.get("win_rate")
        lines += ["", f"LLM judge ({j.get('model')}, {j.get('mode')}, {j.get('judged', 0)} samples): fine-tuned "
                  + (f"win rate {wr * 100:.0f}%" if isinstance(wr, (int, float)) else "no verdict")
                  + f"; verdicts: {j.get('verdicts')}."]
    return lines


def model_card(run_dir: Path, cfg: C.RunConfig, merged: bool) -> str:
    """README.md with the lineage: base model, dataset version, config, eval, training."""
    data = _read_json(run_dir / rundir.DATA)
    results = _read_json(run_dir / rundir.EVAL / "results.json")
    done = _done_summary(run_dir)
    what = "merged model (base + LoRA folded into the weights)" if merged and cfg.method != "full" else (
        "fully fine-tuned model" if cfg.method == "full" else "LoRA adapter (PEFT format)")
    base_note, base_path = "", cfg.model.name_or_path
    if cfg.model.name_or_path == "demo":
        from engine.demo import demo_model_dir

        base_path = str(demo_model_dir())  # "demo" means nothing to transformers
        base_note = f" (ftwb's bundled tiny model, built locally at `{base_path}`)"
    lines = [f"# {run_dir.name}", "", f"A {what}, trained with ftwb.", "", "## Lineage", "",
             f"- Base model: `{cfg.model.name_or_path}`{base_note}",
             f"- Method: {cfg.method}" + (f" (r={cfg.lora.r}, alpha={cfg.lora.alpha:g}, target modules: "
                                          f"{cfg.lora.target_modules})" if cfg.method != "full" else ""),
             f"- Dataset: `{data.get('source', cfg.data.path)}`",
             f"- Dataset version: {data.get('version') or 'original file'}",
             f"- Dataset content hash: `{data.get('content_hash', 'unknown')}`"]
    if data.get("splits"):
        lines.append("- Splits: " + ", ".join(f"{k} {v}" for k, v in data["splits"].items())
                     + f" (seed {data.get('split_seed', cfg.data.split_seed)})")
    lines.append(f"- Config hash: `{cfg.hash()}`")
    lines += ["", "## Training", ""]
    if done:
        s = done.get("summary") or {}
        lines.append(f"- Status: {done.get('status', '?')}")
        for key, label in (("steps", "Steps"), ("tokens_seen", "Tokens seen"), ("best_val_loss", "Best val loss"),
                           ("best_step", "Best step"), ("train_time_s", "Train time (s)")):
            if s.get(key) is not None:
                lines.append(f"- {label}: {_fmt(s[key])}")
    else:
        lines.append("- No `done` event in events.jsonl: the run's training summary is unknown.")
    lines += ["", "## Evaluation", ""]
    if results:
        lines.append(f"On the {results.get('split', '?')} split ({results.get('examples', '?')} examples, "
                     f"{results.get('generated', '?')} generated, greedy):")
        if results.get("note"):
            lines.append(f"Note: {results['note']}.")
        lines += ["", "| metric | base | fine-tuned |", "|---|---|---|"]
        base, tuned = results.get("base") or {}, results.get("tuned") or {}
        for k in ("loss", "perplexity", "exact_match", "json_valid", "field_accuracy", "rouge_l"):
            if k in base or k in tuned:
                lines.append(f"| {k} | {_fmt(base.get(k))} | {_fmt(tuned.get(k))} |")
        lines += _eval_sets_card(results)
    else:
        lines.append("Not evaluated yet (`ftwb eval RUN_DIR`).")
    lines += ["", "## Use", "", "```python"]
    if merged:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "model = AutoModelForCausalLM.from_pretrained(\"PATH\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")"]
    else:
        lines += ["from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f"base = AutoModelForCausalLM.from_pretrained(\"{base_path}\")",
                  "model = PeftModel.from_pretrained(base, \"PATH\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")  # carries the chat template trained with"]
    lines += ["```", "", "## Config", "", "```yaml", cfg.to_yaml().rstrip(), "```", ""]
    return "\n".join(lines)
