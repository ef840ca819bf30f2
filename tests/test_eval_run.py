"""Evaluation of a real trained demo run: base vs fine-tuned, per-sample loss, `ftwb eval`."""
from __future__ import annotations

import json
import shutil

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import ftwb
from eval_run import EVAL_NEW_TOKENS, EVAL_SAMPLES, private_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return private_run(tmp_path_factory, "eval-run")  # this module writes eval results into it


@pytest.fixture(scope="module")
def loaded(run_dir):
    from engine.evaluate.generate import load_for_inference

    model, tok, cfg = load_for_inference(run_dir, device="cpu")
    return model, tok, cfg


@pytest.fixture(scope="module")
def results(run_dir, loaded):
    model, tok, _ = loaded
    events = []
    res = evaluate(run_dir, model, tok, events)
    return res, events


def evaluate(run_dir, model, tok, events):
    from engine.evaluate.evaluate import evaluate_run

    return evaluate_run(run_dir, model=model, tokenizer=tok, emit=lambda t, **f: events.append({"type": t, **f}),
                        max_samples=EVAL_SAMPLES, max_new_tokens=EVAL_NEW_TOKENS)


def test_fine_tuned_model_beats_its_base_on_the_test_split(results):
    res, _ = results
    base, tuned = res["base"], res["tuned"]
    assert res["split"] == "test" and res["note"] is None
    assert res["examples"] > 0 and res["generated"] == EVAL_SAMPLES and res["json_task"] is True
    assert tuned["loss"] < base["loss"] and tuned["perplexity"] < base["perplexity"]
    # The demo base answers a ticket with a polite reply; the fine-tune learns the JSON task.
    assert tuned["json_valid"] > base["json_valid"] or tuned["exact_match"] > base["exact_match"], (base, tuned)
    assert tuned["field_accuracy"] > base["field_accuracy"], (base, tuned)
    assert res["delta"]["loss"] == pytest.approx(tuned["loss"] - base["loss"], abs=1e-5)


def test_eval_writes_results_and_sample_table_and_emits_events(run_dir, results):
    res, events = results
    on_disk = json.loads((run_dir / rundir.EVAL / "results.json").read_text())
    assert on_disk["tuned"] == res["tuned"] and on_disk["base"] == res["base"]
    samples = [json.loads(l) for l in (run_dir / rundir.EVAL / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == EVAL_SAMPLES
    s = samples[0]
    assert s["prompt"][-1]["role"] == "user" and s["reference"].startswith("{")
    assert isinstance(s["base"], str) and isinstance(s["tuned"], str) and isinstance(s["row"], int)
    # the row points at the source line whose answer is the reference
    source = C.load(run_dir / rundir.CONFIG)
    from engine.data.load import load_rows

    row = load_rows(source.data.path).rows[s["row"]]
    assert row["messages"][-1]["content"] == s["reference"]
    types = [e["type"] for e in events]
    assert types[0] == "phase" and events[0]["phase"] == "evaluating"
    done = [e for e in events if e["type"] == "eval_result"]
    assert done and done[0]["tuned"] == res["tuned"] and done[0]["path"].endswith("results.json")


def test_greedy_decoding_uses_the_runs_chat_template(loaded):
    from engine.evaluate.generate import render_prompt

    _, tok, _ = loaded
    text = render_prompt(tok, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")


def test_eval_without_test_split_falls_back_to_validation_and_says_so(run_dir, loaded, tmp_path):
    model, tok, _ = loaded
    copy = tmp_path / "no-test-split"
    copy.mkdir()
    shutil.copytree(run_dir / rundir.ADAPTER, copy / rundir.ADAPTER)
    cfg = C.load(run_dir / rundir.CONFIG)
    cfg.data.test_split = 0.0
    C.save(cfg, copy / rundir.CONFIG)
    from engine.evaluate.evaluate import evaluate_run

    res = evaluate_run(copy, model=model, tokenizer=tok, max_samples=2, max_new_tokens=4)
    assert res["split"] == "val" and "no test split" in res["note"] and res["generated"] == 2
    assert (copy / rundir.EVAL / "results.json").exists()


def test_per_sample_loss_covers_every_train_and_val_example_worst_first(run_dir, loaded):
    from engine.data.load import load_rows
    from engine.evaluate.per_sample import per_sample_losses

    model, tok, cfg = loaded
    path = per_sample_losses(run_dir, model=model, tokenizer=tok)
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    splits = json.loads((run_dir / rundir.DATA).read_text())["splits"]
    assert len(recs) == splits["train"] + splits["val"]
    assert {r["split"] for r in recs} == {"train", "val"}
    losses = [r["loss"] for r in recs]
    assert losses == sorted(losses, reverse=True) and all(l > 0 for l in losses)
    loaded_rows = load_rows(cfg.data.path)
    rows = [r["row"] for r in recs]
    assert len(set(rows)) == len(rows) and all(0 <= r < len(loaded_rows.rows) for r in rows)
    # tickets.jsonl has no blank lines: row k is on line k + 1
    assert all(r["line"] == r["row"] + 1 for r in recs)
    assert all(r["tokens"] > 0 for r in recs)


def test_cli_worst_lists_rows_with_previews(run_dir, results):
    res = ftwb("eval", str(run_dir), "--worst", "3", "--json")
    assert res.returncode == 0, res.stderr
    top = json.loads(res.stdout)
    assert len(top) == 3 and top[0]["loss"] >= top[-1]["loss"]
    assert all(isinstance(t["row"], int) and 0 < len(t["preview"]) <= 80 for t in top)
    table = ftwb("eval", str(run_dir), "--worst", "2")
    assert table.returncode == 0 and "highest-loss" in table.stdout


def test_cli_eval_prints_base_vs_fine_tuned_table(run_dir, results):
    res = ftwb("eval", str(run_dir), "--max-samples", "2", "--max-new-tokens", "8")
    assert res.returncode == 0, res.stderr
    assert "fine-tuned" in res.stdout and "delta" in res.stdout and "loss" in res.stdout
    assert "Traceback" not in res.stderr
