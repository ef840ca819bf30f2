"""Base vs fine-tuned scores side by side with coloured deltas, every eval set as
baseline -> tuned with regressions highlighted, the judge's win rate with the path of its
verdicts, and the sample generations."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable, Static

from engine.evaluate.evaluate import HEADLINE_KEYS as SET_KEYS
from engine.evaluate.evaluate import improved

LABELS = (("loss", "loss"), ("perplexity", "perplexity"), ("exact_match", "exact match"),
          ("json_valid", "valid JSON"), ("field_accuracy", "field accuracy"), ("rouge_l", "ROUGE-L"),
          ("contains", "contains"), ("regex_match", "regex"), ("schema_valid", "schema valid"),
          ("refusal_rate", "refusal rate"))

CELL = 60   # characters of a generation shown in the samples table


def _num(v) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.4f}"


def delta_text(key: str, d) -> Text:
    if not isinstance(d, (int, float)):
        return Text("-", "dim")
    if d == 0:
        return Text(f"{d:+.4f}", "dim")
    return Text(f"{d:+.4f}", "bold green" if improved(key, d) else "bold red")


def scores_table(res: dict) -> Table:
    """metric | base | fine-tuned | delta for every score the evaluation has."""
    t = Table(box=None, header_style="bold", padding=(0, 1), expand=False)
    for col in ("metric", "base", "fine-tuned", "delta"):
        t.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
    base, tuned, delta = res.get("base") or {}, res.get("tuned") or {}, res.get("delta") or {}
    for key, label in LABELS:
        if key in base or key in tuned:
            t.add_row(label, _num(base.get(key)), _num(tuned.get(key)), delta_text(key, delta.get(key)))
    return t


def sets_table(res: dict) -> Table | None:
    """set | metric | baseline | (prompt-only) | tuned | delta for every eval set beyond the
    held-out split's own table; a regression's row is red and marked."""
    sets = res.get("sets") or {}
    if len(sets) < 2:
        return None
    flagged = {(r.get("set"), r.get("metric")) for r in res.get("regressions") or []}
    prompted = any("prompted" in e for e in sets.values())
    t = Table(box=None, header_style="bold", padding=(0, 1), expand=False)
    cols = ("eval set", "metric", "baseline", *(("prompt-only",) if prompted else ()), "tuned", "delta")
    for col in cols:
        t.add_column(col, justify="left" if col in ("eval set", "metric") else "right", no_wrap=True)
    for name, e in sets.items():
        base, tuned = e.get("base") or {}, e.get("tuned") or {}
        keys = [k for k in ("loss",) if k in base] + [next((k for k in SET_KEYS[:-1] if k in base or k in tuned), None)]
        for key in dict.fromkeys(k for k in keys if k):
            bad = (name, key) in flagged
            label = dict(LABELS)[key]
            d = (e.get("delta") or {}).get(key)
            delta = Text("REGRESSION " + (f"{d:+.4f}" if isinstance(d, (int, float)) else ""), "bold red") \
                if bad else delta_text(key, d)
            row = [Text(name, "bold red" if bad else ""), label, _num(base.get(key))]
            if prompted:
                row.append(_num((e.get("prompted") or {}).get(key)))
            t.add_row(*row, _num(tuned.get(key)), delta)
    return t


def judge_text(res: dict) -> Text | None:
    """The judge's win rate and where its raw verdicts are, or why there was no judging."""
    j = res.get("judge")
    if not j:
        return None
    if j.get("skipped"):
        return Text(f"judge: {j['skipped']}", "dim")
    t = Text("judge ", "bold")
    wr = j.get("win_rate")
    t.append(f"{j.get('model')} ({j.get('mode')}): ")
    if isinstance(wr, (int, float)):
        t.append(f"fine-tuned wins {wr * 100:.0f}%", "bold green" if wr > 0.5 else "bold red" if wr < 0.5 else "bold")
    else:
        t.append("no verdict", "bold yellow")
    v = j.get("verdicts") or {}
    t.append(f" of {j.get('judged', 0)} (" + ", ".join(f"{k} {v[k]}" for k in ("tuned", "base", "tie", "unparsed",
                                                                                 "failed") if v.get(k)) + ")")
    if j.get("path"):
        t.append("  verdicts: ")
        t.append(str(j["path"]), f"underline link file://{j['path']}")
    return t


def headline(res: dict) -> Text:
    t = Text()
    t.append(f"{res.get('split', '?')} split", "bold")
    t.append(f", {res.get('examples', '?')} examples, {res.get('generated', 0)} generated")
    if res.get("time_s") is not None:
        t.append(f", {res['time_s']:.0f} s", "dim")
    if res.get("note"):
        t.append(f"\nnote: {res['note']}", "yellow")
    return t


class EvalScores(Static):
    """The results table, or a line saying why there is none (yet)."""

    DEFAULT_CSS = "EvalScores { height: auto; padding: 0 1; }"
    shown = None  # the last renderable, for plain-text readers

    def show(self, res: dict | None, state: str = "") -> None:
        from rich.console import Group

        parts: list = []
        if state:
            parts.append(Text(state, "bold red" if state.startswith("the last") else "bold yellow"))
        if res:
            parts += [headline(res), scores_table(res)]
            extra = [sets_table(res), judge_text(res)]
            parts += [x for x in extra if x is not None]
            if res.get("regressions"):
                parts.append(Text(f"{len(res['regressions'])} regression(s) beyond eval.regression_threshold "
                                  f"{res.get('regression_threshold', '')}: the fine-tune got worse on "
                                  + ", ".join(sorted({r['set'] for r in res['regressions']})), "bold red"))
            b = res.get("baseline") or {}
            if b.get("reused"):
                parts.append(Text("baseline reused from the stored one (`ftwb eval --base`)", "dim"))
        elif not state:
            parts.append(Text("Not evaluated yet: press e to run `ftwb eval` on this run.", "dim"))
        self.shown = Group(*parts)
        self.update(self.shown)


def _cell(text, n: int = CELL) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


class SamplesTable(DataTable):
    """prompt | reference | base | fine-tuned, one row per generated sample."""

    DEFAULT_CSS = "SamplesTable { height: 1fr; }"

    COLUMNS = ("#", "prompt", "reference", "base", "fine-tuned")
    samples: list[dict] = []
    _width = 0

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*self.COLUMNS)

    def show(self, samples: list[dict]) -> None:
        from tui.services.run_actions import prompt_text

        self.clear(columns=True)  # column widths follow this run's samples, not the last one's
        self.add_columns(*self.COLUMNS)
        self.samples, self._width = samples, self.size.width or self.app.size.width
        n = max(16, (self._width - 20) // 4 - 3)  # four text columns (and their padding) share the width
        for i, s in enumerate(samples):
            ts, bs = s.get("tuned_scores") or {}, s.get("base_scores") or {}
            mark = lambda sc: "✓ " if sc.get("exact_match") else ""  # noqa: E731 - an exact hit stands out
            self.add_row(str(s.get("index", i)), _cell(prompt_text(s), n), _cell(s.get("reference"), n),
                         Text(mark(bs) + _cell(s.get("base"), n)), Text(mark(ts) + _cell(s.get("tuned"), n)),
                         key=str(i))

    def on_resize(self, event) -> None:
        if self.samples and event.size.width != self._width:
            self.show(self.samples)
