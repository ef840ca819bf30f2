"""Faults around the event stream: a stalled or gone reader never blocks training, a
follower re-syncs from events.jsonl, a full log disk never raises."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from engine import events as ev
from engine import rundir
from engine_helpers import events_of, follow_in_background, small_demo_config, wait_for, write_config


def test_stalled_reader_never_blocks_the_writer_and_the_follower_fills_the_gap(tmp_path):
    r, w = os.pipe()
    writer = ev.EventWriter(tmp_path / "events.jsonl", w, buffer_bytes=8192)
    t0 = time.monotonic()
    for i in range(5000):  # ~500 KB: far more than the pipe and the buffer hold
        writer.emit("metric", step=i, loss=1.0, pad="x" * 40)
    assert time.monotonic() - t0 < 10
    assert writer.dropped > 0
    writer.emit("done", status="completed", summary={})
    writer.close(linger_s=0)
    logged = ev.read_all(tmp_path / "events.jsonl")
    assert [e["seq"] for e in logged] == list(range(5001))
    follower = ev.PipeFollower(tmp_path / "events.jsonl")
    got = []
    while chunk := os.read(r, 65536):
        got += follower.feed(chunk)
    got += follower.finish()
    os.close(r)
    # What the pipe held came from it, the rest (dropped, or left pending at close) from the log.
    assert [e["seq"] for e in got] == list(range(5001))
    assert got[-1]["type"] == "done"


def test_follower_resyncs_in_the_middle_and_skips_older_attempts(tmp_path):
    log = tmp_path / "events.jsonl"
    old = ev.EventWriter(log)
    old.emit("done", status="stopped", summary={})  # an earlier attempt's result
    old.close()
    offset = log.stat().st_size
    w = ev.EventWriter(log)
    lines = [(ev.encode(w.emit("metric", step=i, loss=1.0)) + "\n").encode() for i in range(10)]
    w.close()
    f = ev.PipeFollower(log, offset)
    got = f.feed(b"".join(lines[:3]))  # then the pipe dropped 3..6
    got += f.feed(b"".join(lines[7:]))
    assert [e["step"] for e in got] == list(range(10)) and f.resyncs == 1
    assert f.finish() == [] and all(e["type"] != "done" for e in got)


def test_a_failed_log_write_never_raises_and_leaves_no_half_line(tmp_path):
    # /dev/full fails every write with ENOSPC, exactly like a full disk.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    r, w = os.pipe()
    writer = ev.EventWriter(tmp_path / "events.jsonl", w)
    writer.emit("metric", step=1, loss=1.0)
    os.close(writer._log_fd)
    writer._log_fd = os.open("/dev/full", os.O_WRONLY)
    writer.emit("error", kind="disk", message="no space")
    assert writer.log_error is not None and writer.log_error.errno == 28
    writer.close()
    piped = [ev.decode(x) for x in os.read(r, 65536).splitlines()]
    assert [e["type"] for e in piped] == ["metric", "error"]  # the pipe still carries it
    assert [e["type"] for e in ev.read_all(tmp_path / "events.jsonl")] == ["metric"]


def test_a_killed_engines_half_line_does_not_swallow_the_next_event(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"v":1,"type":"metric","seq":0}\n{"v":1,"type":"met')
    w = ev.EventWriter(log)
    w.emit("hello", pid=1)
    w.close()
    assert [e["type"] for e in ev.read_all(log)] == ["metric", "hello"]


@pytest.mark.slow
def test_sigstopped_follower_does_not_stop_training_and_catches_up(tmp_path):
    """`kill -STOP` on `ftwb train` (what Ctrl+Z does): the engine keeps training and
    logging; on SIGCONT the follower re-reads what the pipe dropped and ends with the
    run's real result."""
    cfg = write_config(small_demo_config(max_steps=40, save_every=0, eval_every=0), tmp_path / "run.yaml")
    os.environ[ev.PIPE_BUFFER_ENV] = "4096"  # a small pipe + buffer so a few steps fill it
    try:
        cli, run = follow_in_background(cfg, tmp_path / "runs", stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
    finally:
        del os.environ[ev.PIPE_BUFFER_ENV]
    os.kill(cli.pid, signal.SIGSTOP)
    try:
        size_then = (run / rundir.EVENTS).stat().st_size
        # 4 KB pipe + 4 KB buffer fill in ~25 steps; the engine must train to the end anyway.
        wait_for(lambda: any(e["type"] == "done" for e in events_of(run)), timeout=600, every=1)
        assert (run / rundir.EVENTS).stat().st_size > size_then + 8192
    finally:
        os.kill(cli.pid, signal.SIGCONT)
    _, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err[-2000:]
    evs = events_of(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    assert [e["seq"] for e in evs] == list(range(len(evs)))  # the log lost nothing
    assert "completed 40 steps" in err


def test_drain_reads_a_log_bigger_than_one_poll_in_one_go(tmp_path):
    """Attach replays a finished run with drain(): one poll stops at its chunk size, and a
    replay cut there showed a finished run as crashed until the next poll."""
    w = ev.EventWriter(tmp_path / "events.jsonl")
    for i in range(200):
        w.emit("metric", step=i, loss=1.0)
    w.emit("done", status="completed", summary={})
    w.close()
    f = ev.LogFollower(tmp_path / "events.jsonl")
    evs = f.drain(chunk_bytes=1000)
    assert len(evs) == 201 and evs[-1]["type"] == "done" and f.drain() == []
