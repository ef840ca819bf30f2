"""Eval sets: what `eval.sets` names, parsed and checked without loading anything heavy.

A set is the run's held-out split (`test`), one of the sets bundled with ftwb
(`regression`: general instructions scored by loss; `refusal`: unsafe prompts that should
be refused), or a file of any format ftwb reads, each with its scorer. Plain Python: the
config validation calls `check_eval_config`, so it must stay cheap to import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "evalsets"
BUNDLED = {"regression": "general.jsonl", "refusal": "refusal.jsonl"}
BUILTIN = ("test", *BUNDLED)
# auto: exact match and ROUGE-L, plus JSON validity and field accuracy when the references are JSON.
SCORERS = ("auto", "exact", "contains", "regex", "json", "json_schema", "rouge", "refusal", "loss")
DEFAULT_SCORER = {"test": "auto", "regression": "loss", "refusal": "refusal"}
SET_KEYS = ("name", "path", "scorer", "pattern", "schema", "max_rows", "format")
JUDGE_KEYS = ("url", "model", "api_key_env", "mode", "rubric", "max_samples", "sets", "timeout_s", "seed",
              "max_tokens")
JUDGE_MODES = ("pairwise", "pointwise")
JUDGE_URL_ENV, JUDGE_MODEL_ENV, JUDGE_KEY_ENV = "FTWB_JUDGE_URL", "FTWB_JUDGE_MODEL", "FTWB_JUDGE_API_KEY"


class EvalSetError(ValueError):
    """An eval set that cannot be scored; the message names the set and the fix."""


@dataclass
class EvalSet:
    name: str
    scorer: str
    path: str | None = None           # None for the test split
    pattern: str | None = None        # regex scorer
    schema: Any = None                # json_schema scorer: a mapping or a path to a JSON file
    max_rows: int | None = None
    format: str = "auto"
    extra: dict = field(default_factory=dict)

    @property
    def generates(self) -> bool:
        return self.scorer != "loss"

    @property
    def bundled(self) -> bool:
        return self.path is not None and Path(self.path).parent == BUNDLED_DIR

    def to_dict(self) -> dict:
        return {"name": self.name, "scorer": self.scorer, "path": self.path, "max_rows": self.max_rows}


def _err(msg: str):
    from engine.config import ConfigError

    return ConfigError(msg)


def parse_sets(value: Any) -> list[EvalSet]:
    """The eval sets of `eval.sets`, in order; a ConfigError names the entry and the fix."""
    items = [value] if isinstance(value, str) else list(value or [])
    out: list[EvalSet] = []
    for i, item in enumerate(items):
        where = f"eval.sets[{i}]"
        if isinstance(item, str):
            item = {"name": item} if item in BUILTIN else {"path": item}
        if not isinstance(item, dict):
            raise _err(f"{where}: {item!r} is not allowed; expected 'test', 'regression', 'refusal', a file "
                       "path, or a mapping {name, path, scorer}")
        for k in item:
            if k not in SET_KEYS:
                raise _err(f"{where}.{k}: unknown key; allowed keys here: {', '.join(SET_KEYS)}")
        name, path = item.get("name"), item.get("path")
        if path is None and name not in BUILTIN:
            raise _err(f"{where}: needs a path (or name one of {', '.join(BUILTIN)})")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise _err(f"{where}.path: {path!r} is not allowed; expected a file path")
        if name is None:
            name = Path(path).stem
        if not isinstance(name, str) or not name.strip():
            raise _err(f"{where}.name: {name!r} is not allowed; expected a short name")
        if path is None and name in BUNDLED:
            path = str(BUNDLED_DIR / BUNDLED[name])
        scorer = item.get("scorer", DEFAULT_SCORER.get(name, "auto"))
        if scorer not in SCORERS:
            raise _err(f"{where}.scorer: {scorer!r} is not allowed; expected one of {', '.join(SCORERS)}")
        pattern = item.get("pattern")
        if pattern is not None:
            import re

            if not isinstance(pattern, str):
                raise _err(f"{where}.pattern: {pattern!r} is not allowed; expected a regular expression")
            try:
                re.compile(pattern)
            except re.error as e:
                raise _err(f"{where}.pattern: {pattern!r} is not a valid regular expression ({e})") from None
        schema = item.get("schema")
        if scorer == "json_schema" and schema is None:
            raise _err(f"{where}.schema: the json_schema scorer needs a schema (a mapping or a .json file path)")
        if schema is not None and not isinstance(schema, (dict, str)):
            raise _err(f"{where}.schema: {schema!r} is not allowed; expected a mapping or a .json file path")
        if isinstance(schema, dict):
            _check_schema(schema, f"{where}.schema")
        max_rows = item.get("max_rows")
        if max_rows is not None and (not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1):
            raise _err(f"{where}.max_rows: {max_rows!r} is not allowed; expected an integer of at least 1")
        fmt = item.get("format", "auto")
        if fmt not in ("auto", "chat", "sharegpt", "alpaca", "completion", "text"):
            raise _err(f"{where}.format: {fmt!r} is not allowed; expected auto, chat, sharegpt, alpaca or completion")
        if any(s.name == name for s in out):
            raise _err(f"{where}.name: {name!r} is used twice; give each eval set its own name")
        out.append(EvalSet(name=name, scorer=scorer, path=path, pattern=pattern, schema=schema,
                           max_rows=max_rows, format=fmt))
    if not out:
        raise _err("eval.sets: empty; list at least 'test'")
    return out


def _check_schema(schema: dict, where: str) -> None:
    try:
        import jsonschema

        jsonschema.validators.validator_for(schema).check_schema(schema)
    except ImportError:  # pragma: no cover - jsonschema is a dependency
        return
    except Exception as e:  # noqa: BLE001 - SchemaError, with its own message
        raise _err(f"{where}: not a valid JSON schema ({getattr(e, 'message', e)})") from None


def load_schema(s: EvalSet) -> dict:
    """The set's JSON schema (read from its file when it is a path)."""
    import json

    if isinstance(s.schema, dict):
        return s.schema
    p = Path(str(s.schema)).expanduser()
    try:
        schema = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalSetError(f"eval set {s.name}: schema file {p} not found; check eval.sets[].schema") from None
    except (OSError, ValueError) as e:
        raise EvalSetError(f"eval set {s.name}: cannot read the schema {p} ({e})") from None
    if not isinstance(schema, dict):
        raise EvalSetError(f"eval set {s.name}: schema {p} is not a JSON object")
    _check_schema(schema, f"eval set {s.name}: schema {p}")
    return schema


def check_judge(judge: Any) -> None:
    if judge is None:
        return
    if not isinstance(judge, dict):
        raise _err(f"eval.judge: {judge!r} is not allowed; expected a mapping {{url, model, mode, rubric}}")
    for k in judge:
        if k == "api_key":
            raise _err("eval.judge.api_key: a key is never written into a config (the run directory keeps a "
                       f"copy); put it in an environment variable ({JUDGE_KEY_ENV} by default) and name it "
                       "in eval.judge.api_key_env")
        if k not in JUDGE_KEYS:
            raise _err(f"eval.judge.{k}: unknown key; allowed keys here: {', '.join(JUDGE_KEYS)}")
    mode = judge.get("mode", "pairwise")
    if mode not in JUDGE_MODES:
        raise _err(f"eval.judge.mode: {mode!r} is not allowed; expected pairwise or pointwise")
    for k in ("url", "model", "api_key_env", "rubric"):
        v = judge.get(k)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise _err(f"eval.judge.{k}: {v!r} is not allowed; expected a non-empty string")
    url = judge.get("url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise _err(f"eval.judge.url: {url!r} is not allowed; expected an http(s) URL such as "
                   "http://127.0.0.1:8000/v1")
    for k, lo in (("max_samples", 1), ("max_tokens", 1), ("seed", 0)):
        v = judge.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
            raise _err(f"eval.judge.{k}: {v!r} is not allowed; expected an integer of at least {lo}")
    t = judge.get("timeout_s")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0):
        raise _err(f"eval.judge.timeout_s: {t!r} is not allowed; expected a number of seconds above 0")
    sets = judge.get("sets")
    if sets is not None and (not isinstance(sets, list) or not all(isinstance(x, str) for x in sets)):
        raise _err(f"eval.judge.sets: {sets!r} is not allowed; expected a list of eval set names")


def check_few_shot(few_shot: Any) -> None:
    if isinstance(few_shot, list):
        for i, ex in enumerate(few_shot):
            if not (isinstance(ex, dict) and isinstance(ex.get("user"), str) and isinstance(ex.get("assistant"), str)
                    and set(ex) <= {"user", "assistant"}):
                raise _err(f"eval.few_shot[{i}]: expected {{user: text, assistant: text}}")


def check_eval_config(cfg) -> None:
    """Config-time checks of the eval section and train.report_to (no files are read)."""
    ev = cfg.eval
    sets = parse_sets(ev.sets)
    check_judge(ev.judge)
    if ev.judge and ev.judge.get("sets"):
        names = {s.name for s in sets}
        for n in ev.judge["sets"]:
            if n not in names:
                raise _err(f"eval.judge.sets: {n!r} is not one of eval.sets ({', '.join(sorted(names))})")
    check_few_shot(ev.few_shot)
    rt = cfg.train.report_to
    if isinstance(rt, list) and len(set(rt)) != len(rt):
        raise _err(f"train.report_to: {rt!r} names a tracker twice")


def missing_files(cfg) -> str | None:
    """The first eval set (or schema) file that does not exist, as a message; checked before a run starts."""
    for i, s in enumerate(parse_sets(cfg.eval.sets)):
        if s.path is not None and not Path(s.path).expanduser().exists():
            return f"eval.sets[{i}].path: {s.path} does not exist; check the path"
        if isinstance(s.schema, str) and not Path(s.schema).expanduser().exists():
            return f"eval.sets[{i}].schema: {s.schema} does not exist; check the path"
    return None


def resolve_paths(sets_value: Any, base: Path) -> Any:
    """eval.sets with every relative file path made absolute against `base` (the launcher's cwd)."""
    def fix(p: Any) -> Any:
        if not isinstance(p, str):
            return p
        q = Path(p).expanduser()
        cand = q if q.is_absolute() else base / q
        return str(cand.resolve()) if cand.exists() else p

    items = [sets_value] if isinstance(sets_value, str) else list(sets_value or [])
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item if item in BUILTIN else fix(item))
        elif isinstance(item, dict):
            item = dict(item)
            for k in ("path", "schema"):
                if k in item:
                    item[k] = fix(item[k])
            out.append(item)
        else:
            out.append(item)
    return out


def judge_settings(judge: dict | None, environ=os.environ) -> dict:
    """The judge's url, model, key (from the environment only) and mode; url None = not configured."""
    judge = judge or {}
    key_env = judge.get("api_key_env") or JUDGE_KEY_ENV
    return {"url": judge.get("url") or environ.get(JUDGE_URL_ENV) or None,
            "model": judge.get("model") or environ.get(JUDGE_MODEL_ENV) or None,
            "api_key": environ.get(key_env) or None, "api_key_env": key_env,
            "mode": judge.get("mode", "pairwise"), "rubric": judge.get("rubric"),
            "max_samples": judge.get("max_samples", 16), "sets": judge.get("sets"),
            "timeout_s": float(judge.get("timeout_s", 60)), "seed": judge.get("seed", 0),
            "max_tokens": judge.get("max_tokens", 256)}
