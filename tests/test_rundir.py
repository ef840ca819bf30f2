"""Run directories are never reused; liveness comes from the lock, not a stale pid file."""
import os
import subprocess
import sys

import pytest

from engine import events as ev
from engine import rundir


def test_create_never_reuses_a_directory(tmp_path):
    a = rundir.create(tmp_path, "My Run!")
    b = rundir.create(tmp_path, "My Run!")
    assert a != b and a.is_dir() and b.is_dir() and a.name.endswith("-my-run")


def test_runs_dir_that_cannot_be_created_gives_a_clear_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(rundir.RunDirError, match="cannot create the runs directory .* pass --runs-dir"):
        rundir.create(blocker / "runs", "x")


def test_unwritable_runs_dir_gives_a_clear_message(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(rundir.RunDirError, match="not writable"):
            rundir.create(ro, "x")
    finally:
        ro.chmod(0o700)


def test_lock_marks_alive_and_kernel_releases_it_on_death(tmp_path):
    code = ("import sys, time; from engine import rundir; l = rundir.RunLock(sys.argv[1]); "
            "l.acquire(); print('ok', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ok"
    assert rundir.is_alive(tmp_path)
    with pytest.raises(rundir.RunDirError, match="already being trained"):
        rundir.RunLock(tmp_path).acquire()
    p.kill()
    p.wait()
    # The pid file is left behind by SIGKILL, but the lock is gone.
    assert (tmp_path / rundir.PID).exists()
    assert not rundir.is_alive(tmp_path)


def test_a_released_lock_leaves_no_lock_file_and_a_stale_opener_retries(tmp_path):
    import fcntl

    first = rundir.RunLock(tmp_path)
    first.acquire()
    # Another engine opened the lock file before the first one finished...
    stale = os.open(tmp_path / rundir.LOCK, os.O_RDWR)
    first.release()
    assert not (tmp_path / rundir.LOCK).exists() and not (tmp_path / rundir.PID).exists()
    assert not rundir.is_alive(tmp_path)
    # ...and locks that unlinked file: a third engine must still not get in beside it.
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
    second = rundir.RunLock(tmp_path)
    second.acquire()  # the path is a fresh file, so this is the one real lock
    try:
        with pytest.raises(rundir.RunDirError, match="already being trained"):
            rundir.RunLock(tmp_path).acquire()
        assert rundir.is_alive(tmp_path)
    finally:
        second.release()
        os.close(stale)


def test_summary_reads_status_from_events(tmp_path):
    (tmp_path / rundir.CONFIG).write_text("method: lora\nmodel: {name_or_path: m}\ndata: {path: d.jsonl}\n")
    w = ev.EventWriter(tmp_path / rundir.EVENTS)
    w.emit("hello", pid=1)
    w.emit("progress", step=5, total_steps=10)
    w.emit("eval", step=5, val_loss=2.0)
    w.emit("eval", step=10, val_loss=1.5)
    s = rundir.summarize(tmp_path)
    assert (s.status, s.step, s.best_val_loss, s.method, s.model) == ("crashed", 5, 1.5, "lora", "m")
    w.emit("done", status="stopped", summary={})
    assert rundir.summarize(tmp_path).status == "stopped"
    w.emit("hello", pid=2)  # resumed: the earlier done no longer applies
    assert rundir.summarize(tmp_path).status == "crashed"
    w.close()
