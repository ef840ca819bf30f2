"""Dataset sources: `data.path` as one source or a list, each read with its own format and
mapping, then mixed deterministically.

A source is a path string or a mapping {path, format, columns, roles, split, weight,
max_rows, text_documents}; what a source leaves out it takes from `data` itself. A path
may point into a LLaMA-Factory dataset_info.json (engine.data.dataset_info).

- `max_rows`: at most this many usable rows of the source, a seeded sample in file order.
- `weight`: how strongly the source counts in training: its training rows are repeated
  (weight 2: twice) or sampled (weight 0.5: half), seeded. Validation and test rows are
  never weighted, so a repeated row can never leak into them.

This is the one reader that `ftwb data check`, pre-flight, training and evaluation share:
read() -> rows under ftwb's names -> the one normaliser (engine.data.normalize).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data import mapping as M
from engine.data.errors import DataError, RowError, RowProblem

FORMATS = ("auto", "chat", "sharegpt", "alpaca", "completion", "preference", "kto", "text")
SOURCE_KEYS = ("path", "format", "columns", "roles", "split", "weight", "max_rows", "text_documents")
_NORMALISE_SAMPLE = 200


@dataclass
class SourceSpec:
    path: str
    format: str = "auto"
    columns: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    split: str | None = None
    weight: float = 1.0
    max_rows: int | None = None
    text_documents: str = "file"
    name: str = ""  # a dataset_info.json entry name, for messages

    @property
    def mapping(self) -> M.Mapping:
        return M.Mapping(dict(self.columns or {}), dict(self.roles or {}))

    @property
    def label(self) -> str:
        return f"{self.path}#{self.name}" if self.name else str(self.path)

    def to_dict(self) -> dict:
        d = {"path": str(self.path), "format": self.format, "split": self.split, "weight": self.weight,
             "max_rows": self.max_rows}
        if self.columns or self.roles:
            d.update(self.mapping.to_dict())
        if self.name:
            d["name"] = self.name
        return d


# ---------------------------------------------------------------- validation (no file access)

def _defaults(data: Any) -> dict:
    return {"format": getattr(data, "format", "auto"), "columns": getattr(data, "columns", None) or {},
            "roles": getattr(data, "roles", None) or {}, "split": getattr(data, "split", None),
            "text_documents": getattr(data, "text_documents", "file")}


def _raw_sources(data: Any) -> list[tuple[str, Any]]:
    path = getattr(data, "path", data)
    if isinstance(path, list):
        return [(f"data.path[{i}]", s) for i, s in enumerate(path)]
    return [("data.path", path)]


def config_problems(data: Any) -> list[str]:
    """Every problem of data.path/columns/roles/split/text_documents, without opening a file."""
    from engine.data.load import TEXT_DOCUMENTS, parse_split

    out: list[str] = []
    path = getattr(data, "path", None)
    if isinstance(path, list) and not path:
        return ["data.path: the list of sources is empty; give at least one dataset path"]
    out += M.problems(getattr(data, "columns", None), getattr(data, "roles", None), "data")
    d = _defaults(data)
    for where, s in _raw_sources(data):
        if isinstance(s, str):
            if not s.strip():
                out.append(f"{where}: empty path; give a dataset file, directory, hub id or 'demo'")
            spec = {}
        elif isinstance(s, dict):
            spec = s
            unknown = [k for k in s if k not in SOURCE_KEYS]
            if unknown:
                out.append(f"{where}.{unknown[0]}: unknown key; a source has {', '.join(SOURCE_KEYS)}")
            if not isinstance(s.get("path"), str) or not s["path"].strip():
                out.append(f"{where}.path: missing; each source needs a path")
            out += M.problems(s.get("columns"), s.get("roles"), where)
            w = s.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                out.append(f"{where}.weight: {w!r} is not allowed; a weight is a number above 0 "
                           "(1 = as is, 2 = twice, 0.5 = half)")
            n = s.get("max_rows")
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                out.append(f"{where}.max_rows: {n!r} is not allowed; give a whole number of rows, at least 1")
        else:
            out.append(f"{where}: {s!r} is not a source; give a path, or a mapping with path, format, columns, "
                       "roles, split, weight, max_rows")
            continue
        fmt = spec.get("format", d["format"])
        if fmt not in FORMATS:
            out.append(f"{where}.format: {fmt!r} is not allowed; use one of {', '.join(FORMATS)}")
        split = spec.get("split", d["split"])
        if split is not None:
            try:
                parse_split(split)
            except DataError as e:
                out.append(f"{where if spec.get('split') is not None else 'data'}.split: {e}")
        td = spec.get("text_documents", d["text_documents"])
        if td not in TEXT_DOCUMENTS:
            out.append(f"{where}.text_documents: {td!r} is not allowed; use file or blank_line")
    return out


# ---------------------------------------------------------------- specs (may read dataset_info.json)

def specs(data: Any) -> list[SourceSpec]:
    """The sources `data` names, dataset_info.json references expanded. DataError if unusable."""
    from engine.data import dataset_info

    problems = config_problems(data)
    if problems:
        raise DataError(problems[0])
    d = _defaults(data)
    out = []
    for _, s in _raw_sources(data):
        s = {"path": s} if isinstance(s, str) else dict(s)
        ref = dataset_info.reference(s["path"])
        if ref is not None:
            entry = dataset_info.source(*ref)
            # What the user wrote beside the reference wins over the entry.
            s = {**entry, **{k: v for k, v in s.items() if k != "path"}}
        merged = {**d, **s}
        out.append(SourceSpec(path=str(merged["path"]), format=merged["format"],
                              columns=dict(merged.get("columns") or {}), roles=dict(merged.get("roles") or {}),
                              split=merged.get("split"), weight=float(merged.get("weight", 1.0)),
                              max_rows=merged.get("max_rows"), text_documents=merged["text_documents"],
                              name=str(merged.get("name", ""))))
    return out


# ---------------------------------------------------------------- reading one source

@dataclass
class Source:
    spec: SourceSpec
    load: Any           # LoadResult: the rows as stored
    rows: list          # the same rows under ftwb's names (what checks and the normaliser read)
    fmt: str
    reason: str

    @property
    def lines(self) -> list:
        return self.load.lines

    @property
    def problems(self) -> list[RowProblem]:
        return self.load.problems

    @property
    def notes(self) -> list[str]:
        return self.load.notes

    def content_hash(self) -> str:
        return _spec_hash(self.spec)

    def version(self) -> dict:
        """A dataset version written by the cleaning tool has `<path>.manifest.json` beside it."""
        p = Path(str(self.load.source) + ".manifest.json")
        try:
            m = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
        except (OSError, ValueError):
            m = {}
        return {k: m.get(k) for k in ("version", "operations")} if isinstance(m, dict) else {}


def load(spec: SourceSpec, limit: int | None = None) -> Source:
    """Read and map one source (format not yet known); DataError if it cannot be read at all."""
    from engine.data.load import load_rows

    res = load_rows(spec.path, limit, split=spec.split, text_documents=spec.text_documents)
    return Source(spec, res, M.apply_all(res.rows, spec.mapping), "", "")


def identify(src: Source) -> Source:
    """Set the source's format (detected, or the set one checked against the rows); DataError
    naming the detected format, a modality, or what was seen when it cannot be trained."""
    src.fmt, src.reason = _format(src.spec, src.load, src.rows)
    return src


def read(spec: SourceSpec, limit: int | None = None) -> Source:
    """Load, map and identify one source; DataError (naming the source and the fix) if unusable."""
    return identify(load(spec, limit))


def _first_problem(res) -> str:
    return f"; first problem: {res.problems[0].message}" if res.problems else ""


def _format(spec: SourceSpec, res, rows: list) -> tuple[str, str]:
    from engine.data.detect import detect_format, refuse_multimodal, same_family

    where = spec.label
    if res.kind in ("text", "text_dir"):
        if spec.format not in ("auto", "text", "completion"):
            raise DataError(f"{where}: data.format is {spec.format}, but this is plain text (detected format: "
                            "text, one document per file or blank-line block); set data.format: auto (or text)")
        return "text", f"plain text ({res.notes[-1].split(': ', 1)[-1] if res.notes else 'documents'})"
    if not rows:
        raise DataError(f"{where}: no readable rows{_first_problem(res)}; fix the file")
    if spec.format == "auto":
        try:
            return detect_format(rows)
        except DataError as e:
            raise DataError(f"{where}: {e}{_first_problem(res)}") from None
    try:
        refuse_multimodal(rows)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    # A set format must fit the rows: when most do not normalise, say what they look like.
    from engine.data.normalize import normalize_row

    sample = rows[:: max(1, len(rows) // _NORMALISE_SAMPLE)][:_NORMALISE_SAMPLE]
    errors = []
    for r in sample:
        try:
            normalize_row(r, spec.format)
        except RowError as e:
            errors.append(str(e))
    try:
        detected, why = detect_format(rows)
    except DataError:
        detected, why = None, ""
    if detected in ("kto", "preference") and spec.format != detected:
        # Read as chat, a KTO row's label or a pair's rejected answer would be silently dropped.
        raise DataError(f"{where}: data.format is {spec.format}, but the rows are {detected} ({why}); as "
                        f"{spec.format} their {'labels' if detected == 'kto' else 'chosen/rejected answers'} would be "
                        f"ignored; set data.format: {detected} or auto (and the matching train.objective)")
    if len(errors) * 2 > len(sample):
        if detected is None or not same_family(detected, spec.format):
            looks = (f"the rows look like {detected} ({why}); set data.format: {detected} or auto"
                     if detected else "set data.format to the rows' format, or map their columns with data.columns")
            raise DataError(f"{where}: data.format is {spec.format}, but {len(errors)}/{len(sample)} sampled rows "
                            f"do not fit it (first: {errors[0]}); {looks}")
    return spec.format, "set by data.format"


def read_all(data: Any) -> list[Source]:
    return [read(s) for s in specs(data)]


# ---------------------------------------------------------------- normalising and mixing

def _normalize(row: Any, fmt: str) -> dict:
    from engine.data.normalize import normalize_row

    return normalize_row(row, fmt)


@dataclass
class Mixed:
    """Every source's usable examples, one global row numbering across sources."""
    examples: list[dict]
    rows: list[int]                   # global row id of each example
    lines: list[int | None]           # 1-based source line of each global row id (None: no lines)
    problems: list[RowProblem]
    sources: list[Source]
    source_of_row: list[int]          # source index of each global row id
    usable: list[int]                 # usable examples per source
    loaded: int = 0                   # rows read, all sources
    records: int = 0                  # records read, bad ones included

    @property
    def fmt(self) -> str:
        fmts = sorted({s.fmt for s in self.sources})
        return fmts[0] if len(fmts) == 1 else "+".join(fmts)

    @property
    def reason(self) -> str:
        if len(self.sources) == 1:
            return self.sources[0].reason
        return "; ".join(f"{Path(s.spec.label).name}: {s.fmt} ({s.reason})" for s in self.sources)

    def where(self, row: int) -> str:
        line = self.lines[row] if row < len(self.lines) else None
        return self._where(self.source_of_row[row], row, line)

    def _where(self, s: int, row: int, line: int | None) -> str:
        loc = f"line {line}" if line is not None else f"row {row - self.offsets[s]}"
        return f"{Path(self.sources[s].spec.label).name} {loc}" if len(self.sources) > 1 else loc

    @property
    def offsets(self) -> list[int]:
        out, n = [], 0
        for s in self.sources:
            out.append(n)
            n += len(s.rows)
        return out

    def weighted(self, train: list[int], seed: int) -> list[int]:
        """Training example indices with each source's weight applied (seeded, deterministic)."""
        weights = [s.spec.weight for s in self.sources]
        if all(w == 1.0 for w in weights):
            return train
        rng = random.Random(f"mix-{seed}")
        by_source: dict[int, list[int]] = {}
        for i in train:
            by_source.setdefault(self.source_of_row[self.rows[i]], []).append(i)
        out: list[int] = []
        for s, idx in sorted(by_source.items()):
            w = weights[s]
            whole, frac = int(w), w - int(w)
            out += idx * whole
            k = int(round(frac * len(idx)))
            out += sorted(rng.sample(idx, k)) if k else []
        return sorted(out)

    def content_hash(self) -> str:
        return hash_specs([s.spec for s in self.sources])

    def info(self) -> list[dict]:
        """Per source, what data.json records: where, what version and hash, what was used."""
        out = []
        for s, n in zip(self.sources, self.usable):
            v = s.version()
            out.append({**s.spec.to_dict(), "source": s.load.source, "kind": s.load.kind, "format": s.fmt,
                        "format_reason": s.reason, "content_hash": s.content_hash(), "version": v.get("version"),
                        "rows_total": len(s.rows) + len(s.problems), "rows_usable": n})
        return out


def mix(sources: list[Source], seed: int = 42) -> Mixed:
    """Normalise every source with its own format; apply max_rows (seeded); number rows globally."""
    examples, rows, lines, problems, source_of, usable = [], [], [], [], [], []
    offset = 0
    many = len(sources) > 1
    for s_i, src in enumerate(sources):
        name = Path(src.spec.label).name
        pre = f"{name} " if many else ""
        for pr in src.problems:
            problems.append(RowProblem(offset + pr.row, pr.line, pre + pr.message))
        got: list[tuple[dict, int]] = []
        fmt = "completion" if src.fmt == "text" else src.fmt
        for i, row in enumerate(src.rows):
            try:
                got.append((_normalize(row, fmt), offset + i))
            except RowError as e:
                line = src.lines[i] if i < len(src.lines) else None
                problems.append(RowProblem(offset + i, line, f"{pre}{'line ' + str(line) if line is not None else 'row ' + str(i)}: {e}"))
        if src.spec.max_rows is not None and len(got) > src.spec.max_rows:
            keep = sorted(random.Random(f"rows-{seed}-{s_i}").sample(range(len(got)), src.spec.max_rows))
            got = [got[k] for k in keep]
        usable.append(len(got))
        for ex, r in got:
            examples.append(ex)
            rows.append(r)
        lines += list(src.lines) + [None] * (len(src.rows) - len(src.lines))
        source_of += [s_i] * len(src.rows)
        offset += len(src.rows)
    return Mixed(examples, rows, lines, problems, sources, source_of, usable,
                 loaded=offset, records=offset + sum(len(s.problems) for s in sources))


def load_examples(data: Any, seed: int = 42) -> Mixed:
    """read_all + mix: what training, evaluation and pre-flight start from."""
    return mix(read_all(data), seed)


def _spec_hash(spec: SourceSpec) -> str:
    from engine.data.load import content_hash

    return content_hash(spec.path)


def hash_specs(specs_: list[SourceSpec]) -> str:
    """The file's own hash for one plain source; else a hash of every source's hash and settings."""
    if len(specs_) == 1 and not specs_[0].mapping and not specs_[0].split and specs_[0].max_rows is None:
        return _spec_hash(specs_[0])
    h = hashlib.sha256()
    for sp in specs_:
        h.update(json.dumps([_spec_hash(sp), sp.to_dict()], sort_keys=True, default=str).encode() + b"\0")
    return h.hexdigest()


def dataset_hash(data: Any) -> str | None:
    """The content hash data.json will record, without reading rows (for the hello event)."""
    try:
        return hash_specs(specs(data))
    except (DataError, OSError):
        return None


def _fit(msgs: list[dict], max_seq_len: int, tokenizer) -> int:
    """How many leading messages can show up within max_seq_len tokens. A message costs at
    least one token (its role marker), and at least its content's own token count less
    two (what tokenising next to its neighbours can merge away)."""
    if tokenizer is None:
        return max_seq_len
    counts = [len(ids) for ids in tokenizer([str(m.get("content") or "") for m in msgs],
                                            add_special_tokens=False)["input_ids"]]
    total = 0
    for n, c in enumerate(counts):
        total += max(1, c - 2)
        if total > max_seq_len:
            return n + 1  # this one starts inside the window; the rest cannot
    return len(msgs)


def cap_turns(examples: list[dict], max_seq_len: int, tokenizer=None) -> int:
    """Cut conversations to the messages that can fall within max_seq_len tokens, in place;
    returns how many were cut.

    Messages past that point can never be part of a (truncated) example, and a dropped
    overlong one stays overlong. Cutting them first keeps a 10,000-turn row from costing
    what template planning (a render per turn) would. Preference and KTO examples are left
    whole: their answers are at the end."""
    cut = 0
    for n, ex in enumerate(examples):
        msgs = ex.get("messages")
        if msgs is None or len(msgs) <= 64 or "rejected" in ex or "label" in ex:
            continue
        keep = min(max_seq_len, _fit(msgs, max_seq_len, tokenizer))
        if keep < len(msgs):
            examples[n] = {**ex, "messages": msgs[:keep]}
            cut += 1
    return cut
