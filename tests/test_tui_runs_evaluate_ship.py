"""Runs screen: evaluation results (base vs fine-tuned with deltas, samples), the worst
examples opening the Data screen at their row, the lineage panel, export with its
overwrite confirmation (a real `ftwb export` subprocess), and the playground key.

The recorded run is written here: a dataset file, config.yaml, events.jsonl, data.json,
eval/results.json, eval/samples.jsonl, eval/per_sample.jsonl, exports.json and an
adapter/ with a weights file, so nothing loads a model."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from engine import config as C
from engine.events import EventWriter
from tui.app import FtwbApp
from tui.services import run_actions as ra
from tui.services.open_target import resolve
from pilot_helpers import wait_for  # noqa: E402

T0 = 1_700_000_000.0
N_ROWS = 300



def _dataset(path: Path) -> Path:
    """Chat rows with a blank line and a comment-free bad line, so file lines and rows differ."""
    lines = []
    for i in range(N_ROWS):
        if i == 5:
            lines.append("")
        if i == 9:
            lines.append("{not json")
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"ticket {i}: my order #{1000 + i} has not arrived"},
            {"role": "assistant", "content": json.dumps({"category": "shipping", "priority": "high" if i % 3 else "low"})},
        ]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def make_run(root: Path, name: str = "20240101-000000-demo", evaluated: bool = True, exported: bool = True,
             adapter: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = _dataset(root / "tickets.jsonl")
    d = root / "runs" / name
    (d / "eval").mkdir(parents=True)
    cfg = C.RunConfig()
    cfg.data.path = str(data)
    cfg.train.max_steps = 40
    cfg.output.name = name
    C.save(cfg, d / "config.yaml")
    w = EventWriter(d / "events.jsonl")
    w.emit("hello", ts=T0, pid=999999, versions={}, config_hash=cfg.hash(), dataset_hash="c0ffee", devices=[])
    for step in range(1, 41):
        w.emit("metric", ts=T0 + step, step=step, loss=2.5 - step * 0.04, lr=2e-4)
        w.emit("progress", ts=T0 + step, step=step, total_steps=40)
        if step % 20 == 0:
            w.emit("eval", ts=T0 + step, step=step, val_loss=1.9 - step * 0.01, perplexity=5.0)
    w.emit("done", ts=T0 + 41, status="completed", summary={"steps": 40, "best_val_loss": 1.5})
    w.close()
    from engine.data.load import load_rows

    loaded = load_rows(str(data))
    (d / "data.json").write_text(json.dumps({
        "source": str(data), "content_hash": "9f8e7d6c5b4a39281706", "kind": "jsonl", "format": "chat",
        "rows_total": len(loaded.rows) + len(loaded.problems), "rows_usable": len(loaded.rows),
        "splits": {"train": 24, "val": 3, "test": 2}, "split_seed": 42, "problems": 1, "version": "v3"}))
    # per-sample losses: the loader's rows, with their source lines, worst first
    recs = [{"split": "train" if r % 5 else "val", "row": r, "line": loaded.lines[r], "loss": round(0.1 + r / 10, 4),
             "tokens": 20} for r in range(len(loaded.rows))]
    recs.sort(key=lambda r: -r["loss"])
    (d / "eval" / "per_sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if evaluated:
        base = {"loss": 2.31, "perplexity": 10.07, "exact_match": 0.0, "json_valid": 0.25, "field_accuracy": 0.1,
                "rouge_l": 0.21}
        tuned = {"loss": 0.62, "perplexity": 1.86, "exact_match": 0.5, "json_valid": 1.0, "field_accuracy": 0.75,
                 "rouge_l": 0.18}
        res = {"run": name, "split": "test", "note": None, "examples": 2, "generated": 2, "json_task": True,
               "base": base, "tuned": tuned, "delta": {k: round(tuned[k] - base[k], 6) for k in base},
               "created": T0 + 50, "time_s": 12.5}
        (d / "eval" / "results.json").write_text(json.dumps(res))
        samples = [{"index": i, "row": 20 + i,
                    "prompt": [{"role": "system", "content": "Classify."}, {"role": "user", "content": f"ticket {20 + i}"}],
                    "reference": '{"category": "shipping"}', "base": f"base answer {i}", "tuned": f"tuned answer {i}",
                    "base_scores": {"exact_match": 0.0}, "tuned_scores": {"exact_match": float(i == 0)}}
                   for i in range(2)]
        (d / "eval" / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    if exported:
        (d / "exports.json").write_text(json.dumps([{"path": str(d / "export" / "adapter"), "merged": False,
                                                     "time": T0 + 60}]))
    if adapter:
        (d / "adapter").mkdir()
        (d / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return d


def _app(runs: Path, size_target=None) -> FtwbApp:
    return FtwbApp(resolve(None), theme="ftwb-256", runs_dir=str(runs), sample_devices=False)


def _plain(renderable, width: int = 120) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def _open_runs(pilot, app, n: int = 1):
    await pilot.press("4")
    await wait_for(pilot, lambda: len(getattr(app.screen, "runs", [])) == n)
    await wait_for(pilot, lambda: app.screen.lineage is not None)


async def test_eval_results_on_file_show_base_and_tuned_with_coloured_deltas(tmp_path):
    run = make_run(tmp_path)
    app = _app(run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_runs(pilot, app)
        await pilot.press("e")
        await wait_for(pilot, lambda: any("results on file are shown" in n.message for n in app._notifications),
                       what="the results-on-file note")
        screen = app.screen
        assert screen.last_argv is None  # results on file: nothing re-run
        from tui.widgets.runs.eval_table import EvalScores, SamplesTable, delta_text

        text = _plain(screen.query_one(EvalScores).shown)
        assert "base" in text and "fine-tuned" in text and "delta" in text
        for label, base, tuned, delta in (("loss", "2.3100", "0.6200", "-1.6900"),
                                          ("valid JSON", "0.2500", "1.0000", "+0.7500"),
                                          ("ROUGE-L", "0.2100", "0.1800", "-0.0300")):
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(label))
            assert [base, tuned, delta] == line.split()[-3:], line
        assert "green" in str(delta_text("loss", -1.69).style)       # lower loss is better
        assert "red" in str(delta_text("rouge_l", -0.03).style)      # lower ROUGE-L is worse
        samples = screen.query_one(SamplesTable)
        assert samples.row_count == 2
        row = [str(c) for c in samples.get_row_at(0)]
        assert "ticket 20" in row[1] and "category" in row[2] and "base answer 0" in row[3] and "tuned answer 0" in row[4]


async def test_eval_key_runs_ftwb_eval_when_none_on_file_and_reports_its_refusal(tmp_path):
    run = make_run(tmp_path, evaluated=False, adapter=False)
    app = _app(run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_runs(pilot, app)
        await pilot.press("e")
        screen = app.screen
        await wait_for(pilot, lambda: screen.last_argv is not None, what="ftwb eval started")
        assert screen.last_argv == ra.eval_argv(str(run))
        await wait_for(pilot, lambda: screen.last_result is not None, timeout=60)
        assert screen.last_result.rc == 2
        assert "no trained adapter" in screen.last_result.message
        assert not screen.evaluating


async def test_worst_list_enter_opens_the_data_screen_at_that_row(tmp_path):
    run = make_run(tmp_path)
    app = _app(run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_runs(pilot, app)
        await pilot.press("w")
        screen = app.screen
        await wait_for(pilot, lambda: screen.worst)
        from tui.widgets.runs.worst_list import WorstList

        wl = screen.query_one(WorstList)
        assert wl.row_count == len(screen.worst) and screen.worst[0]["loss"] >= screen.worst[1]["loss"]
        assert "ticket" in screen.worst[0]["preview"]
        target = screen.worst[3]
        assert wl.has_focus
        wl.move_cursor(row=3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DataWorkbenchScreen")
        data = app.screen
        from tui.widgets.data.rows_table import RowsTable

        await wait_for(pilot, lambda: data.loaded and data.wb is not None)
        table = data.query_one(RowsTable)
        await wait_for(pilot, lambda: table.source_index() > 0)
        k = table.cursor
        assert table.scroll_offset.y <= k < table.scroll_offset.y + table.size.height  # on screen, not just chosen
        shown = data.wb.row(table.source_index())
        # the blank and the bad line shift the file's rows: the right example is the one with that line
        assert shown.line == target["line"]
        assert shown.data["messages"][0]["content"].startswith(f"ticket {target['row']}:")


async def test_lineage_panel_shows_dataset_run_eval_and_exports(tmp_path):
    run = make_run(tmp_path)
    app = _app(run.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_runs(pilot, app)
        from tui.widgets.runs.lineage_view import lineage_text

        text = lineage_text(app.screen.lineage).plain
        lines = text.splitlines()
        assert lines[0].startswith("data") and "tickets.jsonl → v3" in lines[0]
        assert "#9f8e7d6c5b" in lines[0] and "300 rows" in lines[0]
        assert "run" in lines[1] and "lora" in lines[1] and "40 steps" in lines[1] and "best val 1.5" in lines[1]
        assert "eval" in lines[2] and "2.31 → 0.62" in lines[2]
        assert "export" in lines[3] and "adapter" in lines[3] and str(run / "export" / "adapter") in lines[3]

        run2 = make_run(tmp_path / "other", evaluated=False, exported=False)
        assert "not evaluated" in lineage_text(ra.load_lineage(run2)).plain
        assert "none yet" in lineage_text(ra.load_lineage(run2)).plain


async def test_export_refuses_an_existing_dir_until_overwrite_is_confirmed(tmp_path):
    run = make_run(tmp_path, exported=False)
    target = run / "export" / "adapter"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("an earlier export")
    app = _app(run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_runs(pilot, app)
        screen = app.screen
        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExportDialog")
        assert str(target) in app.screen.query_one("#export-out").placeholder
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", timeout=60)
        assert screen.last_argv == ra.export_argv(run, False, None, False)
        assert screen.last_result.target_exists
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen, what="the question answered")
        await pilot.pause(0.3)  # an export would have started by now
        assert (target / "keep.txt").exists() and not (run / "exports.json").exists()

        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExportDialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", timeout=60)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.last_argv[-1] == "--force" and screen.last_result is not None
                       and screen.last_result.rc == 0 and "--force" in screen.last_argv, timeout=60)
        assert not (target / "keep.txt").exists()
        assert (target / "adapter_model.safetensors").exists() and (target / "README.md").exists()
        assert json.loads((run / "exports.json").read_text())[-1]["path"] == str(target)
        await wait_for(pilot, lambda: screen.lineage is not None and screen.lineage.exports)


def test_export_and_eval_command_lines():
    run = Path("/r/run1")
    assert ra.export_argv(run)[-2:] == ["export", "/r/run1"]
    assert ra.export_argv(run, merge=True, out="/o/m", force=True)[-6:] == [
        "export", "/r/run1", "--merge", "--out", "/o/m", "--force"]
    assert ra.eval_argv(run)[-3:] == ["eval", "/r/run1", "--json"]
    assert ra.worst_argv(run, 7)[-5:] == ["eval", "/r/run1", "--worst", "7", "--json"]
    assert ra.default_export_dir(run, True) == run / "export" / "merged"


async def test_playground_key_pushes_the_playground_for_the_run_under_the_cursor(tmp_path):
    run = make_run(tmp_path)  # its adapter has no adapter_config.json: the playground says so, starts nothing
    app = _app(run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_runs(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PlaygroundScreen")
        assert app.screen.run_dir == run and app.screen.client is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen")


async def test_runs_bindings_all_have_ids_descriptions_and_tooltips(tmp_path):
    from tui.screens.runs import RunsScreen

    for b in RunsScreen.BINDINGS:
        assert b.id and b.description and b.tooltip, b
    shown = [b for b in RunsScreen.BINDINGS if b.show]
    assert 4 <= len(shown) <= 5  # plus the app's Help and Quit: at most 7 in the footer
