"""Tokenise normalised examples with their loss masks, apply the length policy, and cache
the result on disk (Parquet) so a second run on the same data starts in seconds."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from engine.data.errors import RowError
from engine.data.template import IGNORE, plan_example, tokenize_planned

# Bump when the tokenised output for the same inputs changes, so old cache entries are not reused.
CODE_VERSION = "tok-1"
BATCH = 1000
STAT_KEYS = ("rows_in", "rows_out", "truncated", "dropped_overlong", "dropped_no_trainable",
             "truncated_cut_assistant", "tokens", "trainable_tokens")


def cache_dir() -> Path:
    base = os.environ.get("FTWB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ftwb") / "tokenized"


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    h.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    h.update(str(len(tokenizer)).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return h.hexdigest()


def cache_key(tokenizer, examples: list[dict], rows: list[int], train_on: str, max_seq_len: int,
              overlong: str, extra: str = "") -> str:
    """Keyed by the examples themselves (which fixes the dataset version, format and split),
    the tokenizer, its chat template and the length/masking settings."""
    h = hashlib.sha256()
    for part in (CODE_VERSION, extra, tokenizer_fingerprint(tokenizer), str(tokenizer.chat_template),
                 str(max_seq_len), overlong, train_on):
        h.update(part.encode() + b"\0")
    h.update(json.dumps([examples, rows], sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def tokenize_all(tokenizer, examples: list[dict], train_on: str, max_seq_len: int, overlong: str, *,
                 rows: list[int] | None = None, cache: bool | str | Path = True,
                 cache_extra: str = "") -> tuple[list[dict], dict]:
    """Items {"input_ids", "labels", "row"} and stats. `rows` are the source row indices of
    the examples (default 0..n-1). `cache`: True = default dir, a path, or False = off."""
    rows = list(range(len(examples))) if rows is None else list(rows)
    path = None
    if cache:
        d = Path(cache) if not isinstance(cache, bool) else cache_dir()
        key = cache_key(tokenizer, examples, rows, train_on, max_seq_len, overlong, cache_extra)
        path = d / f"{key}.parquet"
        hit = _read_cache(path)
        if hit is not None:
            return hit
    items, stats = _tokenize(tokenizer, examples, rows, train_on, max_seq_len, overlong)
    stats["cache"] = "miss" if path else "off"
    if path is not None:
        _write_cache(path, items, stats)
    return items, stats


def _tokenize(tokenizer, examples, rows, train_on, max_seq_len, overlong):
    stats = {k: 0 for k in STAT_KEYS}
    stats["rows_in"] = len(examples)
    stats["dropped_template"] = 0  # the chat template refused the conversation
    stats["dropped_rows"] = []  # (row, reason) for the first few, so users can find them
    items = []

    def drop(row: int, reason: str) -> None:
        if len(stats["dropped_rows"]) < 100:
            stats["dropped_rows"].append({"row": row, "reason": reason})

    for start in range(0, len(examples), BATCH):
        chunk = examples[start:start + BATCH]
        plans, plan_rows = [], []
        for ex, row in zip(chunk, rows[start:start + BATCH]):
            try:
                plans.append(plan_example(tokenizer, ex, train_on))
                plan_rows.append(row)
            except RowError as e:
                stats["dropped_template"] += 1
                drop(row, str(e))
        for (ids, labels), row in zip(tokenize_planned(tokenizer, plans), plan_rows):
            if len(ids) > max_seq_len:
                if overlong == "drop":
                    stats["dropped_overlong"] += 1
                    drop(row, f"{len(ids)} tokens, longer than max_seq_len {max_seq_len}")
                    continue
                stats["truncated"] += 1
                if any(x != IGNORE for x in labels[max_seq_len:]):
                    stats["truncated_cut_assistant"] += 1
                ids, labels = ids[:max_seq_len], labels[:max_seq_len]
            # Position 0 is never a target (causal LMs predict token t from tokens < t).
            trained = sum(1 for x in labels[1:] if x != IGNORE)
            if trained == 0:
                stats["dropped_no_trainable"] += 1
                drop(row, "no trainable tokens after masking and truncation")
                continue
            items.append({"input_ids": ids, "labels": labels, "row": row})
            stats["tokens"] += len(ids)
            stats["trainable_tokens"] += trained
    stats["rows_out"] = len(items)
    return items, stats


# ---------------------------------------------------------------- cache

def _read_cache(path: Path):
    if not path.exists():
        return None
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        stats = json.loads(table.schema.metadata[b"ftwb_stats"])
        ids = table.column("input_ids").to_pylist()
        labels = table.column("labels").to_pylist()
        rows = table.column("row").to_pylist()
    except Exception:  # a damaged entry is simply rebuilt
        return None
    stats["cache"] = "hit"
    return [{"input_ids": a, "labels": b, "row": r} for a, b, r in zip(ids, labels, rows)], stats


def _write_cache(path: Path, items: list[dict], stats: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "input_ids": pa.array([it["input_ids"] for it in items], type=pa.list_(pa.int32())),
        "labels": pa.array([it["labels"] for it in items], type=pa.list_(pa.int32())),
        "row": pa.array([it["row"] for it in items], type=pa.int64()),
    })
    table = table.replace_schema_metadata({"ftwb_stats": json.dumps({k: v for k, v in stats.items()
                                                                      if k != "cache"})})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only or full cache dir costs speed next time, never the run
