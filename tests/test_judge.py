"""The LLM judge against a real OpenAI-compatible endpoint on loopback, and that endpoint:
`ftwb serve --openai` serving a judge that ftwb itself fine-tuned (the demo model taught to
answer "A" or "B" to the judge's own pairwise prompt), judging the shared demo run's base
vs fine-tuned answers."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import ROOT, ftwb, only_run, write_config
from eval_run import trained_run

pytestmark = pytest.mark.slow

POLITE = ["Thank you for reaching out. We will look into it right away.",
          "Thanks for contacting support. A member of our team will get back to you soon.",
          "Sorry to hear about this. We have passed your request to the right team."]
SECRET = "sk-test-never-stored-0123456789"
JUDGED = 8


def _judge_rows() -> list[dict]:
    from engine.demo import demo_dataset_path
    from engine.evaluate.judge import DEFAULT_RUBRIC, pairwise_messages

    rng = random.Random(7)
    rows = []
    for line in demo_dataset_path().read_text().splitlines()[:160]:
        msgs = json.loads(line)["messages"]
        sample = {"prompt": msgs[:-1], "reference": msgs[-1]["content"]}
        good, bad = msgs[-1]["content"], rng.choice(POLITE)
        json_first = rng.random() < 0.5
        a, b = (good, bad) if json_first else (bad, good)
        rows.append({"messages": pairwise_messages(DEFAULT_RUBRIC, sample, a, b)
                     + [{"role": "assistant", "content": "A" if json_first else "B"}]})
    return rows


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judge")
    data = tmp / "judge.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _judge_rows()))
    cfg = C.RunConfig()
    cfg.data.path, cfg.data.val_split, cfg.data.test_split, cfg.data.max_seq_len = str(data), 0.05, 0.0, 512
    t = cfg.train
    t.max_steps, t.learning_rate, t.micro_batch_size, t.warmup_steps = 40, 3e-3, 4, 2
    t.eval_every, t.save_every, t.gradient_checkpointing = 0, 0, False
    cfg.eval.at_end, cfg.eval.sample_prompts = False, 0
    res = ftwb("train", str(write_config(cfg, tmp / "judge.yaml")), "--runs-dir", str(tmp / "runs"),
               "--name", "judge")
    assert res.returncode == 0, res.stderr[-2000:]
    run = only_run(tmp / "runs")
    proc = subprocess.Popen([sys.executable, "-m", "tui.main", "serve", "--openai", str(run), "--port", "0"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving http://127.0.0.1:"), line
    url, names = line.split()[1], line.split("models: ")[1].strip().split(", ")
    yield {"url": url, "model": names[0], "names": names}
    proc.terminate()
    proc.wait(30)


def _post(url: str, body: dict) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if r.headers.get("Content-Type") == "application/json" else text
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def test_openai_front_lists_models_and_answers_chat_completions(judge_server):
    url = judge_server["url"]
    with urllib.request.urlopen(url + "/models", timeout=30) as r:
        models = json.loads(r.read())
    assert [m["id"] for m in models["data"]] == judge_server["names"] and judge_server["names"][1] == "base"
    status, out = _post(url + "/chat/completions", {"model": "base", "max_tokens": 12, "temperature": 0,
                                                    "messages": [{"role": "user", "content": "My order is late"}]})
    assert status == 200 and out["object"] == "chat.completion" and out["model"] == "base"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    u = out["usage"]
    assert u["completion_tokens"] <= 12 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    # greedy is deterministic: the same request gives the same text; streaming gives it in pieces
    again = _post(url + "/chat/completions", {"model": "base", "max_tokens": 12, "temperature": 0,
                                              "messages": [{"role": "user", "content": "My order is late"}]})[1]
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
    status, sse = _post(url + "/chat/completions", {"model": "base", "max_tokens": 12, "temperature": 0,
                                                    "stream": True,
                                                    "messages": [{"role": "user", "content": "My order is late"}]})
    events = [l[6:] for l in sse.splitlines() if l.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_openai_front_refuses_bad_requests_with_openai_errors(judge_server):
    url = judge_server["url"]
    status, out = _post(url + "/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and out["error"]["code"] == "model_not_found" and "base" in out["error"]["message"]
    status, out = _post(url + "/chat/completions", {"messages": []})
    assert status == 400 and out["error"]["param"] == "messages"
    status, out = _post(url + "/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": 9})
    assert status == 400 and out["error"]["param"] == "temperature"


@pytest.fixture(scope="module")
def judged(tmp_path_factory, judge_server):
    src = trained_run(tmp_path_factory)
    run = tmp_path_factory.mktemp("judged") / src.name
    run.mkdir()
    shutil.copytree(src / rundir.ADAPTER, run / rundir.ADAPTER)
    cfg = C.load(src / rundir.CONFIG)
    cfg.eval.sets, cfg.eval.max_samples, cfg.eval.max_new_tokens = ["test"], JUDGED, 64
    cfg.eval.judge = {"url": judge_server["url"], "model": judge_server["model"], "max_samples": JUDGED,
                      "max_tokens": 4, "seed": 3}
    C.save(cfg, run / rundir.CONFIG)
    env = {"FTWB_JUDGE_API_KEY": SECRET, "FTWB_BASELINES_DIR": str(run.parent / "baselines")}
    res = ftwb("eval", str(run), "--json", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return run, json.loads(res.stdout[res.stdout.index("{"):])


def test_pairwise_judge_stores_raw_verdicts_and_a_win_rate(judged, judge_server):
    run, res = judged
    j = res["judge"]
    assert j["mode"] == "pairwise" and j["model"] == judge_server["model"] and j["url"] == judge_server["url"]
    assert j["judged"] == JUDGED and j["verdicts"]["failed"] == 0
    records = [json.loads(l) for l in (run / rundir.EVAL / "judge.jsonl").read_text().splitlines()]
    assert len(records) == JUDGED and all(isinstance(r["raw"], str) for r in records)
    # the order is randomised per sample, and each winner follows from the verdict and the order
    assert {tuple(r["order"]) for r in records} == {("base", "tuned"), ("tuned", "base")}
    for r in records:
        expect = {"A": r["order"][0], "B": r["order"][1], "tie": "tie", None: "unparsed"}[r["verdict"]]
        assert r["winner"] == expect
    decided = [r for r in records if r["winner"] != "unparsed"]
    assert decided, [r["raw"] for r in records]  # the trained judge answers with a verdict
    wins = sum(r["winner"] == "tuned" for r in decided) + 0.5 * sum(r["winner"] == "tie" for r in decided)
    assert j["win_rate"] == pytest.approx(wins / len(decided), abs=1e-4)


def test_the_judge_key_is_never_written_into_the_run(judged):
    run, _ = judged
    for f in run.rglob("*"):
        if f.is_file() and f.stat().st_size < 10_000_000:
            assert SECRET.encode() not in f.read_bytes(), f


def test_pointwise_judge_with_unreadable_scores_says_so_and_never_guesses(judged, judge_server, tmp_path):
    from engine.evaluate.judge import judge_run

    run, _ = judged
    cfg = C.load(run / rundir.CONFIG)
    cfg.eval.judge = {"url": judge_server["url"], "model": judge_server["model"], "mode": "pointwise",
                      "max_samples": 2, "max_tokens": 4}
    samples = {"test": [json.loads(l) for l in (run / rundir.EVAL / "samples.jsonl").read_text().splitlines()]}
    out = judge_run(cfg, samples, tmp_path)
    recs = [json.loads(l) for l in (tmp_path / "judge.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all("raw_base" in r and "raw_tuned" in r for r in recs)
    for r in recs:  # a score is only ever read from the reply itself
        for w in ("base", "tuned"):
            assert r[f"score_{w}"] is None or str(r[f"score_{w}"]) in r[f"raw_{w}"]
    if out["win_rate"] is None:
        assert "no verdict" in out["note"]


def test_no_endpoint_or_a_dead_one_skips_judging_with_a_note(tmp_path, monkeypatch):
    from engine.evaluate.judge import judge_run

    monkeypatch.delenv("FTWB_JUDGE_URL", raising=False)
    cfg = C.RunConfig()
    samples = {"test": [{"prompt": [{"role": "user", "content": "q"}], "reference": "r", "base": "a", "tuned": "b"}]}
    assert "no judge configured" in judge_run(cfg, samples, tmp_path)["skipped"]
    cfg.eval.judge = {"mode": "pairwise"}
    assert "eval.judge has no url" in judge_run(cfg, samples, tmp_path)["skipped"]
    cfg.eval.judge = {"url": "http://127.0.0.1:9/v1", "timeout_s": 5}
    out = judge_run(cfg, samples, tmp_path)
    assert out["skipped"].startswith("judge endpoint unavailable") and not (tmp_path / "judge.jsonl").exists()


def test_verdict_parsing_reads_only_real_verdicts():
    from engine.evaluate.judge import parse_pairwise, parse_score

    assert [parse_pairwise(t) for t in ("A", "B.", "tie", "[[B]] since", "Response A is better", "**A**\nok")] == [
        "A", "B", "tie", "B", "A", "A"]
    assert [parse_pairwise(t) for t in ("A member of our team", "", "Both are fine")] == [None, None, None]
    assert parse_score("7/10, clear") == 7 and parse_score("no idea") is None
