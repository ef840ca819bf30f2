"""Run every benchmark that works on this machine, one after the other, and print their
numbers. GPU-only parts (memory accuracy, 8B throughput) say so and are skipped on CPU."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("start-up: import ratio and first frame", ["bench_startup.py"]),
    ("chart redraw and event rate", ["bench_tui_chart.py"]),
    ("dataset browsing: 5M-row JSONL, 1M-row Parquet and CSV", ["bench_data_browse.py"]),
    ("exact and near duplicates, leakage: 1M rows", ["bench_neardup.py", "1000000"]),
    ("every check over a 1M-row chat JSONL", ["bench_checks_scale.py", "1000000"]),
    ("token statistics over a 1M-row chat JSONL", ["bench_token_stats.py"]),
    ("engine vs HF Trainer + PEFT", ["bench_engine_vs_hf.py", "--size", "tiny", "--steps", "12"]),
    ("memory estimate vs measured", ["bench_memory_accuracy.py"]),
]


def main() -> int:
    failed = 0
    for title, argv in BENCHES:
        print(f"\n== {title}: {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:]])
        print(f"   ({time.perf_counter() - t0:.0f} s, exit {rc})", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
