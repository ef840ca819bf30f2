"""eval.sets, eval.judge and the prompt-only baseline fields: every mistake is refused at
config time, naming the entry and the fix."""
from __future__ import annotations

import pytest

from engine import config as C
from engine.evaluate import sets as S


def test_default_sets_are_the_test_split_and_the_bundled_sets():
    got = S.parse_sets(C.RunConfig().eval.sets)
    assert [(s.name, s.scorer) for s in got] == [("test", "auto"), ("regression", "loss"), ("refusal", "refusal")]
    assert got[1].bundled and got[1].path.endswith("general.jsonl") and not got[1].generates
    assert sum(1 for _ in open(got[1].path)) >= 300 and sum(1 for _ in open(got[2].path)) >= 10


@pytest.mark.parametrize("sets, message", [
    ([{"path": "a.jsonl", "scorer": "bleu"}], "eval.sets[0].scorer: 'bleu' is not allowed"),
    ([{"path": "a.jsonl", "scorer": "json_schema"}], "needs a schema"),
    ([{"path": "a.jsonl", "schema": {"type": "objekt"}, "scorer": "json_schema"}], "not a valid JSON schema"),
    ([{"path": "a.jsonl", "scorer": "regex", "pattern": "("}], "not a valid regular expression"),
    ([{"name": "x"}], "needs a path"),
    (["a.jsonl", "b/a.jsonl"], "'a' is used twice"),
    ([{"path": "a.jsonl", "colour": 1}], "eval.sets[0].colour: unknown key"),
    ([{"path": "a.jsonl", "max_rows": 0}], "max_rows"),
])
def test_bad_eval_sets_are_refused(sets, message):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"eval": {"sets": sets}})
    assert message in str(e.value)


@pytest.mark.parametrize("judge, message", [
    ({"api_key": "sk-123"}, "a key is never written into a config"),
    ({"url": "localhost:8000"}, "expected an http(s) URL"),
    ({"mode": "ranked"}, "expected pairwise or pointwise"),
    ({"sets": ["nope"]}, "'nope' is not one of eval.sets"),
    ({"max_samples": 0}, "at least 1"),
    ("http://x", "expected a mapping"),
])
def test_bad_judge_settings_are_refused(judge, message):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"eval": {"judge": judge}})
    assert message in str(e.value)


def test_judge_key_comes_from_the_environment_only():
    st = S.judge_settings({"url": "http://127.0.0.1:1/v1", "api_key_env": "MY_KEY"}, environ={"MY_KEY": "k"})
    assert st["api_key"] == "k" and st["url"] == "http://127.0.0.1:1/v1"
    st = S.judge_settings(None, environ={"FTWB_JUDGE_URL": "http://h/v1", "FTWB_JUDGE_MODEL": "m"})
    assert (st["url"], st["model"], st["api_key"]) == ("http://h/v1", "m", None)


def test_few_shot_entries_and_relative_paths(tmp_path):
    with pytest.raises(C.ConfigError, match=r"eval.few_shot\[0\]"):
        C.from_dict({"eval": {"few_shot": [{"user": "q"}]}})
    assert C.from_dict({"eval": {"few_shot": 3}}).eval.few_shot == 3
    (tmp_path / "extra.jsonl").write_text("{}\n")
    out = S.resolve_paths(["test", "extra.jsonl", {"path": "extra.jsonl", "scorer": "contains"}], tmp_path)
    assert out == ["test", str(tmp_path / "extra.jsonl"), {"path": str(tmp_path / "extra.jsonl"), "scorer": "contains"}]


def test_scorers():
    from engine.evaluate import scores as sc

    assert sc.is_refusal("I can't help with that.") and sc.is_refusal("I'm sorry, but no")
    assert not sc.is_refusal("Sure, here is how to do it.")
    assert not sc.is_refusal("Thank you for reaching out. We are sorry for the trouble.")
    assert sc.score_for("contains", "The answer is 42.", "42") == {"contains": True}
    assert sc.score_for("regex", "id #A1", "", pattern=r"#A\d") == {"regex_match": True}
    schema = {"type": "object", "required": ["a"]}
    assert sc.score_for("json_schema", '{"a": 1}', "", schema=schema) == {"json_valid": True, "schema_valid": True}
    assert sc.score_for("json_schema", '{"b": 1}', "", schema=schema) == {"json_valid": True, "schema_valid": False}
    assert sc.score_for("json_schema", 'nope', "", schema=schema) == {"json_valid": False, "schema_valid": False}


def test_regressions_beyond_the_threshold():
    from engine.evaluate.evaluate import find_regressions

    sets = {"general": {"base": {"loss": 2.0}, "tuned": {"loss": 2.3}},
            "safety": {"base": {"refusal_rate": 1.0, "loss": 1.0}, "tuned": {"refusal_rate": 0.25, "loss": 1.01}},
            "task": {"base": {"exact_match": 0.1, "loss": 3.0}, "tuned": {"exact_match": 0.9, "loss": 1.0}}}
    got = {(r["set"], r["metric"]) for r in find_regressions(sets, 0.1)}
    assert got == {("general", "loss"), ("safety", "refusal_rate")}
    assert find_regressions(sets, 0.9) == []


def test_ftwb_train_refuses_a_missing_eval_set_file_before_the_run_starts(tmp_path):
    from engine_helpers import ftwb, small_demo_config, write_config

    cfg = small_demo_config()
    cfg.eval.sets = ["test", {"name": "task", "path": str(tmp_path / "nope.jsonl"), "scorer": "contains"}]
    res = ftwb("train", str(write_config(cfg, tmp_path / "c.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and "eval.sets[1].path:" in res.stderr and "nope.jsonl does not exist" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()
