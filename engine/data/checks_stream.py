"""Checks over a dataset of any size, batch by batch: `check_stream` runs the per-row checks
on each batch as it is read (findings come back as they are found), keeps only the
compact state the dataset-wide checks need (duplicate hashes and LSH keys in
engine.data.dedup.DupIndex, answer hashes for preference pairs, counts), and finishes
with those checks. `run_checks` over a list is the same runner fed one batch, so the two
agree on every finding.

Cancellation is checked between batches (and between LSH bands at the end): a stopped
scan returns the findings so far, with exact duplicates among the rows read, marked
partial.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from engine.data.checks import _LABEL, _STRUCTURE, CHECKS, Finding, _mask, make, too_few_rows_message


@dataclass
class Progress:
    rows: int                 # readable rows checked so far
    records: int              # records read so far (unreadable ones counted)
    total: int | None         # records in the source, when known
    done_bytes: int
    total_bytes: int
    elapsed: float
    phase: str                # "rows", "duplicates", "done"

    @property
    def fraction(self) -> float | None:
        if self.total:
            return min(1.0, self.records / self.total)
        if self.total_bytes:
            return min(1.0, self.done_bytes / self.total_bytes)
        return None

    @property
    def rate(self) -> float:
        return self.records / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class StreamResult:
    findings: list[Finding]
    rows: int                 # readable rows checked
    records: int              # records scanned (unreadable ones counted)
    total: int | None         # records in the source, when known
    partial: bool = False     # stopped before the end (cancelled); dataset-wide checks limited
    sampled: bool = False     # stopped at the requested sample size
    skipped: list[str] = field(default_factory=list)  # check ids not run because the scan stopped


class _Stopped(Exception):
    pass


class _Lines:
    """Source line per row in 8 bytes each (None kept as -1)."""

    def __init__(self) -> None:
        from array import array

        self._a = array("q")

    def extend(self, lines: list[int | None]) -> None:
        self._a.extend(-1 if x is None else x for x in lines)

    def __getitem__(self, i: int) -> int | None:
        v = self._a[i]
        return None if v < 0 else v


class CheckRun:
    """The state of one run of every check: `add` a batch of rows (numbered on from the
    rows before), then `finish` once. See run_checks for the arguments."""

    def __init__(self, fmt: str, *, tokenizer: Any = None, max_seq_len: int | None = None,
                 val_rows: list[dict] | None = None, near_dup: bool = True, shingle: int = 5,
                 threshold: float = 0.8, only: set[str] | None = None, shingle_unit: str = "char"):
        from engine.data import pii
        from engine.data.dedup import DupIndex

        self.fmt, self.tokenizer, self.max_seq_len, self.val_rows = fmt, tokenizer, max_seq_len, val_rows
        self.only = only
        self.threshold = threshold
        self.pii_kinds = {k for k in pii.KINDS if self.want(k)}
        # Structure and text checks (and the normaliser) run only when one of theirs is asked for.
        per_row = set(CHECKS) - set(pii.KINDS) - {"invalid_json", "exact_duplicate", "near_duplicate",
                                                   "train_val_leak", "overlong", "rejected_is_other_chosen",
                                                   "length_imbalance"}
        self.structure = only is None or bool(per_row & set(only))
        self.n = 0
        self.usable = 0
        self.refused = self.template_usable = 0
        near = near_dup and self.want("near_duplicate")
        self.leak = bool(val_rows) and self.want("train_val_leak")
        self.dups = None
        if self.want("exact_duplicate") or near or self.leak:
            import os

            # one worker process sketches duplicates while this one checks the next rows
            sketch_near = near or (self.leak and near_dup)
            self.dups = DupIndex(near=sketch_near, threshold=threshold, shingle=shingle, unit=shingle_unit,
                                 workers=1 if sketch_near and (os.cpu_count() or 1) > 1 else 0)
        self.near = near
        self.lines = _Lines()  # source line per row (for the dataset-wide findings)
        self.pairs = None
        if self.want("rejected_is_other_chosen") or self.want("length_imbalance"):
            from engine.data.checks_preference import PairChecks

            self.pairs = PairChecks() if fmt == "preference" else None

    def want(self, cid: str) -> bool:
        info = CHECKS[cid]
        return (self.only is None or cid in self.only) and (not info.formats or self.fmt in info.formats)

    def add(self, rows: list[dict], lines: list[int | None] | None) -> list[Finding]:
        """Per-row findings of the next rows."""
        from engine.data import checks_chat, checks_text, pii
        from engine.data.checks_chat import row_text
        from engine.data.errors import RowError
        from engine.data.normalize import normalize_row

        lines = list(lines) if lines is not None else [None] * len(rows)
        lines += [None] * (len(rows) - len(lines))
        start, fmt, out = self.n, self.fmt, []
        texts = [] if self.dups is not None else None
        for k, row in enumerate(rows):
            i, line = start + k, lines[k]
            ex = None
            found = []
            strs = checks_text.string_list(row) if isinstance(row, dict) else []
            if self.structure:
                found = checks_chat.check_row(row, fmt, i, line) + checks_text.check_row(row, fmt, i, line, strs)
                # The normaliser training uses decides whether the row is usable; a row it refuses
                # always carries an error saying why, and one it accepts carries no structure error.
                try:
                    ex = normalize_row(row, fmt)
                    self.usable += 1
                    found = [f for f in found if not (f.check in _STRUCTURE and f.severity == "error")]
                except RowError as e:
                    if not any(f.check in _STRUCTURE and f.severity == "error" for f in found):
                        cid = getattr(e, "check", "unusable")
                        found.append(make(cid if cid in CHECKS else "unusable", i, line, str(e)))
            if self.pii_kinds:
                for path, text in strs:
                    for m in pii.find_pii(text, self.pii_kinds):
                        found.append(make(m.kind, i, line, f"{_LABEL[m.kind]} in {path}: {_mask(m.text)}",
                                          span=(m.start, m.end), field=path))
            out.extend(f for f in found if self.want(f.check))
            if texts is not None:
                # row_text reads the normalised messages: reuse them rather than normalise twice
                msgs = ex.get("messages") if ex is not None and fmt not in ("completion", "text") else None
                texts.append("\n".join(m["content"] for m in msgs) if msgs is not None else row_text(row, fmt))
        if self.dups is not None:
            self.dups.add(texts)
            self.lines.extend(lines)
        if self.pairs is not None:
            out.extend(f for f in self.pairs.add(rows, lines, start) if self.want(f.check))
        if self.tokenizer is not None and self.max_seq_len and self.want("overlong"):
            out.extend(checks_text.overlong(rows, lines, fmt, self.tokenizer, self.max_seq_len, start=start))
        if self.tokenizer is not None:
            from engine.data.checks_template import template_rows

            found, refused, usable = template_rows(rows, lines, fmt, self.tokenizer, start=start)
            self.refused += refused
            self.template_usable += usable
            out.extend(f for f in found if self.want(f.check))
        self.n += len(rows)
        return out

    def finish(self, partial: bool = False, cancelled: Callable[[], bool] = lambda: False,
               ) -> tuple[list[Finding], list[str]]:
        """Dataset-wide findings, and the checks skipped (a partial run skips the near
        duplicates and leakage, which need every row; a cancel during them stops them)."""
        out: list[Finding] = []
        skipped: list[str] = []
        lines = self.lines

        def stop() -> None:  # DupIndex calls it between bands; raising stops the search
            if cancelled():
                raise _Stopped
        if self.dups is not None and (self.want("exact_duplicate") or self.near):
            from engine.data.dedup import DupResult

            near = self.near and not partial
            try:
                res = self.dups.duplicates(near=near, cancelled=stop)
            except _Stopped:
                res = DupResult(exact_groups=self.dups.exact_groups())
                near = False
            if self.near and not near:
                skipped.append("near_duplicate")
            best: dict[int, float] = {}
            for (a, b), s in res.similarity.items():
                best[b] = max(best.get(b, 0.0), s)
            gid = 0
            for grp in res.exact_groups:
                gid += 1
                if self.want("exact_duplicate"):
                    for r in grp[1:]:
                        out.append(make("exact_duplicate", r, lines[r], f"same text as row {grp[0]}", group=gid))
            for grp in res.near_groups:
                gid += 1
                for r in grp[1:]:
                    sim = best.get(r, self.threshold)
                    out.append(make("near_duplicate", r, lines[r], f"near-duplicate of row {grp[0]} "
                                    f"(similarity {sim:.2f})", group=gid))
        if self.leak:
            if partial or cancelled():
                skipped.append("train_val_leak")
            else:
                from engine.data.checks_chat import row_text

                val_texts = [row_text(r, self.fmt) for r in self.val_rows]
                try:
                    leaks = self.dups.leaks(val_texts, cancelled=stop)
                except _Stopped:
                    leaks = []
                    skipped.append("train_val_leak")
                for a, b, sim in leaks:
                    kind = "the same as" if sim >= 1.0 else f"nearly the same as ({sim:.2f})"
                    out.append(make("train_val_leak", a, lines[a], f"{kind} validation row {b}"))
        if self.pairs is not None:
            out.extend(f for f in self.pairs.finish() if self.want(f.check))
        if self.tokenizer is not None and self.want("template_mostly_refused") and not partial:
            from engine.data.checks_template import mostly_refused

            out.extend(mostly_refused(self.refused, self.template_usable))
        if self.want("too_few_rows") and not partial:
            few = too_few_rows_message(self.usable, self.n)
            if few:
                out.append(make("too_few_rows", -1, None, few))
        if self.dups is not None:
            self.dups.close()
        return out, skipped


def check_stream(batches: Iterable[Any], fmt: str, *, tokenizer: Any = None, max_seq_len: int | None = None,
                 val_rows: list[dict] | None = None, near_dup: bool = True, shingle: int = 5,
                 threshold: float = 0.8, only: set[str] | None = None, shingle_unit: str = "char",
                 sample: int | None = None, progress: Callable[[Progress], None] | None = None,
                 on_findings: Callable[[list[Finding]], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> StreamResult:
    """Every finding over `batches` (engine.data.paged.Batch or alike: .rows with None for
    unreadable records, .lines, .errors, .total, .done_bytes, .total_bytes), sorted by row.

    Rows are numbered as run_checks numbers them (readable rows from 0); invalid_json
    findings carry the record number. `sample`: stop after that many readable rows.
    `progress` is called after each batch and before the dataset-wide phase;
    `on_findings` receives each batch's findings as they are found."""
    run = CheckRun(fmt, tokenizer=tokenizer, max_seq_len=max_seq_len, val_rows=val_rows, near_dup=near_dup,
                   shingle=shingle, threshold=threshold, only=only, shingle_unit=shingle_unit)
    t0 = time.perf_counter()
    out: list[Finding] = []
    records, total, done_b, total_b = 0, None, 0, 0
    partial = sampled = False

    def tell(phase: str) -> None:
        if progress is not None:
            progress(Progress(run.n, records, total, done_b, total_b, time.perf_counter() - t0, phase))

    it = iter(batches)
    while True:
        if cancelled():
            partial = True
            break
        try:
            batch = next(it)
        except StopIteration:
            break
        rows, lines = [], []
        room = None if sample is None else sample - run.n
        read = 0  # records of this batch taken (all of them, unless the sample ends inside it)
        for r, ln in zip(batch.rows, batch.lines or [None] * len(batch.rows)):
            if room is not None and len(rows) >= room:
                sampled = True
                break
            read += 1
            if r is not None:
                rows.append(r)
                lines.append(ln)
        sampled = sampled or (room is not None and len(rows) >= room)
        last = batch.start + read
        found = [make("invalid_json", rec, ln, msg) for rec, ln, msg in (batch.errors or [])
                 if run.want("invalid_json") and (not sampled or rec < last)]
        found += run.add(rows, lines)
        records += read
        total = getattr(batch, "total", None)
        done_b, total_b = getattr(batch, "done_bytes", 0) or 0, getattr(batch, "total_bytes", 0) or 0
        out.extend(found)
        if on_findings is not None and found:
            on_findings(found)
        tell("rows")
        if sampled:
            break
    tell("duplicates")

    final, skipped = run.finish(partial=partial, cancelled=cancelled)
    partial = partial or bool(skipped)
    out.extend(final)
    if on_findings is not None and final:
        on_findings(final)
    tell("done")
    out.sort(key=lambda f: (f.row, f.check))
    return StreamResult(out, run.n, records, total, partial=partial, sampled=sampled, skipped=skipped)


@dataclass
class ListBatch:
    """A batch over rows already in memory (the shape engine.data.paged.Batch has)."""
    start: int
    rows: list
    lines: list
    errors: list = field(default_factory=list)
    total: int | None = None
    done_bytes: int = 0
    total_bytes: int = 0


def list_batches(rows: list, lines: list | None = None, problems: list | None = None, batch_rows: int = 20_000):
    """Batches over in-memory rows; `problems` (load's RowProblems) come with the first batch."""
    lines = list(lines) if lines is not None else [None] * len(rows)
    n = len(rows)
    errs = [(p.row, p.line, p.message) for p in problems or []]
    if not rows:
        if errs:
            yield ListBatch(0, [], [], errs, 0)
        return
    for s in range(0, n, batch_rows):
        yield ListBatch(s, rows[s:s + batch_rows], lines[s:s + batch_rows], errs if s == 0 else [], n, 0, 0)
