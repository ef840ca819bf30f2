"""The bookkeeping every importer shares: where each source key went, and why not.

Source keys are dotted paths with list indices (`datasets.0.field_messages`). A path is
either mapped (to an ftwb field, with the value it became) or ignored (with a reason);
`Mapper.finish` walks every path of the source and files whatever no mapping claimed,
so nothing is dropped silently. Values outside ftwb's ranges are clamped with a note.

Datasets are collected as sources (`Mapper.source`); `finish` writes one source as
plain `data.path` / `data.format` / `data.columns` ..., and several as a list of
source mappings under `data.path`.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Callable

from engine import config as C

_HELP = C.field_help()
_SOURCE_ONLY = ("max_rows", "weight")  # source options without a top-level data.* field


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path (list indices as numbers), or None."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                continue
            match = [k for k in cur if str(k) == part]  # YAML keys may be numbers or booleans
            if not match:
                return None
            cur = cur[match[0]]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def leaf_paths(data: Any, prefix: str = "") -> list[str]:
    """Every path that ends in a scalar or an empty container."""
    if isinstance(data, dict) and data:
        items = ((str(k), v) for k, v in data.items())
    elif isinstance(data, list) and data:
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return [prefix] if prefix else []
    out: list[str] = []
    for k, v in items:
        out += leaf_paths(v, f"{prefix}.{k}" if prefix else k)
    return out


def _put(out: dict, target: str, value: Any) -> None:
    parts = target.split(".")
    cur = out
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


class Mapper:
    """Collects target values, the mapped/ignored report and notes for one source dict."""

    def __init__(self, data: dict[str, Any], base_dir: Path, reasons: dict[str, str] | None = None):
        self.data = data
        self.base_dir = base_dir
        self.reasons = reasons or {}
        self.out: dict[str, Any] = {}
        self.mapped: list[tuple[str, Any, str, Any]] = []
        self.ignored: list[tuple[str, str]] = []
        self.notes: dict[str, str] = {}
        self.done: set[str] = set()
        self.sources: list[dict[str, Any]] = []

    # ---- reading the source
    def val(self, path: str, default: Any = None) -> Any:
        v = get_path(self.data, path)
        return default if is_empty(v) else v

    def has(self, path: str) -> bool:
        return not is_empty(get_path(self.data, path))

    def present(self, path: str) -> bool:
        """The key is written in the source, whatever its value (false, 0, null ...)."""
        parent, _, last = path.rpartition(".")
        container = get_path(self.data, parent) if parent else self.data
        if isinstance(container, dict):
            return any(str(k) == last for k in container)
        return isinstance(container, list) and last.isdigit() and int(last) < len(container)

    # ---- recording
    def set(self, path: str, target: str, value: Any, note: str | None = None) -> None:
        """Record source `path` -> ftwb field `target` = value (already converted and in range)."""
        _put(self.out, target, value)
        self.record(path, target, value, note)

    def record(self, path: str, target: str, value: Any, note: str | None = None) -> None:
        """Report a mapping whose value was written elsewhere (a source option, a derived field)."""
        self.mapped.append((path, get_path(self.data, path), target, value))
        self.done.add(path)
        if note:
            self.note(path, note)

    def source(self, options: dict[str, Any] | None = None) -> int:
        """Start a dataset source; returns its index for `set_source`."""
        self.sources.append(dict(options or {}))
        return len(self.sources) - 1

    def set_source(self, i: int, path: str, option: str, value: Any, note: str | None = None) -> None:
        """Record source `path` -> option of dataset source i (option may be `columns.messages`)."""
        _put(self.sources[i], option, value)
        self.record(path, f"@{i}.{option}", value, note)

    def note(self, path: str, text: str) -> None:
        self.notes[path] = f"{self.notes[path]}; {text}" if path in self.notes else text

    def ignore(self, path: str, reason: str) -> None:
        if path not in self.done:
            self.ignored.append((path, reason))
            self.done.add(path)

    def consume(self, path: str) -> None:
        """Mark a path as folded into another key's mapping (e.g. chat_template_jinja)."""
        self.done.add(path)

    # ---- typed helpers
    def number(self, path: str, target: str, kind: type = float,
               convert: Callable[[float], float] | None = None, into: int | None = None) -> None:
        """Map a numeric key, converting strings like '2e-4' and clamping to ftwb's range.
        With `into`, the value becomes option `target` of dataset source `into`."""
        if not self.has(path):
            return
        raw = get_path(self.data, path)
        try:
            if isinstance(raw, bool):
                raise ValueError
            v = float(raw)
        except (TypeError, ValueError):
            self.ignore(path, f"{raw!r} is not a number")
            return
        if convert:
            v = convert(v)
        meta = _HELP.get(target, {}) if into is None else {"min": 1}
        note = None
        lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
        if kind is int and v != int(v):
            note = f"rounded {v:g} to {round(v)}"
            v = round(v)
        clamped = v
        if lo is not None and clamped < lo:
            clamped = lo
        if hi is not None and clamped > hi:
            clamped = hi
        if gt is not None and not clamped > gt:
            self.ignore(path, f"{raw!r} must be greater than {gt}; kept ftwb's default")
            return
        if clamped != v:
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            note = f"clamped {v:g} to {clamped:g} (ftwb allows {rng})"
        if into is None:
            self.set(path, target, kind(clamped), note)
        else:
            self.set_source(into, path, target, kind(clamped), note)

    def flag(self, path: str, target: str, invert: bool = False) -> None:
        raw = get_path(self.data, path)
        if raw is None:
            return
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            raw = raw.lower() == "true"
        if not isinstance(raw, bool):
            self.ignore(path, f"{raw!r} is not true or false")
            return
        self.set(path, target, (not raw) if invert else raw)

    def choice(self, path: str, target: str, table: dict[str, str], fallback: str, what: str) -> None:
        if not self.has(path):
            return
        raw = str(get_path(self.data, path))
        if raw in table:
            self.set(path, target, table[raw])
        else:
            self.set(path, target, fallback, f"{what} {raw!r} has no ftwb equivalent; using {fallback!r}")

    # ---- the end: sources, then every path nobody claimed
    def finish(self) -> None:
        self._write_sources()
        for key, value in self.data.items():
            self._walk(value, str(key))
        self.ignored.sort(key=lambda kv: (kv[1] == "empty", kv[0]))

    def _walk(self, value: Any, path: str) -> None:
        if path in self.done:
            return
        partial = any(d.startswith(path + ".") for d in self.done)
        if partial and isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                self._walk(v, f"{path}.{k}")
            return
        self.ignored.append((path, "empty" if is_empty(value) else self.reason(path)))
        self.done.add(path)

    def reason(self, path: str) -> str:
        generic = re.sub(r"\.\d+(?=\.|$)", ".*", path)
        for key in (path, generic, path.split(".")[0]):
            if key in self.reasons:
                return self.reasons[key]
        return "no ftwb equivalent"

    def _write_sources(self) -> None:
        if not self.sources:
            return
        data = self.out.setdefault("data", {})
        single = len(self.sources) == 1 and not set(self.sources[0]) & set(_SOURCE_ONLY)
        if single:
            data.update(self.sources[0])
        else:
            data["path"] = self.sources

        def target(t: str) -> str:
            if not t.startswith("@"):
                return t
            i, _, option = t[1:].partition(".")
            if single:
                return "data.path" if option == "path" else f"data.{option}"
            return f"data.path.{i}.{option}"

        self.mapped = [(k, v, target(t), nv) for k, v, t, nv in self.mapped]


# ---------------------------------------------------------------- shared conversions

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant",
              "constant_with_warmup": "constant"}
APPROX_SCHEDULERS = {"cosine_with_restarts": "cosine", "cosine_with_min_lr": "cosine", "one_cycle": "cosine",
                     "rex": "cosine", "warmup_stable_decay": "linear", "polynomial": "linear",
                     "inverse_sqrt": "linear", "reduce_lr_on_plateau": "constant"}
OPTIMIZERS = {"adamw": "adamw", "adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw",
              "adamw_apex_fused": "adamw", "paged_adamw_32bit": "adamw", "adamw_bnb_8bit": "adamw_8bit",
              "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "adamw_8bit", "adamw_torch_8bit": "adamw_8bit"}
ATTN = {"flash_attention_2": "flash_attention_2", "sdpa": "sdpa", "eager": "eager", "fa2": "flash_attention_2",
        "disabled": "eager", "auto": "auto"}


def scheduler(m: Mapper, path: str) -> None:
    if not m.has(path):
        return
    raw = str(m.val(path))
    if raw in SCHEDULERS:
        note = "warmup is set separately in ftwb" if raw == "constant_with_warmup" else None
        m.set(path, "train.scheduler", SCHEDULERS[raw], note)
    else:
        target = APPROX_SCHEDULERS.get(raw, "cosine")
        m.set(path, "train.scheduler", target, f"{raw!r} is not an ftwb schedule; mapped to the nearest, {target!r}")


def optimizer(m: Mapper, path: str) -> None:
    if not m.has(path):
        return
    raw = str(m.val(path))
    if raw in OPTIMIZERS:
        note = "paged optimizers are not used; plain 8-bit AdamW" if raw == "paged_adamw_8bit" else None
        m.set(path, "train.optimizer", OPTIMIZERS[raw], note)
    else:
        m.set(path, "train.optimizer", "adamw", f"optimizer {raw!r} has no ftwb equivalent; using AdamW")


def val_split(m: Mapper, path: str) -> None:
    if not m.has(path):
        return
    raw = m.val(path)
    try:
        v = float(raw)
    except (TypeError, ValueError):
        m.ignore(path, f"{raw!r} is not a number")
        return
    if v >= 1:
        m.ignore(path, f"{raw!r} is a row count; ftwb takes a fraction: set data.val_split (e.g. 0.05)")
        return
    m.number(path, "data.val_split")


def output_name(m: Mapper, path: str) -> None:
    if not m.has(path):
        return
    name = Path(str(m.val(path)).rstrip("/")).name
    if name and name not in (".", ".."):
        m.set(path, "output.name", name, "the run directory is runs/<timestamp>-<name>")


def data_path(m: Mapper, path: str) -> tuple[str, str | None]:
    """The dataset path as ftwb should see it, and a note when it is not a local file."""
    p = Path(path).expanduser()
    for cand in ((p,) if p.is_absolute() else (m.base_dir / p, Path.cwd() / p)):
        if cand.exists():
            return str(cand.resolve()), None
    return path, "not a local file (a hub dataset id?); download it and point data.path at the file"


def lora_targets(value: Any) -> list[str] | str | None:
    """Module names (a list, or a comma-separated string); None for anything else, a regular
    expression included (PEFT reads a single string as one, ftwb takes names)."""
    if isinstance(value, str) and re.search(r"[\\\[\]()|*+?^$]", value):
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return None
    return "all-linear" if value in (["all"], ["all-linear"]) else value


def flash_attn_installed() -> bool:
    """flash-attn importable here (found, not imported: importing it loads CUDA)."""
    return importlib.util.find_spec("flash_attn") is not None


def attention(m: Mapper, path: str, impl: str) -> None:
    """Map an attention choice; FlashAttention-2 only where flash-attn is installed."""
    if impl == "flash_attention_2" and not flash_attn_installed():
        m.set(path, "model.attn_implementation", "auto",
              "flash-attn is not installed on this machine, so auto (PyTorch sdpa, packing still isolated); "
              "pip install flash-attn and set model.attn_implementation: flash_attention_2 to use it")
    else:
        m.set(path, "model.attn_implementation", impl)


# Chat template names of Axolotl and LLaMA-Factory -> ftwb template names, best first. Only
# templates that render the same text are listed: a family whose turn format changed between
# versions (phi-4, llama 4, deepseek v3) keeps its own name, so it resolves or is reported.
TEMPLATE_FAMILIES = {
    "chatml": ["chatml"], "chatml_de": ["chatml"],
    "qwen": ["qwen"], "qwen_25": ["qwen"], "qwen2": ["qwen"], "qwen2_5": ["qwen"],
    "qwen3": ["qwen3"], "qwen3_nothink": ["qwen3_nothink", "qwen3"], "qwen3_5": ["qwen3"],
    "llama3": ["llama3"], "llama3_2": ["llama3"], "llama3_1": ["llama3"],
    "mistral": ["mistral"], "mistral_v1": ["mistral"], "mistral_v2v3": ["mistral"],
    "mistral_v3_tekken": ["mistral"], "mistral_v7_tekken": ["mistral"], "ministral": ["mistral"],
    "gemma": ["gemma"], "gemma2": ["gemma"], "gemma3": ["gemma3", "gemma"],
    "phi": ["phi"], "phi_3": ["phi"], "phi_35": ["phi"], "phi3": ["phi"],
    "deepseekr1": ["deepseek_r1"], "deepseek_r1": ["deepseek_r1"],
}


def template_resolves(name: str) -> bool:
    try:
        from engine.data.templates import resolve
    except ImportError:
        return name == "chatml"
    try:
        resolve(name)
        return True
    except (ValueError, OSError):  # OSError: a "name" too long for a file name
        return False


def shipped_templates() -> list[str]:
    try:
        from engine.data.templates import names
    except ImportError:
        return ["chatml"]
    return names()


def template_name(m: Mapper, path: str, raw: str) -> None:
    """A named chat template of the source tool -> model.chat_template NAME when ftwb ships that
    template; otherwise listed as ignored (the tokenizer's own template is used), with the fix."""
    if not isinstance(get_path(m.data, path), str) or len(raw) > 64 or not re.fullmatch(r"[\w.-]+", raw.strip()):
        m.ignore(path, f"{raw[:40]!r} is not a template name; the tokenizer's own template is used")
        return
    key = raw.strip().lower()
    candidates = TEMPLATE_FAMILIES.get(key, [key])
    name = next((c for c in candidates if template_resolves(c)), None)
    if name is None:
        m.ignore(path, f"ftwb ships no {raw!r} template, so the tokenizer's own template is used; if that is not "
                       f"a {raw} template, set model.chat_template to its Jinja text or one ftwb ships "
                       f"({', '.join(shipped_templates())})")
        return
    m.set(path, "model.chat_template", name, f"{raw!r} is ftwb's {name!r} template" if name != key else None)
