"""Column and role mappings: a source's own names -> ftwb's, applied once when rows are read.

`data.columns` maps an ftwb name to the source's column (`{messages: conversations, role:
from, content: value}`); `data.roles` maps the source's role names to ftwb's (`{Q: user,
A: assistant}`). `apply` gives a view of a row under ftwb's names (the row itself is never
changed), so detection, data checks and the normaliser all read the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ftwb's names: top-level columns, plus `role`/`content`, the keys inside each turn.
COLUMN_NAMES = ("messages", "role", "content", "prompt", "completion", "chosen", "rejected", "label", "system",
                "tools", "text", "instruction", "input", "output", "history", "images", "videos", "audios")
TURN_KEYS = ("role", "content")
# function_call: an assistant turn that calls a tool (sharegpt's spelling), kept distinct so
# checks still see the call.
ROLE_TARGETS = ("user", "assistant", "system", "tool", "function_call")
_TURN_LISTS = ("messages", "conversations", "chosen", "rejected", "prompt", "completion")


@dataclass(frozen=True)
class Mapping:
    columns: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns or self.roles)

    def to_dict(self) -> dict:
        return {"columns": dict(self.columns), "roles": dict(self.roles)}


def problems(columns: Any, roles: Any, where: str) -> list[str]:
    """What is wrong with a mapping, one message per problem (empty: fine)."""
    out = []
    if columns is not None and not isinstance(columns, dict):
        out.append(f"{where}.columns: {columns!r} is not a mapping; write ftwb name: source column, "
                   "e.g. {messages: conversations, role: from, content: value}")
    for k, v in (columns or {}).items() if isinstance(columns, dict) else ():
        if k not in COLUMN_NAMES:
            out.append(f"{where}.columns: unknown ftwb name {k!r}; use one of {', '.join(COLUMN_NAMES)}")
        elif not isinstance(v, str) or not v:
            out.append(f"{where}.columns.{k}: {v!r} is not a column name; give the source's column as a string")
    if roles is not None and not isinstance(roles, dict):
        out.append(f"{where}.roles: {roles!r} is not a mapping; write source role: ftwb role, e.g. {{human: user}}")
    for k, v in (roles or {}).items() if isinstance(roles, dict) else ():
        if not isinstance(k, str) or not k:
            out.append(f"{where}.roles: {k!r} is not a role name")
        elif v not in ROLE_TARGETS:
            out.append(f"{where}.roles.{k}: {v!r} is not an ftwb role; use one of {', '.join(ROLE_TARGETS)}")
    return out


def _turn(t: Any, rk: str | None, ck: str | None, roles: dict[str, str]) -> Any:
    if not isinstance(t, dict):
        return t
    t = dict(t)
    if rk and rk != "role" and rk in t:
        t["role"] = t.pop(rk)
    if ck and ck != "content" and ck in t:
        t["content"] = t.pop(ck)
    if roles:
        key = "role" if "role" in t else "from" if "from" in t else None
        if key is not None and isinstance(t[key], str) and t[key] in roles:
            t[key] = roles[t[key]]
    return t


def apply(row: Any, m: Mapping) -> Any:
    """The row under ftwb's names. Linear in the row's turns; the input is left as it was."""
    if not m or not isinstance(row, dict):
        return row
    top = {k: v for k, v in m.columns.items() if k not in TURN_KEYS}
    out = dict(row)
    for name, src in top.items():
        if src in row:
            out[name] = row[src]
    for name, src in top.items():  # the source's own key goes, unless it is itself an ftwb name in use
        if src != name and src not in top and src in out:
            del out[src]
    rk, ck = m.columns.get("role"), m.columns.get("content")
    if rk or ck or m.roles:
        for key in _TURN_LISTS:
            v = out.get(key)
            if isinstance(v, list):
                out[key] = [_turn(t, rk, ck, m.roles) for t in v]
            elif isinstance(v, dict):
                out[key] = _turn(v, rk, ck, m.roles)
    return out


def apply_all(rows: list, m: Mapping) -> list:
    return rows if not m else [apply(r, m) for r in rows]
