"""LLaMA-Factory `dataset_info.json`: one entry -> one ftwb source (path, format, mapping).

`data.path` may be the file (`data/dataset_info.json`, when it holds one dataset),
`data/dataset_info.json#name`, or `data/name` where `data/dataset_info.json` has `name`.
The entry's `formatting` (alpaca | sharegpt), `columns`, `tags`, `ranking`, `split` and
`num_samples` become ftwb's format, `columns`/`roles` mapping, split and row cap, as
LLaMA-Factory's data/README describes them (with its defaults for what an entry leaves out).
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.data.errors import DataError

INFO = "dataset_info.json"
# LLaMA-Factory's default column names and sharegpt tags.
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
_SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                  "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
_TAG_ROLE = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
             "function_tag": "function_call", "system_tag": "system"}
# LLaMA-Factory column -> ftwb name, per formatting.
_ALPACA_TO_FTWB = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                   "system": "system", "tools": "tools", "chosen": "chosen", "rejected": "rejected",
                   "kto_tag": "label", "images": "images", "videos": "videos", "audios": "audios"}
_SHAREGPT_TO_FTWB = {"messages": "messages", "system": "system", "tools": "tools", "chosen": "chosen",
                     "rejected": "rejected", "kto_tag": "label", "images": "images", "videos": "videos",
                     "audios": "audios"}
_UNSUPPORTED_SOURCES = ("ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


def reference(spec: str) -> tuple[Path, str | None] | None:
    """(dataset_info.json path, entry name or None) when `spec` points into one, else None."""
    if not isinstance(spec, str):
        return None
    base, _, name = spec.partition("#")
    p = Path(base).expanduser()
    if p.name == INFO and p.is_file():
        return p, name or None
    if not name and not p.exists() and (p.parent / INFO).is_file():
        try:
            if p.name in _entries(p.parent / INFO):
                return p.parent / INFO, p.name
        except DataError:
            return None
    return None


def _entries(info: Path) -> dict:
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{info}: cannot read this dataset_info.json ({type(e).__name__}: {str(e)[:120]}); "
                        "fix the file") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(f"{info}: a dataset_info.json maps dataset names to objects; this one does not")
    return data


def source(info: Path, name: str | None) -> dict:
    """The ftwb source spec for entry `name` (the only entry when None)."""
    entries = _entries(info)
    if name is None:
        if len(entries) != 1:
            listed = ", ".join(list(entries)[:12]) + (" ..." if len(entries) > 12 else "")
            raise DataError(f"{info}: holds {len(entries)} datasets ({listed}); pick one with "
                            f"{info}#NAME, or list several as data.path sources")
        name = next(iter(entries))
    if name not in entries:
        import difflib

        near = difflib.get_close_matches(name, list(entries), n=1)
        raise DataError(f"{info}: no dataset named {name!r}" + (f" (did you mean '{near[0]}'?)" if near else "")
                        + f"; it has {', '.join(list(entries)[:12])}")
    return _to_source(info, name, entries[name])


def _to_source(info: Path, name: str, e: dict) -> dict:
    where = f"{info}#{name}"
    if "file_name" in e:
        path = str((info.parent / str(e["file_name"])).resolve())
    elif "hf_hub_url" in e:
        path = str(e["hf_hub_url"])
    else:
        kind = next((k for k in _UNSUPPORTED_SOURCES if k in e), None)
        raise DataError(f"{where}: " + (f"'{kind}' sources are not supported; download the data and set "
                                        "file_name" if kind else "has no file_name or hf_hub_url"))
    formatting = e.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"{where}: formatting {formatting!r} is not supported; use alpaca or sharegpt")
    cols = e.get("columns") or {}
    tags = e.get("tags") or {}
    if not isinstance(cols, dict) or not isinstance(tags, dict):
        raise DataError(f"{where}: 'columns' and 'tags' must be objects")
    media = [k for k in ("images", "videos", "audios") if cols.get(k)]
    if media:
        raise DataError(f"{where}: the entry maps {', '.join(media)} columns: a multimodal dataset, and ftwb "
                        "trains text models only; use a text-only dataset")
    columns, roles = {}, {}
    if formatting == "alpaca" and set(cols) == {"prompt"}:
        # LLaMA-Factory's pre-training entries name only the text column, as "prompt".
        return _finish(e, {"path": path, "format": "completion", "columns": {"text": str(cols["prompt"])},
                           "roles": {}, "name": name})
    if formatting == "alpaca":
        cols = {**_ALPACA_COLUMNS, **cols}
        table = _ALPACA_TO_FTWB
    else:
        cols = {"messages": "conversations", **cols}
        table = _SHAREGPT_TO_FTWB
        t = {**_SHAREGPT_TAGS, **tags}
        columns["role"], columns["content"] = str(t["role_tag"]), str(t["content_tag"])
        roles = {str(t[k]): r for k, r in _TAG_ROLE.items() if t.get(k)}
    unknown = sorted(set(cols) - set(table))
    if unknown:
        raise DataError(f"{where}: column {unknown[0]!r} is not one LLaMA-Factory defines for {formatting}")
    for lf, ftwb in table.items():
        if cols.get(lf):
            columns[ftwb] = str(cols[lf])
    if e.get("ranking"):
        fmt = "preference"
        if not ("chosen" in columns and "rejected" in columns):
            raise DataError(f"{where}: ranking is true but columns has no chosen/rejected")
    elif "label" in columns:
        fmt = "kto"
    else:
        fmt = formatting
    return _finish(e, {"path": path, "format": fmt, "columns": columns, "roles": roles, "name": name})


def _finish(e: dict, out: dict) -> dict:
    split = e.get("split")
    if split and split != "train":
        out["split"] = str(split)
    if isinstance(e.get("num_samples"), int) and e["num_samples"] > 0:
        out["max_rows"] = e["num_samples"]
    return out
