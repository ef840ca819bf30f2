"""Data workbench browsing at scale, through the sources the Data screen opens: a generated
5M-row chat JSONL (~5 GB), a 1M-row Parquet file and a 1M-row CSV, each measured in a fresh
child process (so the generator's memory does not count): time to the first rows on screen,
the full index build / column scan, sorting by length, cold pages far down, and peak RSS
(VmHWM). The Parquet file is also read whole with engine.data.load, the way the screen read
it before it was paged, as the peer. Files go to a temporary directory, deleted afterwards.

    .venv/bin/python benchmarks/bench_data_browse.py [--rows 5000000] [--parquet-rows 1000000]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILLER = "lorem ipsum dolor sit amet " * 16  # ~430 chars: rows of about 1 KB


def _vmhwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- generators

def gen_jsonl(path: Path, n: int) -> None:
    tmpl = ('{"messages": [{"role": "user", "content": "Question %d: ' + FILLER + '"}, '
            '{"role": "assistant", "content": "Answer %d: ' + FILLER + '"}]}\n')
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as fh:
        for a in range(0, n, 10_000):
            fh.write("".join(tmpl % (i, i) for i in range(a, min(n, a + 10_000))))


def gen_parquet(path: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.schema([("prompt", pa.string()), ("completion", pa.string())])) as w:
        for a in range(0, n, 100_000):
            r = range(a, min(n, a + 100_000))
            w.write_table(pa.table({"prompt": [f"Question {i}: {FILLER[: i % 400]}" for i in r],
                                    "completion": [f"Answer {i}: it ships today." for i in r]}),
                          row_group_size=100_000)


def gen_csv(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 22) as fh:
        fh.write("prompt,completion\n")
        for a in range(0, n, 10_000):  # every 10th record has a quoted field across two lines
            fh.write("".join(f'"Question {i}: where, exactly?{chr(10) if i % 10 == 0 else " "}ok",Answer {i}\n'
                             for i in range(a, min(n, a + 10_000))))


# ---------------------------------------------------------------- child: one measurement

def child(kind: str, path: str, n: int) -> dict:
    from tui.services.dataset_session import Workbench, apply_filter, open_source
    from tui.widgets.data.rows_table import summary

    out: dict = {}
    t0 = time.perf_counter()
    if kind == "parquet-load":  # the peer: the whole file as Python rows
        from engine.data.load import load_rows

        res = load_rows(path)
        out["first_rows_s"] = out["full_s"] = time.perf_counter() - t0
        assert len(res.rows) == n
        out["rss_mb"] = _vmhwm_mb()
        return out
    src, _ = open_source(path)
    first = threading.Event()
    if hasattr(src, "index"):
        def progress(done, total, rows):
            if rows and not first.is_set():
                [summary(r.data) for r in src.rows(0, 40)]  # what the table draws
                out["first_rows_s"] = time.perf_counter() - t0
                first.set()
        th = threading.Thread(target=src.index.build, args=(progress,))
        th.start()
        th.join()
        out["full_s"] = time.perf_counter() - t0
        out["full_what"] = "index build"
        out["index_mb"] = sum(a.nbytes for a in src.index.snapshot()) / 1e6
    else:
        [summary(r.data) for r in src.rows(0, 40)]
        out["first_rows_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        src.lengths()
        out["full_s"] = time.perf_counter() - t1
        out["full_what"] = "length column scan"
    assert len(src) == n, (len(src), n)
    t1 = time.perf_counter()
    order = apply_filter(Workbench(src), "sort:-len")
    out["sort_s"] = time.perf_counter() - t1
    assert len(order) == n
    lat = []
    key = "content" if kind == "jsonl" else "prompt"
    for target in (n - 40, n // 2, n * 9 // 10, 123_457 % n, 1_000 % n):
        src.invalidate()
        t1 = time.perf_counter()
        page = src.rows(target, 40)
        [summary(r.data) for r in page]
        lat.append(time.perf_counter() - t1)
        text = json.dumps(page[0].data)
        assert f"Question {target}:" in text and key in text, text[:80]
    out["far_page_ms"] = max(lat) * 1000
    out["rss_mb"] = _vmhwm_mb()
    return out


def run_child(kind: str, path: Path, n: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", kind, str(path), str(n)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000, help="JSONL rows (~1 KB each)")
    ap.add_argument("--parquet-rows", type=int, default=1_000_000)
    ap.add_argument("--csv-rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    tmp = Path(tempfile.mkdtemp(prefix="ftwb-bench-browse-"))
    try:
        plan = [("jsonl", tmp / "chat.jsonl", args.rows, gen_jsonl),
                ("parquet", tmp / "pairs.parquet", args.parquet_rows, gen_parquet),
                ("csv", tmp / "pairs.csv", args.csv_rows, gen_csv)]
        results = []
        for kind, path, n, gen in plan:
            t = time.perf_counter()
            gen(path, n)
            print(f"{kind:8} {path.stat().st_size / 1e9:6.2f} GB, {n:,} rows (generated in "
                  f"{time.perf_counter() - t:.0f} s)", flush=True)
            results.append((kind, n, run_child(kind, path, n)))
            if kind == "parquet":
                results.append(("parquet, read whole (before)", n, run_child("parquet-load", path, n)))
            if kind == "jsonl":
                path.unlink()  # free the disk before the next file
        print()
        print(f"{'source':30} {'rows':>10} {'first rows':>11} {'full':>9}  {'what':18} {'sort:-len':>9} "
              f"{'far page':>9} {'peak RSS':>9}")
        for kind, n, r in results:
            sort = f"{r['sort_s']:.2f} s" if "sort_s" in r else "-"
            far = f"{r['far_page_ms']:.0f} ms" if "far_page_ms" in r else "-"
            print(f"{kind:30} {n:>10,} {r['first_rows_s'] * 1000:>8.0f} ms {r['full_s']:>7.1f} s  "
                  f"{r.get('full_what', 'load_rows'):18} {sort:>9} {far:>9} {r['rss_mb']:>6.0f} MB")
        pq_new = next(r for k, _, r in results if k == "parquet")
        pq_old = next(r for k, _, r in results if k.startswith("parquet, read whole"))
        print(f"\nParquet first rows: {pq_old['first_rows_s'] / max(pq_new['first_rows_s'], 1e-9):.0f}x sooner "
              f"paged than read whole; peak RSS {pq_old['rss_mb'] / pq_new['rss_mb']:.1f}x lower")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
