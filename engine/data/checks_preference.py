"""Checks across the pairs of a preference dataset (one pair alone: checks_chat).

A rejected answer that is another row's chosen answer teaches the model to push down
an answer it is also taught to prefer; a side that is always longer teaches length
rather than quality (DPO is known to learn that bias). Rows are read through the
normaliser, so every layout the trainer accepts is checked the same way.
"""
from __future__ import annotations

import hashlib

from engine.data.checks import Finding, make

RATIO = 4.0          # one side this many times longer than the other (in characters) ...
MIN_DIFF = 40        # ... and at least this many characters longer: a per-row warning
BIAS_SHARE = 0.9     # chosen longer (or shorter) in this share of the pairs: a dataset warning
BIAS_MIN_PAIRS = 20


def _answers(rows: list[dict], start: int = 0) -> dict[int, tuple[str, str]]:
    from engine.data.errors import RowError
    from engine.data.normalize import normalize_row

    out = {}
    for i, row in enumerate(rows):
        try:
            ex = normalize_row(row, "preference")
        except RowError:
            continue  # checks_chat reports why
        out[start + i] = (ex["messages"][-1]["content"].strip(), ex["rejected"]["content"].strip())
    return out


def _h(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class PairChecks:
    """The checks across pairs, fed batch by batch: per-pair length findings come back
    from `add`; a rejected answer that is another row's chosen one, and the dataset's
    length bias, from `finish`. Keeps 8-byte hashes of both answers per pair, no texts."""

    def __init__(self) -> None:
        self._rows: list[int] = []
        self._chosen: list[bytes] = []
        self._rejected: list[bytes | None] = []
        self._lines: list[int | None] = []
        self.longer = self.shorter = self.pairs = 0

    def add(self, rows: list[dict], lines: list[int | None], start: int = 0) -> list[Finding]:
        out: list[Finding] = []
        for i, (c, r) in _answers(rows, start).items():
            line = lines[i - start]
            self._rows.append(i)
            self._lines.append(line)
            self._chosen.append(_h(c))
            self._rejected.append(_h(r) if r else None)
            lc, lr = len(c), len(r)
            if lc and lr and max(lc, lr) >= RATIO * min(lc, lr) and abs(lc - lr) >= MIN_DIFF:
                side = "chosen" if lc > lr else "rejected"
                out.append(make("length_imbalance", i, line,
                                f"the {side} answer is {max(lc, lr) / min(lc, lr):.1f}x longer "
                                f"({lc} vs {lr} characters)", field=side))
            self.longer += lc > lr
            self.shorter += lc < lr
            self.pairs += 1
        return out

    def finish(self) -> list[Finding]:
        out: list[Finding] = []
        chosen_at: dict[bytes, int] = {}
        for i, c in zip(self._rows, self._chosen):
            chosen_at.setdefault(c, i)
        for i, r, line in zip(self._rows, self._rejected, self._lines):
            j = chosen_at.get(r) if r is not None else None
            if j is not None and j != i:
                out.append(make("rejected_is_other_chosen", i, line,
                                f"the rejected answer is the chosen answer of row {j}", field="rejected"))
        n = self.pairs
        if n >= BIAS_MIN_PAIRS:
            for count, word in ((self.longer, "longer"), (self.shorter, "shorter")):
                if count >= BIAS_SHARE * n:
                    out.append(make("length_imbalance", -1, None,
                                    f"the chosen answer is {word} than the rejected one in {count} of {n} pairs: "
                                    "a preference objective may learn length instead of quality"))
        return out


def check_rows(rows: list[dict], lines: list[int | None], fmt: str) -> list[Finding]:
    if fmt != "preference":
        return []
    pc = PairChecks()
    out = pc.add(rows, lines)
    return out + pc.finish()
