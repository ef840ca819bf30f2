"""Bars drawn with full blocks plus an eighth-block remainder (ASCII: # and -)."""
from __future__ import annotations

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float | None, width: int, ascii_mode: bool = False) -> str:
    """A bar `width` cells wide filled to `fraction` (0..1); None draws an empty track."""
    if width <= 0:
        return ""
    if fraction is None or fraction != fraction:
        return ("." if ascii_mode else "·") * width
    f = min(max(fraction, 0.0), 1.0)
    if ascii_mode:
        n = int(round(f * width))
        return "#" * n + "-" * (width - n)
    eighths = int(round(f * width * 8))
    full, rem = divmod(eighths, 8)
    s = "█" * full
    if full < width:
        s += (_EIGHTHS[rem] if rem else " ") + " " * (width - full - 1)
    return s


def human_bytes(n: float | None) -> str:
    if n is None:
        return "N/A"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def na(v, fmt: str = "{:.0f}", unit: str = "") -> str:
    """Format a sampled field, N/A when the sample failed."""
    if v is None or v != v:
        return "N/A"
    return fmt.format(v) + unit
