"""Config <-> form values for the Config screen: which editor each field gets, and how
the text a user typed becomes the value engine.config validates. Plain Python."""
from __future__ import annotations

from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from engine import config as C

TOP = "run"  # group name of top-level fields such as `method`


def fields() -> list[tuple[str, str, dict]]:
    """(group, dotted path, metadata) in schema order."""
    out = []
    for path, meta in C.field_help().items():
        group = path.split(".", 1)[0] if "." in path else TOP
        out.append((group, path, meta))
    return out


def kind(meta: dict) -> str:
    tp = meta["type"]
    if tp is bool:
        return "bool"
    if get_origin(tp) is Literal:
        return "choice"
    return "text"


def choices(meta: dict) -> list:
    return list(get_args(meta["type"]))


def get(cfg_dict: dict, path: str) -> Any:
    d: Any = cfg_dict
    for part in path.split("."):
        d = d[part]
    return d


def put(cfg_dict: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    d = cfg_dict
    for part in parts[:-1]:
        d = d[part]
    d[parts[-1]] = value


def _flow(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
        return _flow(value)  # mappings and lists of sources as YAML flow text: {a: b}, [x, {path: y}]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return _flow(value)  # [2] (GPU index 2) must not read back as 2 (two GPUs)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _yaml_or_text(s: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(s)
    except yaml.YAMLError:
        return s  # the schema names the field and what is allowed


def from_text(text: str, meta: dict) -> Any:
    """Parse an input box; anything unparseable is passed on as text so the schema's
    own error message (naming field, value and what is allowed) reaches the user."""
    tp = meta["type"]
    s = text.strip()
    args = get_args(tp)
    union = get_origin(tp) in (Union, UnionType)
    if s == "" and union and type(None) in args:
        return None
    non_none = [a for a in args if a is not type(None)] if union else [tp]
    if any(get_origin(a) is dict for a in non_none):
        if s == "" and get_origin(tp) is dict:
            return {}
        if s[:1] == "{":
            return _yaml_or_text(s)
    if s[:1] in "[{" and any(get_origin(a) in (list, dict) for a in non_none):
        return _yaml_or_text(s)
    base = tp
    if union:
        if int in non_none and s.lstrip("-").isdigit():
            return int(s)
        lists = [a for a in non_none if get_origin(a) is list]
        if lists:
            if "," not in s:
                return s
            parts = [p.strip() for p in s.split(",") if p.strip()]
            if int in get_args(lists[0]):  # GPU indices typed as 0, 2
                return [int(p) if p.lstrip("-").isdigit() else p for p in parts]
            return parts
        base = non_none[0] if len(non_none) == 1 else str
    if base is int:
        try:
            return int(s)
        except ValueError:
            return s
    if base is float:
        try:
            return float(s)
        except ValueError:
            return s
    return s
