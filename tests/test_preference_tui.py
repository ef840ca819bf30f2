"""Preference runs on the screen: the Train screen charts reward margin and accuracy beside
the loss (from a real event log), and alerts fire for a collapsing margin or an accuracy
stuck at 0.5, and not for a healthy run."""
from __future__ import annotations

import math

from engine import config as C
from engine.events import EventWriter
from pilot_helpers import wait_for
from tui.services.alerts import PreferenceDetector
from tui.services.run_state import RunState


def _metric(step, margin, acc, loss=0.6):
    return {"type": "metric", "step": step, "loss": loss, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 100.0,
            "rewards_chosen": margin / 2, "rewards_rejected": -margin / 2, "reward_margin": margin,
            "reward_accuracy": acc}


def _kinds(detector, series):
    out = []
    for step, (m, a) in enumerate(series, 1):
        alert = detector.feed(step, m, a)
        if alert:
            out.append((step, alert.kind))
    return out


def test_healthy_preference_run_raises_no_alert():
    series = [(0.05 * s, min(0.5 + 0.01 * s, 1.0)) for s in range(100)]
    assert _kinds(PreferenceDetector(), series) == []


def test_margin_collapse_alerts_once():
    rising = [(0.1 * s, 0.9) for s in range(30)]          # margin up to ~3
    collapse = [(0.1, 0.55)] * 30
    found = _kinds(PreferenceDetector(), rising + collapse)
    assert [k for _, k in found] == ["margin_collapse"]
    assert 30 < found[0][0] < 45


def test_accuracy_stuck_at_half_alerts_once():
    flat = [(0.001 * ((-1) ** s), 0.5) for s in range(60)]
    found = _kinds(PreferenceDetector(), flat)
    assert [k for _, k in found] == ["accuracy_stuck"]
    assert found[0][0] == 25


def test_run_state_keeps_train_and_validation_reward_series():
    st = RunState()
    for s in range(1, 11):
        st.apply(_metric(s, 0.1 * s, 0.5 + 0.04 * s))
    st.apply({"type": "eval", "step": 10, "val_loss": 0.5, "perplexity": 2.0, "reward_margin": 0.7,
              "reward_accuracy": 0.8})
    assert st.preference
    assert len(st.reward_margin) == 10 and st.reward_accuracy.last() == (10, 0.9)
    assert st.val_reward_margin.last() == (10, 0.7) and st.val_reward_accuracy.last() == (10, 0.8)
    plain = RunState()
    plain.apply({"type": "metric", "step": 1, "loss": 1.0})
    assert not plain.preference and len(plain.reward_margin) == 0


async def test_train_screen_charts_margin_and_accuracy_for_a_preference_run(tmp_path):
    from tui.app import FtwbApp
    from tui.services.open_target import resolve

    run = tmp_path / "pref"
    run.mkdir()
    cfg = C.RunConfig()
    cfg.train.objective = "dpo"
    C.save(cfg, run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", pid=1, devices=[], resumed_from_step=0)
    for s in range(1, 41):
        e = _metric(s, 0.05 * s, min(0.5 + 0.0125 * s, 1.0), loss=0.69 - 0.01 * s)
        e.pop("type")
        w.emit("metric", **e)
        w.emit("progress", step=s, total_steps=40, epoch=s / 40, tokens_seen=s * 100, eta_s=1.0)
        if s % 10 == 0:
            w.emit("eval", step=s, val_loss=0.69 - 0.01 * s, perplexity=2.0, reward_margin=0.04 * s,
                   reward_accuracy=0.5 + 0.01 * s)
    w.emit("done", status="completed", summary={"steps": 40})
    w.close()
    app = FtwbApp(resolve(None, attach=str(run)), theme="ftwb-dark", runs_dir=str(tmp_path), sample_devices=False)
    async with app.run_test(size=(160, 45)) as pilot:
        # "Run completed" is the last alert: any margin or accuracy alert has reached the screen before it.
        await wait_for(pilot, lambda: app.session.state.finished
                       and any(n.title == "Run completed" for n in app._notifications), what="the run-completed alert")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen", what="the Train screen")
        app.screen.redraw(force=True)
        screen = app.screen
        await wait_for(pilot, lambda: screen.has_class("-preference"), what="the preference layout")
        margin, acc = screen.query_one("#margin-chart"), screen.query_one("#accuracy-chart")
        # The stylesheet reacts to the class on the next style update.
        await wait_for(pilot, lambda: margin.display and acc.display and not screen.query_one("#lr-chart").display,
                       what="the margin and accuracy charts in place of lr and grad-norm")
        assert "train 2" in margin.legend.plain and "val 1.6" in margin.legend.plain
        assert "train 100%" in acc.legend.plain and "val 90%" in acc.legend.plain
        assert "margin 2 acc 100%" in screen.query_one("#loss-chart").legend.plain
        assert not any(n.title.startswith(("Reward margin", "Preference accuracy")) for n in app._notifications)
    assert math.isclose(app.session.state.reward_margin.last()[1], 2.0)


def test_token_view_of_a_preference_row_shows_both_sides_with_their_masks():
    import json

    from engine.data.template import ensure_chat_template
    from engine.demo import demo_preference_path, ensure_demo_model
    from transformers import AutoTokenizer
    from tui.services.dataset_session import token_view
    from tui.widgets.data.row_view import tokens_text

    tok = AutoTokenizer.from_pretrained(ensure_demo_model())
    ensure_chat_template(tok)
    row = json.loads(demo_preference_path().read_text().splitlines()[0])
    tv = token_view(tok, row, "preference", 256)
    assert tv.rejected is not None and tv.trainable > 0 and tv.rejected.trainable > 0
    chosen = "".join(p for p, t in zip(tv.pieces, tv.trained) if t)
    rejected = "".join(p for p, t in zip(tv.rejected.pieces, tv.rejected.trained) if t)
    assert chosen.startswith(row["chosen"][0]["content"]) and rejected.startswith(row["rejected"][0]["content"])
    plain = tokens_text(tv).plain
    assert plain.index("▌chosen") < plain.index("▌rejected")


def _write_run(root, name, margins):
    run = root / name
    run.mkdir()
    cfg = C.RunConfig()
    cfg.train.objective = "dpo"
    C.save(cfg, run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", pid=1, devices=[], resumed_from_step=0)
    for s, m in enumerate(margins, 1):
        e = _metric(s, m, 0.5 + 0.05 * s)
        e.pop("type")
        w.emit("metric", **e)
    w.emit("eval", step=len(margins), val_loss=0.5, perplexity=2.0, reward_margin=margins[-1] / 2,
           reward_accuracy=0.75)
    w.emit("done", status="completed", summary={"steps": len(margins)})
    w.close()
    return run


def test_runs_screen_compares_reward_margins_of_preference_runs(tmp_path):
    from tui.services.run_history import load_curves

    a = _write_run(tmp_path, "a-dpo", [0.0, 0.4, 0.8])
    c = load_curves(a)
    assert c.margin.last() == (3, 0.4) and c.accuracy.last() == (3, 0.75)  # validation values when evaluated


async def test_runs_screen_overlays_margins_with_g(tmp_path):
    from tui.app import FtwbApp
    from tui.services.open_target import resolve

    _write_run(tmp_path, "20260101-000000-a", [0.0, 0.4, 0.8])
    _write_run(tmp_path, "20260101-000001-b", [0.0, 1.0, 2.0])
    app = FtwbApp(resolve(None), theme="ftwb-dark", runs_dir=str(tmp_path), sample_devices=False)
    async with app.run_test(size=(160, 45)) as pilot:
        app.switch_mode("runs")
        await wait_for(pilot, lambda: len(getattr(app.screen, "runs", [])) == 2)
        screen = app.screen
        for _ in range(2):
            screen.action_toggle_select()
            screen.table.move_cursor(row=1)
        await wait_for(pilot, lambda: len(screen._curves) == 2)
        await pilot.press("g")
        chart = screen.query_one("#runs-chart")
        await wait_for(pilot, lambda: chart.title == "reward margin overlay", what="the margin overlay")
        assert "margin 0.4 acc 75%" in chart.legend.plain and "margin 1 acc 75%" in chart.legend.plain
