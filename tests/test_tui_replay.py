"""Replaying recorded runs in the real app: what reaches the screen, the event log and
the notifications for a healthy run, a NaN, an OOM, a crash and overfitting."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from tui.app import FtwbApp
from tui.services.open_target import resolve
from tui.widgets.event_log import EventLog
from tui.widgets.progress_panel import ProgressPanel
from pilot_helpers import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_runs(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tests/fixtures/events/make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs"))



async def replay(run_dir: Path, size=(120, 40)):
    app = FtwbApp(resolve(None, attach=str(run_dir)), theme="ftwb-dark", runs_dir=str(run_dir.parent),
                  sample_devices=False)
    return app


def notes(app) -> list[tuple[str, str, str]]:
    return [(n.title, n.message, n.severity) for n in app._notifications]


def log_text(app) -> str:
    return "\n".join(app.screen.query_one(EventLog).texts)


async def test_healthy_run_shows_steps_best_val_and_completion(runs):
    app = await replay(runs / "healthy")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session.state.finished and any(t == "Run completed" for t, _, _ in notes(app)))
        app.screen.redraw(force=True)
        await wait_for(pilot, lambda: "step 300/300" in app.screen.query_one(ProgressPanel).render().plain,
                       what="the last step drawn")
        st = app.session.state
        assert st.status == "completed" and st.step == 300 and st.total_steps == 300
        assert len(st.loss) == 300 and len(st.val_loss) == 12
        panel = app.screen.query_one(ProgressPanel).render().plain
        assert "COMPLETED" in panel and "step 300/300" in panel and "tok/s" in panel
        legend = app.screen.query_one("#loss-chart").legend.plain
        assert f"best {st.best[1]:.4g} @ step {st.best[0]}" in legend
        title, msg, sev = next(n for n in notes(app) if n[0] == "Run completed")
        assert "300 steps" in msg and sev == "information"
        log = log_text(app)
        assert "checkpoint at step 300" in log and "eval at step 25" in log and "Run completed" in log


async def test_nan_run_alerts_once_and_stays_in_log(runs):
    app = await replay(runs / "nan")
    async with app.run_test(size=(120, 40)) as pilot:
        # "Run failed" is the last alert: every earlier one has reached the screen with it.
        await wait_for(pilot, lambda: app.session.state.finished and any(t == "Run failed" for t, _, _ in notes(app)),
                       what="the run-failed alert")
        await pilot.pause(0.3)  # a repeated NaN alert would have come by now
        nan_notes = [n for n in notes(app) if n[0] == "Loss is NaN"]
        assert len(nan_notes) == 1 and nan_notes[0][2] == "error"
        assert any(t == "Run failed" for t, _, _ in notes(app))
        assert "▲" in log_text(app) or "✖" in log_text(app)
        assert "Loss is NaN: loss is NaN at step 61" in log_text(app)
        assert app.session.state.status == "failed"


async def test_oom_alert_carries_the_engine_hint(runs):
    app = await replay(runs / "oom")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any(t == "Out of GPU memory" for t, _, _ in notes(app)))
        _, msg, sev = next(n for n in notes(app) if n[0] == "Out of GPU memory")
        assert sev == "error"
        assert "CUDA out of memory at step 13" in msg
        assert "Hint: lower train.micro_batch_size" in msg
        await wait_for(pilot, lambda: "Hint: lower train.micro_batch_size" in log_text(app), what="the hint in the log")


async def test_crash_without_done_shows_the_tail_of_engine_log(runs):
    app = await replay(runs / "crash")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any(t == "Engine crashed" for t, _, _ in notes(app)))
        _, msg, sev = next(n for n in notes(app) if n[0] == "Engine crashed")
        assert sev == "error"
        assert "RuntimeError: shape mismatch in attention mask" in msg
        assert app.session.state.status == "crashed"
        app.screen.redraw(force=True)
        await wait_for(pilot, lambda: "CRASHED" in app.screen.query_one(ProgressPanel).render().plain, what="CRASHED")
        await wait_for(pilot, lambda: "RuntimeError: shape mismatch" in log_text(app), what="the traceback in the log")


async def test_overfitting_is_detected_from_eval_and_metric_series(runs):
    app = await replay(runs / "overfit")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any(t == "Overfitting" for t, _, _ in notes(app)))
        _, msg, sev = next(n for n in notes(app) if n[0] == "Overfitting")
        assert sev == "warning" and "validation loss rose for 3 evals" in msg
        # Reported once, not at every later eval.
        # "Run completed" is the last alert: a repeated one would have reached the screen before it.
        await wait_for(pilot, lambda: app.session.state.finished and any(t == "Run completed" for t, _, _ in notes(app)),
                       what="the run-completed alert")
        await pilot.pause(0.3)
        assert sum(1 for t, _, _ in notes(app) if t == "Overfitting") == 1


async def test_attached_log_is_followed_as_it_grows(tmp_path):
    """A run written by another process: lines appended after attach reach the screen."""
    from engine import config as C
    from engine.events import EventWriter

    run = tmp_path / "growing"
    run.mkdir()
    C.save(C.RunConfig(), run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", pid=1, devices=[], resumed_from_step=0)
    w.emit("progress", step=1, total_steps=50, epoch=0.0, tokens_seen=10, eta_s=30)
    app = await replay(run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.session.state.step == 1)
        for step in range(2, 21):
            w.emit("metric", step=step, loss=2.0 - step * 0.01, lr=1e-4, grad_norm=1.0, tokens_per_s=100.0)
            w.emit("progress", step=step, total_steps=50, epoch=0.1, tokens_seen=step * 10, eta_s=20)
        await wait_for(pilot, lambda: app.session.state.step == 20)
        app.screen.redraw(force=True)
        await wait_for(pilot, lambda: "step 20/50" in app.screen.query_one(ProgressPanel).render().plain,
                       what="step 20 drawn")
    w.close()


def test_replaying_100k_events_takes_about_a_second(tmp_path):
    """The state fold of a long run (parse + feed series in bulk) stays fast."""
    from engine.events import encode, make
    from tui.services.engine_client import RunSession
    from engine import config as C

    run = tmp_path / "long"
    run.mkdir()
    C.save(C.RunConfig(), run / "config.yaml")
    with open(run / "events.jsonl", "w") as f:
        f.write(encode(make("hello", pid=1, devices=[])) + "\n")
        for step in range(1, 50_001):
            f.write(encode(make("metric", step=step, loss=1.0 + 1 / step, lr=1e-4, grad_norm=0.5,
                                tokens_per_s=1000.0)) + "\n")
            f.write(encode(make("progress", step=step, total_steps=50_000, eta_s=1.0)) + "\n")
    t = time.perf_counter()
    s = RunSession.attach(run)
    while s.state.events_seen < 100_001 and time.perf_counter() - t < 20:
        time.sleep(0.02)
    took = time.perf_counter() - t
    s.detach()
    assert s.state.events_seen == 100_001 and len(s.state.loss) == 50_000
    # ~1 s quiet; the bound catches a per-event redraw or a quadratic fold, not a slow machine
    assert took < 15.0, f"replay of 100k events took {took:.2f}s"
