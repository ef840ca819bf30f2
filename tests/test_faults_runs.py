"""Run listing faults: a malformed event never hides a run, a huge events.jsonl is read
fast and in little memory, and the engine's summary.json agrees with the log."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from engine import events as ev
from engine import rundir
from engine_helpers import ROOT


def _run_dir(root, name="20260101-000000-x"):
    d = root / name
    d.mkdir(parents=True)
    (d / rundir.CONFIG).write_text("method: lora\nmodel: {name_or_path: demo}\ndata: {path: demo}\n")
    return d


# `ftwb runs` in a process of its own that reports its own peak RSS (VmHWM, which starts
# afresh at exec) on stderr. getrusage's maxrss would also count the forked test process
# and every engine an earlier test ran.
_RUNS = ("import re, sys; from tui.main import main; rc = main(sys.argv[1:]); sys.stdout.flush(); "
         "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
         "print('MAXRSS_KIB', hwm, file=sys.stderr); sys.exit(rc)")


def _runs_json(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUNS, "runs", "--json", "--runs-dir", str(root)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _max_rss_kib(res: subprocess.CompletedProcess) -> int:
    return int(next(l for l in res.stderr.splitlines() if l.startswith("MAXRSS_KIB")).split()[1])


def test_a_malformed_event_is_skipped_with_a_warning_never_fatal(tmp_path):
    d = _run_dir(tmp_path)
    w = ev.EventWriter(d / rundir.EVENTS)
    w.emit("hello", pid=1)
    w.emit("metric", step=3, loss=1.0)
    w.emit("progress", step="abc", total_steps=10)  # well-formed JSON, nonsense value
    w.emit("eval", step=3, val_loss=[1])
    w.emit("done", status="completed", summary={})
    w.close()
    with open(d / rundir.EVENTS, "a") as f:
        f.write('{"v":1,"type":"done","status":["x"]}\n')
    res = _runs_json(tmp_path)
    assert res.returncode == 0, res.stderr
    (r,) = json.loads(res.stdout)
    assert r["status"] == "completed" and r["step"] == 3
    assert "malformed" in res.stderr and "Traceback" not in res.stderr


def _write_big_log(path, mb: int) -> None:
    w = ev.EventWriter(path)
    w.emit("hello", pid=1)
    w.emit("eval", step=1, val_loss=0.5)
    w.close()
    chunk = "".join(ev.encode(ev.make("metric", step=i, loss=1.0, lr=1e-4, grad_norm=0.5, tokens_per_s=1000.0))
                    + "\n" + ev.encode(ev.make("progress", step=i, total_steps=10**6, epoch=0.1, eta_s=5.0)) + "\n"
                    for i in range(2, 5000))
    with open(path, "a") as f:
        for _ in range(mb * (1 << 20) // len(chunk) + 1):
            f.write(chunk)
        f.write(ev.encode(ev.make("done", status="completed", summary={})) + "\n")


def test_runs_is_fast_and_small_on_a_200_mb_events_log(tmp_path):
    d = _run_dir(tmp_path)
    _write_big_log(d / rundir.EVENTS, 200)
    assert (d / rundir.EVENTS).stat().st_size > 200 * (1 << 20)
    t0 = time.perf_counter()
    res = _runs_json(tmp_path)  # no summary.json: the streaming fallback
    fallback_s = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    (r,) = json.loads(res.stdout)
    assert r["status"] == "completed" and r["step"] == 4999 and r["best_val_loss"] == 0.5
    assert _max_rss_kib(res) < 400 * 1024  # far below the log's size
    assert fallback_s < 30, fallback_s

    # With the summary the engine keeps, only the bytes after it are read.
    keeper = rundir.SummaryKeeper(d)
    keeper.write()
    t0 = time.perf_counter()
    res = _runs_json(tmp_path)
    summary_s = time.perf_counter() - t0
    assert json.loads(res.stdout)[0]["step"] == 4999 and summary_s < 5 and summary_s < fallback_s
    print(f"ftwb runs on a 200 MB log: {fallback_s:.1f}s without summary.json, {summary_s:.1f}s with it")


def test_summary_file_plus_the_logs_tail_equals_the_whole_log(tmp_path):
    d = _run_dir(tmp_path)
    w = ev.EventWriter(d / rundir.EVENTS)
    keeper = rundir.SummaryKeeper(d)
    for e in (("hello", {"pid": 1}), ("metric", {"step": 1, "loss": 2.0}), ("eval", {"step": 1, "val_loss": 1.5}),
              ("metric", {"step": 2, "loss": 1.0}), ("progress", {"step": 2, "total_steps": 9}),
              ("done", {"status": "stopped", "summary": {}}), ("hello", {"pid": 2}),
              ("metric", {"step": 3, "loss": 0.5})):
        keeper.update(w.emit(e[0], **e[1]), w.log_bytes)
    keeper.write()
    w.emit("eval", step=3, val_loss=0.9)  # after the last summary write: read from the log's tail
    w.close()
    with_file = rundir.summarize(d).to_json()
    os.unlink(d / rundir.SUMMARY)
    assert with_file == rundir.summarize(d).to_json()
    assert with_file["status"] == "crashed" and with_file["best_val_loss"] == 0.9 and with_file["step"] == 3
