"""The findings gate before a run: secrets, personal data and error-level check findings
in the dataset a run is about to train on.

`ftwb train` refuses a dataset with secrets or PII unless `--allow-findings` or
`data.allow_findings: true`; the TUI asks once per dataset version and records a yes as
`data.allow_findings: true` in the run's config.yaml. Plain Python: the checks are the
ones `ftwb data check` runs (near-duplicates left out: warnings, and slow), streamed over
every row (engine.data.checks_stream); `sample` limits the scan to the first rows.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GateReport:
    source: str
    rows: int       # records in the source (those seen, when the scan stopped early)
    scanned: int    # records scanned
    counts: dict[str, int] = field(default_factory=dict)   # check id -> findings
    first: dict[str, str] = field(default_factory=dict)    # check id -> "line N: message" of the first

    def _sum(self, pred) -> int:
        return sum(n for cid, n in self.counts.items() if pred(cid))

    @property
    def secrets(self) -> int:
        return self._sum(lambda c: c.startswith("secret_"))

    @property
    def pii(self) -> int:
        return self._sum(lambda c: c.startswith("pii_"))

    @property
    def errors(self) -> int:
        from engine.data.checks import CHECKS

        return self._sum(lambda c: not c.startswith("secret_") and c in CHECKS and CHECKS[c].severity == "error")

    @property
    def sensitive(self) -> bool:
        return bool(self.secrets or self.pii)

    @property
    def blocking(self) -> bool:
        return bool(self.sensitive or self.errors)

    def summary(self) -> str:
        bits = []
        if self.secrets:
            bits.append(f"{self.secrets} secret(s)")
        if self.pii:
            bits.append(f"{self.pii} PII match(es)")
        if self.errors:
            bits.append(f"{self.errors} error-level finding(s)")
        where = "; ".join(f"{cid} {msg}" for cid, msg in list(self.first.items())[:3])
        part = f" (checked the first {self.scanned:,} of {self.rows:,} rows)" if self.scanned < self.rows else ""
        return f"{Path(self.source).name}: " + ", ".join(bits or ["no findings"]) + part + (f"; {where}" if where else "")


def scan(path: str, fmt: str = "auto", sensitive_only: bool = False, sample: int | None = None,
         progress=None, cancelled=lambda: False) -> GateReport:
    """Findings that gate a run on the dataset at `path` (`sensitive_only`: secrets and PII),
    over every row unless `sample` says how many."""
    from engine.data import paged, pii
    from engine.data.checks import CHECKS
    from engine.data.checks_stream import check_stream
    from engine.data.detect import detect_format
    from engine.data.errors import DataError

    batches = paged.iter_batches(path, cancelled=cancelled)
    first = next(batches, None)
    head = [r for r in (first.rows if first else []) if r is not None]
    if fmt == "auto":
        try:
            fmt = detect_format(head[:2000])[0] if head else "completion"
        except DataError:
            fmt = "completion"

    def every():
        if first is not None:
            yield first
        yield from batches
    only = {c for c in CHECKS if c.startswith("secret_")} | set(pii.KINDS) if sensitive_only else None
    res = check_stream(every(), fmt, near_dup=False, only=only, sample=sample, progress=progress,
                       cancelled=cancelled)
    found = [f for f in res.findings if not (sensitive_only and f.check == "invalid_json")]
    total = res.total if res.total is not None and (res.partial or res.sampled) else res.records
    report = GateReport(str(paged.source_kind(path)[1] or path), max(total, res.records), res.records)
    gating = [f for f in found if f.check.startswith(("secret_", "pii_")) or f.severity == "error"]
    report.counts = dict(Counter(f.check for f in gating))
    for f in gating:
        report.first.setdefault(f.check, f"line {f.line}" if f.line is not None else f"row {f.row}")
    return report
