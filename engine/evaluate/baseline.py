"""The base model's scores, stored once per (model, template, eval settings, data version).

`ftwb eval --base CONFIG` computes them before any run exists; the end-of-run evaluation
of every later run with the same key reads them instead of recomputing, and stores them
when there are none yet. Stored under the runs root as `.baselines/<key>.json` (written
atomically; a baseline is never edited, a new key gets a new file).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from engine import config as C

STORE_ENV = "FTWB_BASELINES_DIR"
KEY_VERSION = "baseline-1"


def model_fingerprint(name_or_path: str) -> str:
    """What identifies the base weights: a local directory's config and weight files (name,
    size, mtime), the demo model's recipe-hashed directory, or a hub id's name."""
    from engine.train.model import resolve_model_path

    try:
        path = Path(resolve_model_path(name_or_path))
    except Exception:  # noqa: BLE001 - an unresolvable name is fingerprinted by its text
        return f"name:{name_or_path}"
    if not path.is_dir():
        return f"name:{name_or_path}"
    h = hashlib.sha256(str(path.resolve()).encode())
    cfg = path / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def baseline_key(cfg: C.RunConfig, data_hash: str | None, set_hashes: dict[str, str | None]) -> str:
    """Everything the base side's numbers depend on, hashed."""
    d, ev = cfg.data, cfg.eval
    parts: dict[str, Any] = {
        "v": KEY_VERSION, "model": cfg.model.name_or_path, "weights": model_fingerprint(cfg.model.name_or_path),
        "template": cfg.model.chat_template, "dtype": cfg.model.dtype,
        "quant": dict(cfg.to_dict()["quant"]) if cfg.method == "qlora" else None,
        "data": data_hash, "split": [d.format, d.val_split, d.test_split, d.split_seed],
        "tokens": [d.max_seq_len, d.overlong, d.train_on],
        "eval": [ev.sets, ev.max_new_tokens, ev.max_samples, ev.system_prompt, ev.few_shot],
        "set_files": set_hashes,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def store_dir() -> Path:
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser()
    base = os.environ.get("FTWB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ftwb") / "baselines"


def path_of(key: str) -> Path:
    return store_dir() / f"{key}.json"


def read(key: str) -> dict | None:
    try:
        v = json.loads(path_of(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return v if isinstance(v, dict) and v.get("key") == key else None


def write(key: str, record: dict) -> Path:
    path = path_of(key)
    C.atomic_write_text(path, json.dumps({**record, "key": key, "created": round(time.time(), 3)},
                                         indent=1, ensure_ascii=False))
    return path


def covers(record: dict | None, names: list[str], prompted: bool) -> bool:
    """The stored baseline has the base side (and the prompt-only side if wanted) of every set."""
    if not record:
        return False
    sets = record.get("sets") or {}
    return all(n in sets and "base" in sets[n] and (not prompted or "prompted" in sets[n]) for n in names)
