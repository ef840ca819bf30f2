"""Chart drawing: downsampling keeps every column's extremes, braille and ASCII output,
log scale, smoothing, markers and the eighth-block gauge bars."""
from __future__ import annotations

import numpy as np

from tui.services.series import Series, downsample, smooth, window
from tui.widgets.braille import ChartLine, ChartOptions, Marker, render_chart, sparkline
from tui.widgets.gauge import bar, human_bytes, na


def test_downsample_keeps_min_and_max_of_each_column():
    x = np.arange(10_000, dtype=float)
    y = np.zeros(10_000)
    y[5_000] = 9.0   # a single spike must survive the reduction
    y[7_321] = -4.0
    cols, mins, maxs = downsample(x, y, 0, 9_999, 100)
    assert len(cols) == 100 and len(set(cols.tolist())) == 100
    assert maxs.max() == 9.0 and mins.min() == -4.0


def test_downsample_drops_non_finite_points():
    x = np.arange(5, dtype=float)
    y = np.array([1.0, np.nan, np.inf, 2.0, 3.0])
    cols, mins, maxs = downsample(x, y, 0, 4, 5)
    assert cols.tolist() == [0, 3, 4] and maxs.tolist() == [1.0, 2.0, 3.0]


def test_series_append_drops_the_tail_a_resume_repeats():
    s = Series("loss")
    for step in range(1, 11):
        s.append(step, float(step))
    s.append(6, 60.0)  # resumed from the checkpoint at step 5
    assert s.x.tolist() == [1, 2, 3, 4, 5, 6] and s.y[-1] == 60.0


def test_window_and_smoothing():
    x = np.arange(1, 1001, dtype=float)
    y = np.where(x % 2 == 0, 2.0, 0.0)
    wx, wy = window(x, y, 100)
    assert wx[0] == 900 and wx[-1] == 1000
    sm = smooth(y, 10)
    assert abs(sm[-1] - 1.0) < 1e-9 and len(sm) == len(y)


def _lines(n=100_000):
    x = np.arange(1, n + 1, dtype=float)
    return [ChartLine("train", x, 3 * np.exp(-x / (n / 4)) + 0.5, "cyan"),
            ChartLine("val", x[::250], 3 * np.exp(-x[::250] / (n / 4)) + 0.7, "yellow")]


def test_braille_chart_has_the_requested_size_and_only_braille_in_the_plot():
    text = render_chart(_lines(), 60, 12, ChartOptions())
    rows = text.plain.split("\n")
    assert len(rows) == 12 and all(len(r) <= 60 for r in rows)
    plot = "".join(r[9:] for r in rows[:-1])
    assert any(0x2801 <= ord(c) <= 0x28FF for c in plot)
    assert set(plot) <= {" "} | {chr(c) for c in range(0x2800, 0x2900)}
    assert rows[-1].strip().startswith("└1") and rows[-1].rstrip().endswith("1.00e+05")


def test_ascii_chart_uses_ascii_only():
    text = render_chart(_lines(2_000), 50, 10, ChartOptions(ascii=True, log_y=True,
                                                             markers=[Marker(1_000, 1.5, "green")]))
    assert text.plain.isascii()
    assert "*" in text.plain  # the best-step marker


def test_marker_is_drawn_where_the_best_step_is():
    x = np.arange(0, 101, dtype=float)
    text = render_chart([ChartLine("t", x, x.copy(), "")], 40, 10,
                        ChartOptions(markers=[Marker(100, 100, "green")], y_label_width=5))
    rows = text.plain.split("\n")
    assert rows[0].rstrip().endswith("◆")  # the top-right cell


def test_empty_chart_says_it_is_waiting():
    assert "waiting for data" in render_chart([], 40, 8).plain


def test_sparkline_is_one_row_on_a_fixed_scale():
    t = sparkline([0, 50, 100, float("nan"), 25], 10)
    assert "\n" not in t.plain and len(t.plain) <= 10


def test_gauge_bar_uses_eighth_blocks():
    assert bar(0.5, 10) == "█████     "
    assert bar(0.0625, 10) == "▋         "   # 5/8 of one cell
    assert bar(0.05, 10) == "▌         "    # 4/8
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 10, ascii_mode=True) == "#####-----"
    assert bar(None, 3) == "···"
    assert human_bytes(3 * (1 << 30)) == "3.0 GiB" and na(None) == "N/A" and na(87.2, unit="%") == "87%"
