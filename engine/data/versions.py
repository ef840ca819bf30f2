"""Cleaning that loses nothing: an op log over the loaded rows, undo/redo, and saved
versions with a manifest. The source file is only ever read.

A version is `<source dir>/.ftwb-versions/<stem>/v<N>-<hash8>.jsonl` plus
`<that>.manifest.json`; the engine's data.json copies "version" and "operations" from it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.data.errors import DataError

VERSIONS_DIR = ".ftwb-versions"
_NAME_RX = re.compile(r"^v(\d+)-([0-9a-f]{8})\.jsonl$")


@dataclass
class VersionInfo:
    version: str
    path: Path
    manifest_path: Path
    rows_in: int
    rows_out: int
    operations: list[dict]
    created: str
    source_hash: str
    result_hash: str
    left_out: list[dict] | None = None  # unreadable records of the source, never written


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_path(path: str) -> list[str | int]:
    """'messages[2].content' -> ['messages', 2, 'content']."""
    out: list[str | int] = []
    for part in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", path):
        out.append(int(part.group(2)) if part.group(2) is not None else part.group(1))
    if not out:
        raise DataError(f"bad field path {path!r}; use e.g. messages[1].content")
    return out


def set_field(row: Any, path: str, value: Any) -> Any:
    keys = _parse_path(path)
    node = row
    for k in keys[:-1]:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            raise DataError(f"field {path!r} not found in the row") from None
    try:
        node[keys[-1]] = value
    except (IndexError, TypeError):
        raise DataError(f"field {path!r} cannot be set in this row") from None
    return row


class Session:
    """Rows of one source plus the ordered operations applied to them.

    Deleted rows stay in memory (marked, not removed) so restore and undo are exact;
    `rows` gives the current view. Each op records only what is needed to replay it."""

    def __init__(self, source_path: str | Path, fmt: str | None = None):
        from engine.data.detect import detect_format
        from engine.data.load import load_rows

        self.source = Path(source_path).expanduser().resolve()
        res = load_rows(self.source)
        self.original: list[dict] = res.rows
        self.lines = res.lines
        self.problems = res.problems
        self.fmt = fmt or (detect_format(res.rows)[0] if res.rows else "chat")
        self.source_hash = _sha256_file(self.source) if self.source.is_file() else ""
        self.ops: list[dict] = []
        self._redo: list[dict] = []
        self._replay()

    # ------------------------------------------------------------ state
    def _replay(self) -> None:
        self._rows = [copy.deepcopy(r) for r in self.original]
        self._alive = [True] * len(self._rows)
        for op in self.ops:
            self._apply(op)

    def _apply(self, op: dict) -> None:
        kind = op["op"]
        if kind in ("delete_rows", "drop_exact_duplicates", "drop_failing"):
            for i in op["rows"]:
                self._alive[i] = False
        elif kind == "restore_rows":
            for i in op["rows"]:
                self._alive[i] = True
        elif kind == "edit_field":
            set_field(self._rows[op["row"]], op["path"], copy.deepcopy(op["value"]))
        elif kind == "redact_pii":
            from engine.data.pii import redact

            for i in op["rows"]:
                self._rows[i] = _redact_row(self._rows[i], redact)

    def _push(self, op: dict) -> dict:
        """Apply and log `op`; an op that touches no row is returned but never logged."""
        if ("rows" in op and not op["rows"]) or ("lines" in op and not op["lines"]):
            return op
        # Row identity in the manifest: `rows` are 0-based indices of the parsed rows,
        # `lines` the 1-based lines of the source file (None where the source has none).
        if "rows" in op:
            op["lines"] = [self.lines[i] if i < len(self.lines) else None for i in op["rows"]]
        elif "row" in op:
            op["line"] = self.lines[op["row"]] if op["row"] < len(self.lines) else None
        self._apply(op)
        self.ops.append(op)
        self._redo.clear()
        return op

    # ------------------------------------------------------------ unreadable lines
    @property
    def unreadable_deleted(self) -> set[int]:
        """Source lines of unreadable records the user deleted (they are never saved anyway)."""
        out: set[int] = set()
        for op in self.ops:
            if op["op"] == "delete_unreadable":
                out.update(op["lines"])
            elif op["op"] == "restore_unreadable":
                out.difference_update(op["lines"])
        return out

    def delete_unreadable(self, lines) -> dict:
        known = {p.line for p in self.problems}
        ids = sorted(int(n) for n in lines if int(n) in known and int(n) not in self.unreadable_deleted)
        return self._push({"op": "delete_unreadable", "lines": ids})

    def restore_unreadable(self, lines) -> dict:
        ids = sorted(int(n) for n in lines if int(n) in self.unreadable_deleted)
        if not ids:
            return {"op": "restore_unreadable", "lines": []}
        op = {"op": "restore_unreadable", "lines": ids}
        self.ops.append(op)
        self._redo.clear()
        return op

    @property
    def rows(self) -> list[dict]:
        return [r for r, alive in zip(self._rows, self._alive) if alive]

    @property
    def row_ids(self) -> list[int]:
        """Original row index of each current row."""
        return [i for i, alive in enumerate(self._alive) if alive]

    def _check_ids(self, idxs) -> list[int]:
        ids = sorted({int(i) for i in idxs})
        bad = [i for i in ids if not 0 <= i < len(self._rows)]
        if bad:
            raise DataError(f"row {bad[0]} does not exist (the source has {len(self._rows)} rows)")
        return ids

    # ------------------------------------------------------------ operations (original row indices)
    def delete_rows(self, idxs) -> dict:
        ids = [i for i in self._check_ids(idxs) if self._alive[i]]
        return self._push({"op": "delete_rows", "rows": ids})

    def restore_rows(self, idxs) -> dict:
        ids = [i for i in self._check_ids(idxs) if not self._alive[i]]
        return self._push({"op": "restore_rows", "rows": ids})

    def edit_field(self, row: int, json_path: str, value: Any) -> dict:
        self._check_ids([row])
        set_field(copy.deepcopy(self._rows[row]), json_path, value)  # fails before logging if bad
        return self._push({"op": "edit_field", "row": int(row), "path": json_path, "value": value})

    def drop_exact_duplicates(self) -> dict:
        from engine.data.checks_chat import row_text
        from engine.data.dedup import find_duplicates

        ids = self.row_ids
        res = find_duplicates([row_text(self._rows[i], self.fmt) for i in ids], near=False)
        drop = sorted(ids[j] for g in res.exact_groups for j in g[1:])
        return self._push({"op": "drop_exact_duplicates", "rows": drop})

    def redact_pii(self, rows=None) -> dict:
        """Redact the given (default: all live) rows; the op lists only rows it changes."""
        from engine.data.pii import redact

        ids = self.row_ids if rows is None else self._check_ids(rows)
        ids = [i for i in ids if _redact_row(self._rows[i], redact) != self._rows[i]]
        return self._push({"op": "redact_pii", "rows": ids})

    def drop_failing(self, check_id: str, **check_kw: Any) -> dict:
        from engine.data.checks import CHECKS, run_checks

        if check_id not in CHECKS:
            raise DataError(f"unknown check {check_id!r}; known: {', '.join(CHECKS)}")
        ids = self.row_ids
        found = run_checks([self._rows[i] for i in ids], None, self.fmt, only={check_id}, **check_kw)
        drop = sorted({ids[f.row] for f in found if 0 <= f.row < len(ids)})
        return self._push({"op": "drop_failing", "check": check_id, "rows": drop})

    def undo(self) -> dict | None:
        if not self.ops:
            return None
        op = self.ops.pop()
        self._redo.append(op)
        self._replay()
        return op

    def redo(self) -> dict | None:
        if not self._redo:
            return None
        op = self._redo.pop()
        self._apply(op)
        self.ops.append(op)
        return op


def _redact_row(value: Any, redact) -> Any:
    if isinstance(value, str):
        return redact(value)[0]
    if isinstance(value, dict):
        return {k: _redact_row(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_row(v, redact) for v in value]
    return value


def versions_dir(source_path: str | Path) -> Path:
    p = Path(source_path).expanduser().resolve()
    return p.parent / VERSIONS_DIR / p.stem


def _atomic_write_exclusive(path: Path, data: bytes) -> None:
    """Write via a temp file, then link it into place: fails if `path` already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # atomic and exclusive: never replaces an existing version
    finally:
        os.unlink(tmp)


def save_version(session: Session, out_dir: str | Path | None = None) -> VersionInfo:
    rows = session.rows
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    result_hash = hashlib.sha256(body).hexdigest()
    folder = Path(out_dir) if out_dir is not None else versions_dir(session.source)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(m.group(1)) for f in folder.iterdir() if (m := _NAME_RX.match(f.name))), default=0)
    while True:
        version = f"v{n}-{result_hash[:8]}"
        path = folder / f"{version}.jsonl"
        try:
            _atomic_write_exclusive(path, body)
            break
        except FileExistsError:  # another save took this number first
            n += 1
    deleted = session.unreadable_deleted
    left_out = [{"line": p.line, "row": p.row, "reason": p.message, "deleted": p.line in deleted}
                for p in session.problems]
    manifest = {
        "version": version, "source": str(session.source), "source_hash": session.source_hash,
        "format": session.fmt, "operations": session.ops, "result_hash": result_hash,
        "rows_in": len(session.original), "rows_out": len(rows),
        "row_numbering": "rows: 0-based index of the parsed rows (unreadable records not counted); "
                         "lines: 1-based line of the source file",
        "unreadable_left_out": left_out,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    mpath = path.with_name(path.name + ".manifest.json")
    _atomic_write_exclusive(mpath, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return _info(path, mpath, manifest)


def _info(path: Path, mpath: Path, m: dict) -> VersionInfo:
    return VersionInfo(version=m["version"], path=path, manifest_path=mpath, rows_in=m["rows_in"],
                       rows_out=m["rows_out"], operations=m["operations"], created=m["created"],
                       source_hash=m["source_hash"], result_hash=m["result_hash"],
                       left_out=m.get("unreadable_left_out") or [])


def read_manifest(version_path: str | Path) -> dict | None:
    """The manifest next to a saved version (None for a file that is not one)."""
    mpath = Path(str(version_path) + ".manifest.json")
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_versions(source_path: str | Path) -> list[VersionInfo]:
    """Saved versions of a source, oldest first (unreadable manifests are skipped)."""
    folder = versions_dir(source_path)
    if not folder.is_dir():
        return []
    out = []
    for f in folder.iterdir():
        m = _NAME_RX.match(f.name)
        if not m:
            continue
        man = read_manifest(f)
        if man is None:
            continue
        try:
            out.append((int(m.group(1)), _info(f, Path(str(f) + ".manifest.json"), man)))
        except KeyError:
            continue
    return [v for _, v in sorted(out, key=lambda t: t[0])]
