"""Loss of every training and validation example after training, worst first.

Written to RUN_DIR/eval/per_sample.jsonl as {"split", "row", "line", "loss", "tokens"}:
"row" is the 0-based row of the loaded dataset (what the Data screen opens), "line" the
1-based line in the source file where the source has lines (else null).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine import config as C
from engine import rundir

PER_SAMPLE = "per_sample.jsonl"
PREVIEW_CHARS = 80


def per_sample_losses(run_dir: str | Path, *, model=None, tokenizer=None, splits=("train", "val"),
                      prepared=None) -> Path:
    from engine.evaluate.generate import check_run_dir, load_for_inference
    from engine.evaluate.losses import example_losses

    run_dir = Path(run_dir)
    cfg = check_run_dir(run_dir, need_adapter=model is None)
    if model is None:
        model, tokenizer, cfg = load_for_inference(run_dir, cfg)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        if prepared is None:
            from engine.data.prepare import prepare

            prepared = prepare(cfg, tokenizer, emit=None)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        lines = source_lines(cfg)
        records: list[dict[str, Any]] = []
        for split in splits:
            items = list(getattr(prepared, split, None) or [])
            for item, (total, n) in zip(items, example_losses(model, items, "tuned", pad_id=pad)):
                row = int(item["row"])
                records.append({"split": split, "row": row,
                                "line": lines[row] if lines is not None and 0 <= row < len(lines) else None,
                                "loss": round(total / n, 6) if n else None, "tokens": n})
    finally:
        if was_training:
            model.train()
    records.sort(key=lambda r: (r["loss"] is None, -(r["loss"] or 0.0)))
    path = run_dir / rundir.EVAL / PER_SAMPLE
    C.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return path


def source_lines(cfg: C.RunConfig) -> list[int | None] | None:
    """1-based source line of each loaded row, or None when the source cannot be read."""
    rows = _load(cfg)
    return None if rows is None else list(rows.lines)


def _load(cfg: C.RunConfig):
    from engine.data.sources import load_examples

    try:
        return load_examples(cfg.data, seed=cfg.data.split_seed)  # .lines: by the rows training numbered
    except Exception:  # noqa: BLE001 - a moved dataset only loses the line numbers
        return None


def read_per_sample(run_dir: str | Path) -> list[dict] | None:
    path = Path(run_dir) / rundir.EVAL / PER_SAMPLE
    if not path.exists():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worst(run_dir: str | Path, n: int) -> list[dict]:
    """The n highest-loss examples with a preview of each (computing the losses if needed)."""
    run_dir = Path(run_dir)
    records = read_per_sample(run_dir)
    if records is None:
        per_sample_losses(run_dir)
        records = read_per_sample(run_dir) or []
    top = records[:n]
    mixed = _load(C.load(run_dir / rundir.CONFIG))
    # rows are global row ids; the preview reads the normalised example of each
    by_row = dict(zip(mixed.rows, mixed.examples)) if mixed is not None else {}
    for r in top:
        ex = by_row.get(r["row"])
        r["preview"] = preview(ex) if ex is not None else ""
    return top


def preview(row: Any, n: int = PREVIEW_CHARS) -> str:
    """The first n characters of what the example says: its first user turn or prompt text."""
    text = _first_text(row)
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _first_text(row: Any) -> str:
    if isinstance(row, dict):
        for key in ("messages", "conversations"):
            turns = row.get(key)
            if isinstance(turns, list):
                for t in turns:
                    if isinstance(t, dict) and (t.get("role") or t.get("from")) in ("user", "human"):
                        return str(t.get("content") or t.get("value") or "")
        for key in ("instruction", "prompt", "question", "input", "text"):
            if isinstance(row.get(key), str) and row[key].strip():
                return row[key]
    return json.dumps(row, ensure_ascii=False, default=str)
