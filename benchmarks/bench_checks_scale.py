"""Every check over a large chat JSONL, as a user runs it: `ftwb data check FILE --json`
in a subprocess over ROWS generated rows (user and assistant turns of 10-40 words), with
planted defects after row 200,000 (an empty assistant turn, exact and near copies).

Run: .venv/bin/python benchmarks/bench_checks_scale.py [ROWS]   (default 1,000,000)
Prints the file size, seconds, rows/s and peak RSS of the check process, the findings
per check, and whether the planted rows were found; then the same with --no-near.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_neardup import Rows  # noqa: E402

FTWB = [sys.executable, "-c", "import sys; from tui.main import main; sys.exit(main(sys.argv[1:]))"]
BATCH = 20_000


def write(path: Path, n: int) -> dict[str, list[int]]:
    gen = Rows(seed=3)
    rng = np.random.default_rng(11)
    planted: dict[str, list[int]] = {"empty_assistant": [], "exact_duplicate": [], "near_duplicate": []}
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, n, BATCH):
            m = min(BATCH, n - start)
            texts = gen.batch(start, 2 * m)
            for k in range(m):
                i = start + k
                user = " ".join(texts[2 * k].split()[:int(rng.integers(10, 41))])
                answer = " ".join(texts[2 * k + 1].split()[:int(rng.integers(10, 41))])
                if i > 200_000 and i % 50_000 == 1:
                    answer = ""
                    planted["empty_assistant"].append(i)
                elif k and i % 997 == 0:
                    prev = json.loads(last)
                    user, answer = prev["messages"][0]["content"], prev["messages"][1]["content"]
                    planted["exact_duplicate"].append(i)
                elif k and i % 1009 == 0:
                    prev = json.loads(last)
                    words = (prev["messages"][0]["content"] + " " + prev["messages"][1]["content"]).split()
                    if len(words) >= 40:
                        words[len(words) // 2] = "different"
                        user, answer = " ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])
                        planted["near_duplicate"].append(i)
                last = json.dumps({"messages": [{"role": "user", "content": user},
                                                {"role": "assistant", "content": answer}]})
                fh.write(last + "\n")
    return planted


def check(path: Path, *extra: str) -> tuple[float, dict]:
    """(seconds, the JSON report) of one `ftwb data check`; the report gains the process's peak RSS."""
    import os

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen([*FTWB, "data", "check", str(path), "--json", *extra], stdout=out, stderr=err,
                                cwd=HERE.parent)
        _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        secs = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):
            raise SystemExit(f"data check failed ({code}): {err.read()[-2000:].decode(errors='replace')}")
        doc = json.loads(out.read())
    doc["_rss_mb"] = usage.ru_maxrss / 1024
    doc["_cpu_s"] = usage.ru_utime + usage.ru_stime  # its worker process's CPU included (reaped by it)
    return secs, doc


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="ftwb-bench-checks-") as d:
        path = Path(d) / "chat.jsonl"
        t = time.perf_counter()
        planted = write(path, n)
        print(f"wrote {n:,} rows, {path.stat().st_size / 2**20:.0f} MB in {time.perf_counter() - t:.0f} s", flush=True)
        for extra in ((), ("--no-near",)):
            secs, doc = check(path, *extra)
            got = {(f["check"], f["row"]) for f in doc["findings"]}
            hit = {k: sum((k, i) in got for i in v) / max(1, len(v)) for k, v in planted.items()
                   if v and not (extra and k == "near_duplicate")}
            print(f"data check {' '.join(extra) or '(all checks)'}: rows={doc['rows_scanned']:,} seconds={secs:.1f} "
                  f"cpu_seconds={doc['_cpu_s']:.1f} "
                  f"rows_per_s={doc['rows_scanned'] / secs:,.0f} peak_rss_mb={doc['_rss_mb']:.0f} "
                  f"counts={doc['counts']} planted_found={ {k: round(v, 3) for k, v in hit.items()} }", flush=True)


if __name__ == "__main__":
    main()
