"""The effective batch (micro x accum x devices) and the optimizer steps the run will
take, as one or two lines."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.services.config_estimate import StepsInfo


class BatchSummary(Static):
    def show(self, mbs: int, ga: int, info: StepsInfo, auto_fit: str = "", all_unknown: bool = False,
             strategy_note: str = "") -> None:
        """`all_unknown`: train.devices is 'all' and NVML counts no GPU here;
        `strategy_note`: how several processes share the model (the estimate is per device)."""
        t = Text()
        t.append("effective batch ", style="bold")
        if info.devices > 1 or all_unknown:
            # Several processes: each trains micro x accum per step, the step is all of theirs.
            t.append(f"micro {mbs} × accum {ga} × ")
            if all_unknown:  # the engine then trains on what torch counts; no GPU: one process
                t.append("all GPUs (none seen here: 1 process) = ")
                t.append(f"{mbs * ga}", style="bold cyan")
                t.append("\n")
            else:
                t.append(f"{info.devices} devices = ")
                t.append(f"{info.effective_batch}", style="bold cyan")
                t.append("\n")
        else:
            t.append(f"{info.effective_batch}", style="bold cyan")
            t.append(f" = {mbs} micro x {ga} accum x {info.devices} device{'s' if info.devices > 1 else ''}\n")
        t.append("optimizer steps ", style="bold")
        if info.steps is None:
            t.append("unknown", style="yellow")
            t.append(f" ({info.how})", style="dim")
        else:
            t.append(("≈ " if info.approximate else "") + f"{info.steps}", style="bold cyan")
            rows = f"{info.train_rows} train rows; " if info.train_rows is not None else ""
            t.append(f" ({rows}{info.how}" + ("; approximate" if info.approximate else "") + ")", style="dim")
        if strategy_note and (info.devices > 1 or all_unknown):
            t.append("\nmemory ", style="bold")
            t.append("the estimate above is per device; " + strategy_note, style="dim")
        if auto_fit:
            t.append("\nauto-fit ", style="bold")
            t.append(auto_fit, style="dim")
        self.update(t)
        self.effective_batch, self.steps = info.effective_batch, info.steps
