"""GpuPane: per-GPU memory bar, utilisation, temperature, power and a short history,
beside the engine's own allocated/reserved/peak numbers. Without a GPU it says so and
shows the engine process's CPU and RAM instead. A run on several processes shows its
ranks instead (tui.widgets.rank_gauges): tokens/s per rank and one gauge per GPU of every
rank, with the local GPUs' utilisation one line each where there is room. Whatever the
number of GPUs, the lines fold to the pane's height.

Sampling runs on tui.services.gpu_probe.Sampler's thread and arrives here as messages.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from tui.widgets.braille import sparkline
from tui.widgets.gauge import bar, human_bytes, na

if TYPE_CHECKING:
    from tui.services.gpu_probe import ProbeSnapshot, Sampler


class GpuPane(Widget):
    DEFAULT_CSS = """
    GpuPane { height: auto; min-height: 3; }
    """

    class Sampled(Message):
        def __init__(self, snapshot: ProbeSnapshot):
            super().__init__()
            self.snapshot = snapshot

    def __init__(self, ascii_mode: bool = False, pid_source: Callable[[], int | None] = lambda: None,
                 sample: bool = True, **kw):
        super().__init__(**kw)
        self.ascii_mode = ascii_mode
        self.pid_source = pid_source
        self.sample = sample
        self.snapshot: ProbeSnapshot | None = None
        self.engine_memory: list[dict] = []
        self.ranks: tuple | None = None  # (rank memory, tokens/s per rank, total tokens/s) of a multi-process run
        self._sampler: Sampler | None = None

    def on_mount(self) -> None:
        if self.sample:
            # After the first frame: the sampler's thread loads NVML and psutil, and would
            # hold the interpreter while the screen is first drawn.
            self.call_after_refresh(self._start_sampling)

    def _start_sampling(self) -> None:
        if self._sampler is None and self.is_attached:
            from tui.services.gpu_probe import Sampler  # after the first frame, as the sampling is

            self._sampler = Sampler(self._from_thread, self.pid_source).start()

    def on_unmount(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def _from_thread(self, snap: ProbeSnapshot) -> None:
        try:
            self.app.call_from_thread(self.post_message, self.Sampled(snap))
        except Exception:
            pass  # the app is shutting down

    def on_gpu_pane_sampled(self, msg: "GpuPane.Sampled") -> None:
        self.snapshot = msg.snapshot
        self.refresh(layout=True)

    def set_engine_memory(self, devices: list[dict]) -> None:
        if devices != self.engine_memory:
            self.engine_memory = devices
            self.refresh(layout=True)

    def set_ranks(self, rank_memory: list[dict] | None, per_rank_tps: list[float] = (),
                  total_tps: float | None = None) -> None:
        """The ranks of a run on several processes; None goes back to the single-process view."""
        ranks = None if rank_memory is None else (list(rank_memory), list(per_rank_tps), total_tps)
        if ranks != self.ranks:
            self.ranks = ranks
            self.refresh(layout=True)

    def _avail_height(self) -> int | None:
        """Lines the pane can show inside its parent (None before layout)."""
        parent = self.parent
        if parent is None or not getattr(parent, "size", None) or parent.size.height <= 0:
            return None
        return max(parent.size.height - self.styles.gutter.height, 1)

    def get_content_height(self, container, viewport, width: int) -> int:
        # During a layout the room inside the parent is `container` (its content size less this
        # pane's gutter): asking the parent for its size here would arrange the whole screen
        # once more to find it, on every layout.
        room = container.height
        return len(self._lines(width, max(room, 1) if room + self.styles.gutter.height > 0 else None))

    def render(self) -> Text:
        width = self.content_size.width
        lines = self._lines(width, self._avail_height())
        for line in lines:  # joining drops each line's no_wrap, so cut them here
            if line.no_wrap and width > 0:
                line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)

    def _lines(self, width: int, height: int | None) -> list[Text]:
        """The pane's lines at `width`, folded to `height` (None: not known yet)."""
        width = max(width, 20)
        if self.ranks is not None:
            return self._rank_lines(width, height)
        out = self._local_lines(width)
        snap = self.snapshot
        if height is not None and len(out) > height and snap is not None and len(snap.gpus) > 1:
            out = self._folded_gpu_lines(width, height)
        return out

    def _rank_lines(self, width: int, height: int | None) -> list[Text]:
        from tui.widgets.rank_gauges import gauge_lines, gauges, throughput_line  # only runs on several processes

        rank_memory, per_rank, total = self.ranks
        snap = self.snapshot
        out = [throughput_line(per_rank, total, width)]
        left = None if height is None else height - 1
        out += gauge_lines(gauges(rank_memory, snap.proc.ram_total if snap and snap.proc else None),
                           width, left, self.ascii_mode)
        room = None if height is None else height - len(out)
        if snap is not None and snap.gpus and (room is None or room > 0):
            gpus = snap.gpus if room is None or len(snap.gpus) <= room else []
            for g in gpus:  # this machine's GPUs as NVML sees them
                out.append(Text.assemble((f"GPU{g.index} ", "dim"), "util ", na(g.util, unit="%"),
                                         "  ", na(g.temp, unit="°C" if not self.ascii_mode else "C"),
                                         "  ", na(g.power, unit=" W"), no_wrap=True, overflow="ellipsis"))
            if not gpus:
                utils = [g.util for g in snap.gpus if g.util is not None]
                spread = f"{min(utils):.0f}-{max(utils):.0f}%" if utils else "N/A"
                out.append(Text(f"{len(snap.gpus)} local GPUs: util {spread}", style="dim", no_wrap=True,
                                overflow="ellipsis"))
        elif snap is not None and snap.proc is not None and snap.proc.pid is not None and (room is None or room > 0):
            out.append(Text.assemble(("engine pid ", "dim"), f"{snap.proc.pid} ", ("CPU ", "dim"),
                                     na(snap.proc.cpu, unit="%"), ("  all ranks", "dim"),
                                     no_wrap=True, overflow="ellipsis"))
        return out

    def _folded_gpu_lines(self, width: int, height: int) -> list[Text]:
        """Many local GPUs in a short pane: one line each (memory bar, memory and util),
        or two a line (memory %, then the utilisation spread) when even that is too many."""
        gpus = self.snapshot.gpus

        def cell(g, w: int, util: bool) -> Text:
            frac = g.mem_used / g.mem_total if g.mem_used is not None and g.mem_total else None
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f"GPU{g.index} ", "bold")
            mem = na(frac * 100 if frac is not None else None, unit="%")
            num = f" mem {mem} util {na(g.util, unit='%')}" if util else f" {mem}"
            t.append(bar(frac, max(w - len(t.plain) - len(num), 2), self.ascii_mode), "green")
            t.append(num)
            return t

        if len(gpus) <= height:
            return [cell(g, width, True) for g in gpus]
        half = (width - 1) // 2
        out = []
        for i in range(0, len(gpus), 2):
            t = cell(gpus[i], half, False)
            if i + 1 < len(gpus):
                t.append(" ")
                t.append_text(cell(gpus[i + 1], half, False))
            out.append(t)
        if len(out) > height:
            out = out[:height - 1] + [Text(f"+{len(gpus) - 2 * (height - 1)} more GPUs", style="bold")]
        elif len(out) < height:
            utils = [g.util for g in gpus if g.util is not None]
            spread = f"{min(utils):.0f}-{max(utils):.0f}%" if utils else "N/A"
            out.append(Text(f"memory used; util {spread}", style="dim", no_wrap=True, overflow="ellipsis"))
        return out

    def _local_lines(self, width: int) -> list[Text]:
        snap = self.snapshot
        out: list[Text] = []
        if snap is None:
            out.append(Text("sampling devices...", style="dim"))
        elif snap.gpus:
            compact = self.has_class("compact") or self.app.has_class("compact")
            for g in snap.gpus:
                frac = g.mem_used / g.mem_total if g.mem_used is not None and g.mem_total else None
                t = Text(no_wrap=True, overflow="ellipsis")
                t.append(f"GPU{g.index} ", "bold")
                num = f" {human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}"
                t.append(bar(frac, max(width - len(t.plain) - len(num), 4), self.ascii_mode), "green")
                t.append(num)
                out.append(t)
                d = Text(no_wrap=True, overflow="ellipsis")
                d.append(" util ", "dim")
                d.append(na(g.util, unit="%"))
                d.append("  temp ", "dim")
                d.append(na(g.temp, unit="°C" if not self.ascii_mode else "C"))
                d.append("  power ", "dim")
                d.append(na(g.power, unit=" W") + (f"/{g.power_limit:.0f} W" if g.power_limit else ""))
                out.append(d)
                hist = snap.util_history.get(g.index)
                if hist and not compact:
                    h = Text(" util ", style="dim", no_wrap=True)
                    h.append_text(sparkline(hist, max(width - 6, 4), self.ascii_mode, style="cyan"))
                    out.append(h)
        else:
            # One line, so the engine's CPU and RAM stay visible in the compact layout.
            out.append(Text(snap.no_gpu_reason or "No GPU found.", style="yellow", no_wrap=True, overflow="ellipsis"))
            p = snap.proc
            if p is None or p.pid is None:
                out.append(Text(" engine: no live engine process", style="dim"))
            else:
                t = Text(no_wrap=True, overflow="ellipsis")
                t.append(f" engine pid {p.pid} ", "bold")
                t.append("CPU ", "dim")
                t.append(na(p.cpu, unit="%"))
                out.append(t)
                frac = p.rss / p.ram_total if p.rss is not None and p.ram_total else None
                r = Text(no_wrap=True, overflow="ellipsis")
                r.append(" RAM ", "dim")
                num = f" {human_bytes(p.rss)}/{human_bytes(p.ram_total)}"
                r.append(bar(frac, max(width - 5 - len(num), 4), self.ascii_mode), "green")
                r.append(num)
                out.append(r)
        for d in self.engine_memory:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f" engine dev{d.get('index', '?')} ", "dim")
            t.append(f"alloc {human_bytes(d.get('allocated'))}  res {human_bytes(d.get('reserved'))}  "
                     f"peak {human_bytes(d.get('peak'))}")
            out.append(t)
        return out
