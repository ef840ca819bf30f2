"""Check findings grouped by check, with counts and severity; choosing one jumps to its row."""
from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

PER_CHECK = 200   # findings listed per check (the count covers them all)


class FindingsList(OptionList):
    DEFAULT_CSS = """
    FindingsList { height: 1fr; }
    """

    class Jump(Message):
        def __init__(self, row: int, check: str):
            super().__init__()
            self.row, self.check = row, check

    def __init__(self, **kw):
        super().__init__(**kw)
        self.findings: list = []

    def show(self, findings: list, note: str, running: bool = False) -> None:
        """List `findings`; `running`: checks are still going (note is their progress line)."""
        from engine.data.checks import CHECKS, counts

        self.findings = findings
        highlighted = self.highlighted
        self.clear_options()
        cnt = counts(findings)
        errors = sum(1 for f in findings if f.severity == "error")
        so_far = " so far" if running else ""
        opts = [Option(Text(f"{len(findings)} findings ({errors} errors){so_far} · {note}",
                            "bold yellow" if running else "bold"), disabled=True)]
        if not findings:
            opts.append(Option(Text("no problems found" + so_far, "dim" if running else "green"), disabled=True))
        by_check: dict[str, list[int]] = {}
        for k, f in enumerate(findings):
            by_check.setdefault(f.check, []).append(k)
        for cid, n in cnt.items():
            sev = CHECKS[cid].severity if cid in CHECKS else "warning"
            head = Text()
            head.append("■ " if sev == "error" else "▲ ", "bold red" if sev == "error" else "bold yellow")
            head.append(f"{cid} ", "bold")
            head.append(f"{n}", "bold")
            head.append(f"  {CHECKS[cid].description if cid in CHECKS else ''}", "dim")
            opts.append(Option(head, id=f"check:{cid}"))
            for k in by_check[cid][:PER_CHECK]:
                f = findings[k]
                where = (f"line {f.line}" if f.line is not None else f"row {f.row}") if f.row >= 0 else "dataset"
                opts.append(Option(Text.assemble(("   ", ""), (f"{where:>10} ", "dim"), f.message[:160]),
                                   id=f"f:{k}"))
            if n > PER_CHECK:
                opts.append(Option(Text(f"   … {n - PER_CHECK} more (filter the table by check:{cid})", "dim"),
                                   disabled=True))
        self.add_options(opts)
        if running and highlighted is not None and highlighted < len(opts):
            self.highlighted = highlighted  # a redraw while checks run keeps the reader's place

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id or ""
        event.stop()
        if oid.startswith("f:"):
            f = self.findings[int(oid[2:])]
            self.post_message(self.Jump(f.row, f.check))
        elif oid.startswith("check:"):
            self.post_message(self.Jump(-1, oid[6:]))
