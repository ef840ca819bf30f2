"""Errors of the data pipeline: one for a source that cannot be used at all, one per bad row."""
from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """The source cannot be used; the message names the file, what is wrong and the fix."""


class RowError(ValueError):
    """One row cannot be used; the caller turns it into a RowProblem and goes on."""


@dataclass
class RowProblem:
    row: int            # 0-based index of the row in the source
    line: int | None    # 1-based line in the file for line-based sources
    message: str

    def to_dict(self) -> dict:
        return {"row": self.row, "line": self.line, "message": self.message}

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.row}"
