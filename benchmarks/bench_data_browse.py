"""Data workbench browsing at scale: generate a 1M-row chat JSONL in /tmp, then time the
first page (from the first bytes, before the index is done), the full line-index build,
a page read far down the file, and report peak RSS.

    .venv/bin/python benchmarks/bench_data_browse.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.services.dataset_index import LineIndex, LineSource  # noqa: E402
from tui.widgets.data.rows_table import summary  # noqa: E402


def generate(path: Path, n: int) -> None:
    if path.exists() and path.stat().st_size > 0 and path.with_suffix(".n").exists() \
            and path.with_suffix(".n").read_text() == str(n):
        return
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Question {i}: where is my order?"},
                                              {"role": "assistant", "content": f"Answer {i}: it ships today."}]})
                     + "\n")
    path.with_suffix(".n").write_text(str(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--path", default="/tmp/ftwb-bench-browse.jsonl")
    args = ap.parse_args()
    path = Path(args.path)
    t = time.perf_counter()
    generate(path, args.rows)
    print(f"file: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.rows:,} rows; ready in {time.perf_counter() - t:.1f}s)")

    index = LineIndex(path)
    src = LineSource(index)
    first = threading.Event()
    t0 = time.perf_counter()
    first_rows: list = []

    def progress(done, total, rows):
        if rows and not first.is_set():
            first_rows.extend(summary(r.data) for r in src.rows(0, 40))  # what the table draws
            first.set()
    th = threading.Thread(target=index.build, args=(progress,))
    th.start()
    first.wait()
    t_first = time.perf_counter() - t0
    th.join()
    t_index = time.perf_counter() - t0
    assert len(index) == args.rows, (len(index), args.rows)
    print(f"time to first rows:   {t_first * 1000:8.1f} ms  ({first_rows[0][:40]!r} …)")
    print(f"index build:          {t_index * 1000:8.1f} ms  ({len(index):,} rows, "
          f"{sum(a.nbytes for a in index.snapshot()) / 1e6:.0f} MB of offsets)")
    src.invalidate()
    lat = []
    for target in (args.rows // 2, args.rows - 40, args.rows * 9 // 10, 123_457 % args.rows):
        t1 = time.perf_counter()
        page = [summary(r.data) for r in src.rows(target, 40)]
        lat.append(time.perf_counter() - t1)
        assert f"Question {target}:" in page[0]
    print(f"scroll latency:       {max(lat) * 1000:8.1f} ms  (worst of {len(lat)} cold 40-row pages far down)")
    print(f"peak RSS:             {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")


if __name__ == "__main__":
    main()
