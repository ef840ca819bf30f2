"""Tokenise normalised examples with their loss masks, apply the length policy, and cache
the result on disk (Parquet) so a second run on the same data starts in seconds."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from engine.data.errors import RowError
from engine.data.template import IGNORE, TURN_POLICIES, plan_row, tokenize_plans

# Bump when the tokenised output for the same inputs changes, so old cache entries are not reused.
CODE_VERSION = "tok-2"
BATCH = 1000
STAT_KEYS = ("rows_in", "rows_out", "truncated", "dropped_overlong", "dropped_no_trainable",
             "truncated_cut_assistant", "tokens", "trainable_tokens", "examples", "rows_literal_specials",
             "rows_per_turn", "rows_no_eot")
MAX_LISTED = 100  # rows named per finding, so users can find them


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
              overlong: str, extra: str = "", turn_policy: str = "auto") -> str:
    """Keyed by the examples themselves (which fixes the dataset version, format and split),
    the tokenizer, its chat template and the length/masking settings."""
    h = hashlib.sha256()
    for part in (CODE_VERSION, extra, tokenizer_fingerprint(tokenizer), str(tokenizer.chat_template),
                 str(max_seq_len), overlong, train_on, turn_policy):
        h.update(part.encode() + b"\0")
    h.update(json.dumps([examples, rows], sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def tokenize_all(tokenizer, examples: list[dict], train_on: str, max_seq_len: int, overlong: str, *,
                 rows: list[int] | None = None, cache: bool | str | Path = True,
                 cache_extra: str = "", turn_policy: str = "auto") -> tuple[list[dict], dict]:
    """Items {"input_ids", "labels", "row"} and stats. `rows` are the source row indices of
    the examples (default 0..n-1); a row gives several items under turn_policy per_turn.
    `cache`: True = default dir, a path, or False = off."""
    if turn_policy not in TURN_POLICIES:
        raise ValueError(f"turn_policy {turn_policy!r}; expected one of {TURN_POLICIES}")
    rows = list(range(len(examples))) if rows is None else list(rows)
    path = None
    if cache:
        d = Path(cache) if not isinstance(cache, bool) else cache_dir()
        key = cache_key(tokenizer, examples, rows, train_on, max_seq_len, overlong, cache_extra, turn_policy)
        path = d / f"{key}.parquet"
        hit = _read_cache(path)
        if hit is not None:
            return hit
    items, stats = _tokenize(tokenizer, examples, rows, train_on, max_seq_len, overlong, turn_policy)
    stats["cache"] = "miss" if path else "off"
    if path is not None:
        _write_cache(path, items, stats)
    return items, stats


def _tokenize(tokenizer, examples, rows, train_on, max_seq_len, overlong, turn_policy="auto"):
    stats = {k: 0 for k in STAT_KEYS}
    stats["rows_in"] = len(examples)
    stats["dropped_template"] = 0  # the chat template refused the conversation
    stats["dropped_rows"] = []  # (row, reason) for the first few, so users can find them
    stats["literal_rows"] = []  # (row, strings): special-token text inside content, kept as text
    stats["note_rows"] = []  # (row, notes): lint flags of the row's examples
    items = []
    kept_rows: set[int] = set()

    def drop(row: int, reason: str) -> None:
        if len(stats["dropped_rows"]) < MAX_LISTED:
            stats["dropped_rows"].append({"row": row, "reason": reason})

    for start in range(0, len(examples), BATCH):
        chunk = examples[start:start + BATCH]
        plans, plan_rows = [], []
        for ex, row in zip(chunk, rows[start:start + BATCH]):
            try:
                row_plans = plan_row(tokenizer, ex, train_on, turn_policy)
            except RowError as e:
                stats["dropped_template"] += 1
                drop(row, str(e))
                continue
            plans += row_plans
            plan_rows += [row] * len(row_plans)
            _note(stats, row, row_plans)
        dropped_here: dict[int, str] = {}
        for tok, row in zip(tokenize_plans(tokenizer, plans), plan_rows):
            ids, labels = tok.input_ids, tok.labels
            if len(ids) > max_seq_len:
                if overlong == "drop":
                    stats["dropped_overlong"] += 1
                    dropped_here.setdefault(row, f"{len(ids)} tokens, longer than max_seq_len {max_seq_len}")
                    continue
                stats["truncated"] += 1
                if any(x != IGNORE for x in labels[max_seq_len:]):
                    stats["truncated_cut_assistant"] += 1
                ids, labels = ids[:max_seq_len], labels[:max_seq_len]
            # Position 0 is never a target (causal LMs predict token t from tokens < t).
            trained = sum(1 for x in labels[1:] if x != IGNORE)
            if trained == 0:
                stats["dropped_no_trainable"] += 1
                dropped_here.setdefault(row, "no trainable tokens after masking and truncation")
                continue
            item = {"input_ids": ids, "labels": labels, "row": row}
            if tok.plan.turn is not None:
                item["turn"] = tok.plan.turn
            items.append(item)
            kept_rows.add(row)
            stats["tokens"] += len(ids)
            stats["trainable_tokens"] += trained
        for row, reason in dropped_here.items():
            if row not in kept_rows:
                drop(row, reason)
    stats["examples"] = len(items)
    stats["rows_out"] = len(kept_rows)
    return items, stats


def _note(stats: dict, row: int, plans) -> None:
    literal = sorted({p.text[s:e] for p in plans for s, e in p.literal})
    if literal:
        stats["rows_literal_specials"] += 1
        if len(stats["literal_rows"]) < MAX_LISTED:
            stats["literal_rows"].append({"row": row, "strings": literal})
    notes = list(dict.fromkeys(n for p in plans for n in p.notes))
    if any(p.policy == "per_turn" for p in plans) and len(plans) > 1:
        stats["rows_per_turn"] += 1
    if any(n.startswith("end-of-turn not trained") for n in notes):
        stats["rows_no_eot"] += 1
    if notes and len(stats["note_rows"]) < MAX_LISTED:
        stats["note_rows"].append({"row": row, "notes": notes})


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
