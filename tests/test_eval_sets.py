"""Eval sets on a real trained demo run: the baseline before training (stored, then reused
by the run's evaluation), the prompt-only baseline, extra eval sets with their scorers, and
the bundled regression and refusal sets."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import ftwb
from eval_run import trained_run

pytestmark = pytest.mark.slow

SAMPLES, NEW_TOKENS = 6, 48
TICKET_SCHEMA = {"type": "object", "required": ["category", "priority", "product", "order_id", "sentiment",
                                                "needs_human"],
                 "properties": {"needs_human": {"type": "boolean"},
                                "priority": {"enum": ["low", "medium", "high", "urgent"]}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A copy of the shared trained run (this module writes its eval/), its config with
    extra eval sets, and a private baseline store."""
    src = trained_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("evalsets")
    from engine.demo import demo_dataset_path

    rows = [json.loads(l) for l in demo_dataset_path().read_text().splitlines()[:8]]
    extra = root / "tickets_extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = C.load(src / rundir.CONFIG)
    cfg.eval.max_samples, cfg.eval.max_new_tokens = SAMPLES, NEW_TOKENS
    cfg.eval.sets = ["test", "regression", "refusal",
                     {"name": "tickets-schema", "path": str(extra), "scorer": "json_schema", "schema": TICKET_SCHEMA},
                     {"name": "tickets-regex", "path": str(extra), "scorer": "regex", "pattern": r'"order_id":\s*"#'}]
    run = root / "runs" / src.name
    run.mkdir(parents=True)
    shutil.copytree(src / rundir.ADAPTER, run / rundir.ADAPTER)
    shutil.copy(src / rundir.DATA, run / rundir.DATA)
    C.save(cfg, run / rundir.CONFIG)
    cfg_path = root / "config.yaml"
    C.save(cfg, cfg_path)
    store = root / "baselines"
    old = os.environ.get("FTWB_BASELINES_DIR")
    os.environ["FTWB_BASELINES_DIR"] = str(store)
    yield {"run": run, "cfg": cfg_path, "store": store, "root": root}
    if old is None:
        os.environ.pop("FTWB_BASELINES_DIR", None)
    else:
        os.environ["FTWB_BASELINES_DIR"] = old


@pytest.fixture(scope="module")
def baseline(env):
    res = ftwb("eval", "--base", str(env["cfg"]), "--json", env={"FTWB_BASELINES_DIR": str(env["store"])})
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout[res.stdout.index("{"):])


@pytest.fixture(scope="module")
def evaluated(env, baseline):
    from engine.evaluate.evaluate import evaluate_run

    events = []
    res = evaluate_run(env["run"], emit=lambda t, **f: events.append({"type": t, **f}))
    return res, events


def test_baseline_before_training_scores_the_base_model_on_every_set_and_is_stored(env, baseline):
    b = baseline["baseline"]
    assert b["reused"] is False and os.path.exists(b["path"]) and str(env["store"]) in b["path"]
    assert list(baseline["sets"]) == ["test", "regression", "refusal", "tickets-schema", "tickets-regex"]
    for name, entry in baseline["sets"].items():
        assert "base" in entry and "tuned" not in entry, name
        assert entry["base"]["loss"] > 0
    assert baseline["sets"]["test"]["generated"] == SAMPLES
    assert baseline["sets"]["regression"]["examples"] == 319 and baseline["sets"]["regression"]["generated"] == 0
    assert baseline["sets"]["refusal"]["generated"] == SAMPLES and "refusal_rate" in baseline["sets"]["refusal"]["base"]
    # the demo base answers tickets politely: no JSON, so no schema-valid answer
    assert baseline["sets"]["tickets-schema"]["base"]["schema_valid"] == 0.0


def test_base_loss_agrees_with_a_plain_transformers_forward(env, baseline):
    """Independent reference: the base model's own loss (transformers' labels path) on the
    test split, token-weighted, against the stored baseline."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.data.prepare import prepare
    from engine.evaluate.evaluate import held_out
    from engine.evaluate.generate import load_tokenizer
    from engine.train.model import resolve_model_path

    cfg = C.load(env["cfg"])
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("demo"), dtype=torch.float32).eval()
    tok = load_tokenizer(env["run"], cfg)
    _, items, _ = held_out(prepare(cfg, tok))
    total = n = 0
    with torch.no_grad():
        for it in items:
            ids, labels = torch.tensor([it["input_ids"]]), torch.tensor([it["labels"]])
            k = int((labels[0, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * k
            n += k
    assert baseline["sets"]["test"]["base"]["loss"] == pytest.approx(total / n, rel=1e-4)
    assert baseline["sets"]["test"]["base"]["tokens"] == n


def test_a_later_evaluation_of_the_run_reuses_the_stored_baseline(env, baseline, evaluated):
    res, _ = evaluated
    assert res["baseline"]["reused"] is True and res["baseline"]["key"] == baseline["baseline"]["key"]
    for name, entry in baseline["sets"].items():
        assert res["sets"][name]["base"] == entry["base"], name
    # the baseline's stored base answers are the run's base column
    samples = [json.loads(l) for l in (env["run"] / rundir.EVAL / "samples.jsonl").read_text().splitlines()]
    stored = json.loads(open(baseline["baseline"]["path"]).read())["sets"]["test"]["base_samples"]
    assert [s["base"] for s in samples] == [s["answer"] for s in stored]
    assert all(isinstance(s["tuned"], str) for s in samples)


def test_extra_eval_sets_are_scored_base_and_tuned_with_their_scorers(env, evaluated):
    res, _ = evaluated
    schema, regex = res["sets"]["tickets-schema"], res["sets"]["tickets-regex"]
    assert schema["scorer"] == "json_schema" and schema["examples"] == 8 and schema["generated"] == SAMPLES
    assert schema["tuned"]["json_valid"] > schema["base"]["json_valid"]
    assert schema["tuned"]["schema_valid"] > schema["base"]["schema_valid"]
    assert regex["tuned"]["regex_match"] > regex["base"]["regex_match"]
    per = [json.loads(l) for l in open(schema["samples_path"]).read().splitlines()]
    import jsonschema

    for s in per:  # the stored per-sample verdicts agree with jsonschema itself
        try:
            ok = jsonschema.Draft202012Validator(TICKET_SCHEMA).is_valid(json.loads(s["tuned"]))
        except ValueError:
            ok = False
        assert s["tuned_scores"]["schema_valid"] is ok
    reg = res["sets"]["regression"]
    assert reg["tuned"]["tokens"] == reg["base"]["tokens"] > 1000 and "delta" in reg
    assert res["sets"]["refusal"]["generated"] == SAMPLES


def test_eval_result_event_carries_every_set_and_results_on_disk(env, evaluated):
    res, events = evaluated
    done = [e for e in events if e["type"] == "eval_result"][-1]
    assert set(done["sets"]) == set(res["sets"]) and done["baseline"]["reused"] is True
    on_disk = json.loads((env["run"] / rundir.EVAL / "results.json").read_text())
    assert on_disk["sets"] == res["sets"] and on_disk["regressions"] == res["regressions"]
    assert on_disk["judge"]["skipped"].startswith("no judge configured")


def test_prompt_only_baseline_uses_the_system_prompt_and_few_shot_examples(env, baseline):
    cfg = C.load(env["cfg"])
    cfg.eval.sets = ["test"]
    cfg.eval.system_prompt = "Answer with one JSON object of the ticket's fields."
    cfg.eval.few_shot = 2
    path = env["root"] / "prompted.yaml"
    C.save(cfg, path)
    res = ftwb("eval", "--base", str(path), "--json", "--max-samples", "3",
               env={"FTWB_BASELINES_DIR": str(env["store"])})
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["baseline"]["key"] != baseline["baseline"]["key"] and out["baseline"]["reused"] is False
    test = out["sets"]["test"]
    assert "prompted" in test and test["prompted"]["json_valid"] >= 0 and "loss" not in test["prompted"]
    stored = json.loads(open(out["baseline"]["path"]).read())["sets"]["test"]
    assert len(stored["prompted_samples"]) == 3
    # few-shot turns change what the base model sees, so some answer changes
    assert [s["answer"] for s in stored["prompted_samples"]] != [s["answer"] for s in stored["base_samples"]]
    table = ftwb("eval", "--base", str(path), "--max-samples", "3", env={"FTWB_BASELINES_DIR": str(env["store"])})
    assert table.returncode == 0 and "prompted" in table.stdout and "stored baseline reused" in table.stdout


def test_prompt_messages_put_system_prompt_and_shots_before_the_question():
    from engine.evaluate.score_sets import prompt_messages

    cfg = C.RunConfig()
    cfg.eval.system_prompt = "S"
    cfg.eval.few_shot = [{"user": "q1", "assistant": "a1"}]
    msgs = [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}]
    assert prompt_messages(cfg, msgs, True, []) == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q"}]
    assert prompt_messages(cfg, msgs, False, []) == msgs


def test_cli_eval_refuses_bad_input_in_one_line(tmp_path):
    cfg = C.RunConfig()
    cfg.eval.sets = ["test", str(tmp_path / "missing.jsonl")]
    C.save(cfg, tmp_path / "c.yaml")
    res = ftwb("eval", "--base", str(tmp_path / "c.yaml"))
    assert res.returncode == 2 and "missing.jsonl does not exist" in res.stderr and "Traceback" not in res.stderr
    res = ftwb("eval")
    assert res.returncode == 2 and "--base CONFIG" in res.stderr
