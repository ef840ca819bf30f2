"""Which dataset a config trains on, in words ("v2-1a2b3c4d of tickets_messy.jsonl"), and
the findings gate before a run starts from the TUI. Plain Python; the gate's scan runs
in a worker."""
from __future__ import annotations

from pathlib import Path


def dataset_label(path) -> str:
    """A saved version names itself and its source; anything else is its file name."""
    if not isinstance(path, str):
        return f"{len(path)} sources" if isinstance(path, list) else str(path)
    if path == "demo":
        return "demo (tickets.jsonl)"
    from engine.data.versions import read_manifest

    man = read_manifest(path)
    if man and man.get("version"):
        ops = len(man.get("operations") or [])
        return f"{man['version']} of {Path(str(man.get('source', ''))).name} ({ops} cleaning op(s))"
    return Path(path).name or path


def version_key(cfg) -> tuple:
    """Identifies one dataset version: the answer to the gate is asked once per key."""
    from engine.launch import resolve_paths

    path = resolve_paths(cfg.copy()).data.path
    if not isinstance(path, str):
        return ("sources", repr(path))
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return (path,)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def gate_report(cfg):
    """engine.data.gate's report for the config's dataset, or None when it cannot be read
    (the engine then reports that with its own message)."""
    from engine.data.errors import DataError
    from engine.data.gate import scan
    from engine.launch import resolve_paths

    path = resolve_paths(cfg.copy()).data.path
    if not isinstance(path, str) or not Path(path).expanduser().exists():
        return None
    try:
        return scan(path, cfg.data.format)
    except DataError:
        return None
