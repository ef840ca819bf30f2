"""The findings gate before a run: secrets, personal data and error-level check findings
in the dataset a run is about to train on.

`ftwb train` refuses a dataset with secrets or PII unless `--allow-findings` or
`data.allow_findings: true`; the TUI asks once per dataset version and records a yes as
`data.allow_findings: true` in the run's config.yaml. Plain Python: the checks are the
ones `ftwb data check` runs (near-duplicates left out: warnings, and slow).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SCAN_LIMIT = 200_000  # rows scanned at most; the report says when it stopped early


@dataclass
class GateReport:
    source: str
    rows: int
    scanned: int
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


def scan(path: str, fmt: str = "auto", sensitive_only: bool = False) -> GateReport:
    """Findings that gate a run on the dataset at `path` (`sensitive_only`: secrets and PII)."""
    from engine.data import pii
    from engine.data.checks import CHECKS, problems_to_findings, run_checks
    from engine.data.detect import detect_format
    from engine.data.errors import DataError
    from engine.data.load import load_rows

    res = load_rows(path)
    rows, lines = res.rows[:SCAN_LIMIT], res.lines[:SCAN_LIMIT]
    if fmt == "auto":
        try:
            fmt = detect_format(rows)[0] if rows else "completion"
        except DataError:
            fmt = "completion"
    only = {c for c in CHECKS if c.startswith("secret_")} | set(pii.KINDS) if sensitive_only else None
    found = run_checks(rows, lines, fmt, near_dup=False, only=only)
    if not sensitive_only:
        found = problems_to_findings(res.problems) + found
    report = GateReport(str(res.source), len(res.rows) + len(res.problems), len(rows) + len(res.problems))
    gating = [f for f in found if f.check.startswith(("secret_", "pii_")) or f.severity == "error"]
    report.counts = dict(Counter(f.check for f in gating))
    for f in gating:
        report.first.setdefault(f.check, f"line {f.line}" if f.line is not None else f"row {f.row}")
    return report
