"""Import an Axolotl or LLaMA-Factory training YAML as an ftwb RunConfig.

Every source key path (`datasets.0.field_messages`) ends up in one of two lists: `mapped`
(what it became) or `ignored` (why not). Values outside ftwb's ranges are clamped or
mapped to the nearest choice with a note. Files that are not training configs
(inference, merge/export, evaluation, accelerate/DeepSpeed), and training methods ftwb
does not have (PPO, reward models, GRPO ...), are refused with a message, never imported
as something else. The mappings live in engine/importers/. Plain Python: PyYAML only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config as C
from engine.config import ConfigError, RunConfig, read_yaml
from engine.importers import axolotl, llamafactory
from engine.importers.kinds import KIND_NAMES, detect_kind, is_ftwb, not_training
from engine.importers.mapper import Mapper

__all__ = ["ImportResult", "import_config", "detect_kind", "read_source", "KIND_NAMES"]


@dataclass
class ImportResult:
    config: RunConfig
    mapped: list[tuple[str, Any, str, Any]]   # (source key path, source value, ftwb field, ftwb value)
    ignored: list[tuple[str, str]]            # (source key path, reason)
    source_kind: str                          # "axolotl" | "llamafactory" | "llamafactory_v1"
    notes: dict[str, str] = field(default_factory=dict)  # source key path -> what was adjusted and why

    def to_json(self) -> dict[str, Any]:
        """The report as `ftwb config import --json` prints it."""
        return {"kind": self.source_kind,
                "mapped": [{"source": s, "value": v, "field": f, "ftwb_value": fv, "note": self.notes.get(s)}
                           for s, v, f, fv in self.mapped],
                "ignored": [{"source": s, "reason": r} for s, r in self.ignored],
                "notes": self.notes, "config": self.config.to_dict()}


def read_source(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = read_yaml(p, "pass the path of an Axolotl or LLaMA-Factory YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a YAML mapping of settings, got {type(data).__name__}")
    return data


def import_config(path: str | Path) -> ImportResult:
    """Read an Axolotl or LLaMA-Factory YAML and map it onto a RunConfig (ConfigError if refused)."""
    p = Path(path)
    data = read_source(p)
    what = not_training(data)
    if what:
        raise ConfigError(f"{p}: not a training config: this is {what}")
    kind = detect_kind(data)
    if kind is None:
        if is_ftwb(data):
            raise ConfigError(f"{p}: this is already an ftwb config; use it as it is")
        raise ConfigError(f"{p}: neither an Axolotl config (no base_model/adapter/lora_r ...) nor a "
                          "LLaMA-Factory config (no model_name_or_path/finetuning_type ...)")
    try:
        if kind == "axolotl":
            axolotl.refuse_unsupported(data, str(p))
            m = Mapper(data, p.parent, axolotl.REASONS)
            axolotl.map_config(m)
        else:
            llamafactory.refuse_unsupported(data, str(p))
            m = Mapper(data, p.parent, llamafactory.REASONS)
            (llamafactory.map_config if kind == "llamafactory" else llamafactory.map_v1)(m)
    except ConfigError as e:  # refusals found while mapping (a media dataset) name the file too
        raise (e if str(e).startswith(str(p)) else ConfigError(f"{p}: {e}")) from None
    m.finish()
    try:
        cfg = C.from_dict(m.out)
    except ConfigError as e:  # should not happen: every value was clamped to the schema
        raise ConfigError(f"{p}: imported values do not validate: {e}") from None
    return ImportResult(config=cfg, mapped=m.mapped, ignored=m.ignored, source_kind=kind, notes=m.notes)
