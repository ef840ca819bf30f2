"""The offline demo: the bundled ticket dataset, its config, and the tiny local model.

`model.name_or_path: demo` and `data.path: demo` resolve here. The model is built from
the recipe in sample_data/demo_model.py (no hub) once per recipe version and cached:
$FTWB_CACHE_DIR/demo-model-<hash>, default ~/.cache/ftwb. The hash covers the recipe
file and the sample data bytes, so editing either builds a fresh model.

Cheap to import: torch and transformers load only inside ensure_demo_model().
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from engine.config import RunConfig, load

DEMO = "demo"
SAMPLE_DATA_DIR = Path(__file__).resolve().parent.parent / "sample_data"
RECIPE_PATH = SAMPLE_DATA_DIR / "demo_model.py"


def demo_dataset_path() -> Path:
    return SAMPLE_DATA_DIR / "tickets.jsonl"


def demo_messy_dataset_path() -> Path:
    return SAMPLE_DATA_DIR / "tickets_messy.jsonl"


def demo_preference_path() -> Path:
    return SAMPLE_DATA_DIR / "tickets_prefs.jsonl"


DEMO_CONFIGS = {"sft": "demo.yaml", "dpo": "demo_dpo.yaml"}


def demo_config_path(kind: str = "sft") -> Path:
    return SAMPLE_DATA_DIR / DEMO_CONFIGS[kind]


def demo_config(kind: str = "sft", cross_checks: bool = True) -> RunConfig:
    """The demo's config: `sft` (the tickets, chat SFT) or `dpo` (the preference pairs);
    cross_checks=False: engine.config.check is left to the caller."""
    cfg = load(demo_config_path(kind), cross_checks)
    p = Path(cfg.data.path)
    if cfg.data.path != DEMO and not p.is_absolute():  # bundled files are named relative to the repo
        cfg.data.path = str(SAMPLE_DATA_DIR.parent / p)
    return cfg


def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FTWB_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ftwb"


def recipe_hash() -> str:
    """Hash of the recipe file and the data it trains on: the cache key of the model."""
    h = hashlib.sha256()
    for p in (RECIPE_PATH, demo_dataset_path()):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def demo_model_dir(cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / f"demo-model-{recipe_hash()}"


def _load_recipe():
    # sample_data/ is data, not a package: load the recipe module from its file.
    spec = importlib.util.spec_from_file_location("ftwb_demo_model_recipe", RECIPE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_demo_model(cache_dir: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Return the demo model directory, building it first if this recipe has no cache yet.

    Safe to call from parallel processes: a file lock serialises builders, and the model
    is built in a temp directory and renamed into place, so a reader never sees half of it.
    """
    final = demo_model_dir(cache_dir)
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "config.json").exists():     # another process built it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            _load_recipe().build(tmp, demo_dataset_path(), log=log or (lambda msg: None))
            if final.exists():                   # a broken leftover without config.json
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def resolve_model_path(name_or_path: str, cache_dir: Path | None = None,
                       log: Callable[[str], None] | None = None) -> str:
    """`demo` -> the built demo model directory; anything else is returned unchanged."""
    return str(ensure_demo_model(cache_dir, log)) if name_or_path == DEMO else name_or_path


def resolve_data_path(path: str) -> str:
    """`demo` -> the bundled tickets.jsonl; anything else is returned unchanged."""
    return str(demo_dataset_path()) if path == DEMO else path
