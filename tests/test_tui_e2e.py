"""The TUI with the real engine: start a run with a key and watch it to the end; and in
tmux, kill the terminal mid-run, check the engine keeps training, then `ftwb attach`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from engine_helpers import ROOT, last_metric_step, pid_running, small_demo_config, wait_dead, wait_for, write_config

from engine import rundir
from pilot_helpers import wait_for as wait_for_pilot, wait_for_screen  # noqa: E402

pytestmark = pytest.mark.slow


async def test_start_key_runs_the_real_engine_to_completion(tmp_path):
    from tui.app import FtwbApp
    from tui.services.open_target import Target
    from tui.widgets.progress_panel import ProgressPanel

    cfg = small_demo_config(max_steps=8, eval_every=4, save_every=4)
    app = FtwbApp(Target(config=cfg, mode="train"), theme="ftwb-dark", runs_dir=str(tmp_path / "runs"),
                  sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_screen(pilot, "TrainScreen")
        await pilot.press("s")
        # pre-flight (tokenizer + template) and the findings gate run first, in a worker
        await wait_for_pilot(pilot, lambda: app.session is not None, 90)
        await wait_for_pilot(pilot, lambda: app.session.state.finished, 300)
        st = app.session.state
        assert st.status == "completed" and st.step == 8
        assert len(st.loss) == 8 and len(st.val_loss) >= 2
        panel = app.screen.query_one(ProgressPanel)
        # the panel follows on its refresh tick, the alert with the log drain
        await wait_for_pilot(pilot, lambda: "step 8/8" in panel.render().plain, what="step 8/8 on the panel")
        await wait_for_pilot(pilot, lambda: any(n.title == "Run completed" for n in app._notifications),
                             what="the run-completed alert")
    run = next((tmp_path / "runs").iterdir())
    assert rundir.summarize(run).status == "completed"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_engine_outlives_tmux_and_attach_shows_the_live_step(tmp_path):
    cfg_path = write_config(small_demo_config(max_steps=400, save_every=0, eval_every=0), tmp_path / "run.yaml")
    runs = tmp_path / "runs"
    sock = str(tmp_path / "tmux.sock")
    env = f"PYTHONPATH={ROOT} TERM=xterm-256color"
    ftwb = f"{sys.executable} -m tui.main"
    tm = lambda *a: subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True)  # noqa: E731
    tm("new-session", "-d", "-s", "a", "-x", "80", "-y", "24",
       f"cd {ROOT} && {env} {ftwb} {cfg_path} --runs-dir {runs}; sleep 60")
    try:
        # The config opens on the Config screen; switch to Train and start a run with one key,
        # each key once the screen it is meant for is drawn.
        pane = lambda: tm("capture-pane", "-p", "-t", "a").stdout  # noqa: E731
        wait_for(lambda: "Config" in pane() and "from" in pane(), 90, every=0.3)
        tm("send-keys", "-t", "a", "3")
        wait_for(lambda: "no run yet" in pane(), 60, every=0.3)
        tm("send-keys", "-t", "a", "s")
        run = wait_for(lambda: next(iter(runs.glob("*")), None) if runs.exists() else None, 60)
        wait_for(lambda: last_metric_step(run) >= 2, 300)
        pid = rundir.read_pid(run)
        tm("kill-server")  # the terminal, the TUI and its session are gone
        time.sleep(1)
        before = (run / rundir.EVENTS).stat().st_size
        step_then = last_metric_step(run)
        wait_for(lambda: last_metric_step(run) >= step_then + 3, 120)
        assert pid_running(pid) and rundir.is_alive(run)
        assert (run / rundir.EVENTS).stat().st_size > before

        tm("new-session", "-d", "-s", "b", "-x", "80", "-y", "24",
           f"cd {ROOT} && {env} {ftwb} attach {run}; sleep 60")

        def live_step_on_screen():
            screen = tm("capture-pane", "-p", "-t", "b").stdout
            now = last_metric_step(run)
            return now >= step_then + 3 and any(f"step {s}/" in screen for s in range(step_then + 3, now + 1))
        wait_for(live_step_on_screen, 60, every=0.5)
    finally:
        tm("kill-server")
        pid = rundir.read_pid(run) if "run" in locals() and run else None
        if pid and pid_running(pid):
            os.kill(pid, signal.SIGTERM)
            wait_dead(pid, 60)
