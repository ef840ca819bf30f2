"""Line charts drawn into a Rich Text with braille dots (U+2800 block), or ASCII.

Pure drawing: give it series, a size and options, get a Text back. Every series is
first reduced to at most two points per pixel column (per-column min and max), then
each column is drawn as a vertical span joined to its neighbour, so a 100,000-point
series draws as fast as a 200-point one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.text import Text

from tui.services.series import downsample, nice_range

# numpy is imported inside the functions that draw data: an empty chart (the first frame
# before any run) needs none of it.

# Braille dot bit for (dx, dy) inside a 2x4 cell.
_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
# ASCII cells are 1x3: top, middle, bottom.
_ASCII_CHARS = {0: " ", 1: "'", 2: "-", 4: "_", 3: "|", 5: "|", 6: "|", 7: "|"}


@dataclass
class ChartLine:
    name: str
    x: np.ndarray
    y: np.ndarray
    style: str = ""


@dataclass
class Marker:
    x: float
    y: float
    style: str = ""
    char: str = "◆"
    ascii_char: str = "*"


@dataclass
class ChartOptions:
    log_y: bool = False
    ascii: bool = False
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    y_label_width: int = 8
    axis_style: str = "dim"
    show_x_axis: bool = True
    markers: list[Marker] = field(default_factory=list)


def fmt_num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4g}"


def _ty(y: np.ndarray, log: bool) -> np.ndarray:
    if not log:
        return y
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)


class _Canvas:
    def __init__(self, cols: int, rows: int, ascii_mode: bool):
        self.cols, self.rows = cols, rows
        self.sx, self.sy = (1, 3) if ascii_mode else (2, 4)
        self.w, self.h = cols * self.sx, rows * self.sy
        self.bits = [[0] * cols for _ in range(rows)]
        self.style = [[""] * cols for _ in range(rows)]
        self.chars: dict[tuple[int, int], tuple[str, str]] = {}
        self.ascii = ascii_mode

    def dot(self, px: int, py: int, style: str) -> None:
        if 0 <= px < self.w and 0 <= py < self.h:
            c, r = px // self.sx, py // self.sy
            if self.ascii:
                self.bits[r][c] |= 1 << (py % self.sy)
            else:
                self.bits[r][c] |= _BRAILLE_BITS[py % 4][px % 2]
            self.style[r][c] = style

    def vspan(self, px: int, py0: int, py1: int, style: str) -> None:
        if py0 > py1:
            py0, py1 = py1, py0
        for py in range(max(py0, 0), min(py1, self.h - 1) + 1):
            self.dot(px, py, style)

    def line(self, x0: int, y0: int, x1: int, y1: int, style: str) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, style)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def put(self, col: int, row: int, char: str, style: str) -> None:
        if 0 <= col < self.cols and 0 <= row < self.rows:
            self.chars[(row, col)] = (char, style)

    def rows_text(self) -> list[Text]:
        out = []
        for r in range(self.rows):
            t = Text(no_wrap=True, overflow="crop")
            run, run_style = [], None
            for c in range(self.cols):
                if (r, c) in self.chars:
                    ch, st = self.chars[(r, c)]
                else:
                    b = self.bits[r][c]
                    ch = (_ASCII_CHARS[b] if self.ascii else chr(0x2800 + b)) if b else " "
                    st = self.style[r][c] if b else ""
                if st != run_style and run:
                    t.append("".join(run), run_style or None)
                    run = []
                run_style = st
                run.append(ch)
            if run:
                t.append("".join(run), run_style or None)
            out.append(t)
        return out


def render_chart(lines: list[ChartLine], width: int, height: int, opts: ChartOptions | None = None) -> Text:
    """Draw `lines` into width x height cells (labels included)."""
    opts = opts or ChartOptions()
    lw = opts.y_label_width
    cols = width - lw - 1
    rows = height - (1 if opts.show_x_axis else 0)
    if cols < 4 or rows < 1:
        return Text("(too small to draw)", style="dim")
    canvas = _Canvas(cols, rows, opts.ascii)
    # x range: union of all series (or the one given)
    if opts.x_range is not None:
        x0, x1 = opts.x_range
    else:
        xs = [(float(l.x[0]), float(l.x[-1])) for l in lines if len(l.x)]
        if not xs:
            return _frame(canvas, [Text(" " * cols)] * rows, lw, rows, None, None, None, opts, "waiting for data")
        x0, x1 = min(a for a, _ in xs), max(b for _, b in xs)
    import numpy as np

    reduced = []
    lo, hi = math.inf, -math.inf
    for l in lines:
        if not len(l.x):
            continue
        sel = (l.x >= x0) & (l.x <= x1)
        cx, mins, maxs = downsample(l.x[sel], _ty(l.y[sel], opts.log_y), x0, x1, canvas.w)
        if len(cx):
            lo, hi = min(lo, float(mins.min())), max(hi, float(maxs.max()))
        reduced.append((l, cx, mins, maxs))
    if opts.y_range is not None:
        y0, y1 = (_ty(np.array(opts.y_range, dtype=float), opts.log_y)).tolist()
    else:
        y0, y1 = nice_range(lo, hi)
    span = (y1 - y0) or 1.0

    def py(v: float) -> int:
        return int(round((y1 - v) / span * (canvas.h - 1)))

    for l, cx, mins, maxs in reduced:
        prev = None  # (px, py of the end nearest the next column)
        for px, mn, mx in zip(cx.tolist(), mins.tolist(), maxs.tolist()):
            top, bot = py(mx), py(mn)
            if prev is not None:
                ppx, ppy = prev
                if px - ppx > 1:
                    target = min(max(ppy, top), bot)
                    canvas.line(ppx, ppy, px, target, l.style)
                else:
                    top, bot = min(top, ppy), max(bot, ppy)
            canvas.vspan(px, top, bot, l.style)
            mid = py((mn + mx) / 2)
            prev = (px, mid)
    for m in opts.markers:
        if not (x0 <= m.x <= x1):
            continue
        ty = _ty(np.array([m.y], dtype=float), opts.log_y)[0]
        if not math.isfinite(ty):
            continue
        pxm = int(round((m.x - x0) / ((x1 - x0) or 1.0) * (canvas.w - 1)))
        canvas.put(pxm // canvas.sx, py(ty) // canvas.sy, m.ascii_char if opts.ascii else m.char, m.style)
    return _frame(canvas, canvas.rows_text(), lw, rows, (x0, x1), (y0, y1), canvas, opts, None)


def _frame(canvas, body: list[Text], lw: int, rows: int, xr, yr, _c, opts: ChartOptions, note: str | None) -> Text:
    axis = "|" if opts.ascii else "│"
    labels = [""] * rows
    if yr is not None:
        y0, y1 = yr
        conv = (lambda v: 10 ** v) if opts.log_y else (lambda v: v)
        labels[0] = fmt_num(conv(y1))
        labels[-1] = fmt_num(conv(y0))
        if rows >= 5:
            labels[rows // 2] = fmt_num(conv(y1 - (y1 - y0) * (rows // 2) / (rows - 1)))
    out = Text(no_wrap=True, overflow="crop")
    for r in range(rows):
        out.append(labels[r][:lw].rjust(lw), opts.axis_style)
        out.append(axis, opts.axis_style)
        row = body[r]
        if note and r == rows // 2:
            row = Text(note.center(canvas.cols)[: canvas.cols], style="dim")
        out.append_text(row)
        out.append("\n")
    if opts.show_x_axis:
        cols = canvas.cols
        corner = "+" if opts.ascii else "└"
        if xr is not None:
            a, b = fmt_num(xr[0]), fmt_num(xr[1])
            gap = max(cols - len(a) - len(b), 1)
            out.append(" " * lw + corner + a + " " * gap + b, opts.axis_style)
        else:
            out.append(" " * lw + corner + ("-" if opts.ascii else "─") * cols, opts.axis_style)
    else:
        out.rstrip()
    return out


def sparkline(values: list[float], width: int, ascii_mode: bool = False, lo: float = 0.0, hi: float = 100.0,
              style: str = "") -> Text:
    """One-row history on a fixed scale (0-100 % by default); NaN is a gap."""
    import numpy as np

    vals = values[-width * (1 if ascii_mode else 2):]
    x = np.arange(len(vals), dtype=float)
    opts = ChartOptions(ascii=ascii_mode, y_range=(lo, hi), y_label_width=0, show_x_axis=False,
                        x_range=(0.0, float(max(len(vals) - 1, 1))))
    t = render_chart([ChartLine("h", x, np.array(vals, dtype=float), style)], width + 1, 1, opts)
    return t[1:] if len(t) else t
