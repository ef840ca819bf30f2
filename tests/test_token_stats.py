"""Token statistics over a whole file (engine.data.token_stats): the batched, threaded
path gives exactly the figures of the engine's row-by-row path; the cache hits for the
same file version and settings and misses after a change; cancellation stops promptly;
`ftwb data stats --json` through a real subprocess."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import make_tokenizer
from engine.data import token_stats as T
from engine.data.errors import RowError
from engine.data.normalize import normalize_row
from engine.data.template import IGNORE, plan_row, tokenize_plans

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the printer is offline again", "reset my password please", "refund for order", "thanks",
         "error 42 on login", "<|im_end|> appears in text", "café ünïcode 🙂", "line one\nline two")


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("chatml")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(d)
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWB_CACHE_DIR", str(tmp_path / "cache"))


def _rows(n: int, seed: int = 0) -> list[dict | str]:
    """Chats of 1-3 exchanges with now and then a system prompt, long rows, and rows
    that cannot be used: a broken JSON line, no assistant turn, an empty answer."""
    rng = random.Random(seed)
    out: list = []
    for i in range(n):
        if i % 97 == 5:
            out.append('{"messages": [broken')
            continue
        msgs = [{"role": "system", "content": "You are support."}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            say = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
            msgs += [{"role": "user", "content": say(rng.randint(1, 12))},
                     {"role": "assistant", "content": say(rng.randint(1, 40))}]
        if i % 89 == 7:
            msgs = msgs[:1] if msgs[0]["role"] == "user" else msgs[:2]
        if i % 113 == 9:
            msgs[-1]["content"] = ""
        out.append({"messages": msgs})
    return out


def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _reference(tok, rows, policy: str, max_seq_len: int):
    """Row by row through normalise -> plan_row -> tokenize_plans, one row at a time."""
    lengths, trained, kept, unusable = [], [], [], 0
    for r in rows:
        if isinstance(r, str):
            unusable += 1
            continue
        try:
            plans = plan_row(tok, normalize_row(r, "chat"), "assistant", policy)
        except RowError:
            unusable += 1
            continue
        out = tokenize_plans(tok, plans)
        lengths.append(max(len(t.input_ids) for t in out))
        trained.append(sum(sum(x != IGNORE for x in t.labels) for t in out))
        kept.append(sum(sum(x != IGNORE for x in t.labels[:max_seq_len]) for t in out))
    return np.array(lengths), np.array(trained), np.array(kept), unusable


@pytest.mark.parametrize("policy", ["auto", "per_turn"])
def test_whole_file_stats_equal_the_row_by_row_path(tmp_path, tok, policy, monkeypatch):
    monkeypatch.setattr(T, "BATCH", 128)  # several batches through the two-thread pipeline
    rows = _rows(600 if policy == "auto" else 250)
    path = _write(tmp_path / "chats.jsonl", rows)
    s = T.Settings("chat", 96, turn_policy=policy)
    seen = []
    st = T.file_stats(path, tok, s, cache=False, progress=lambda x: seen.append(x.rows), threads=2)
    lengths, trained, kept, unusable = _reference(tok, rows, policy, 96)
    assert st.complete and st.rows == len(rows)
    assert np.array_equal(st.lengths, lengths) and np.array_equal(st.trained, trained)
    assert np.array_equal(st.trained_kept, kept)
    assert st.unusable_rows == unusable and st.usable + unusable == len(rows)
    assert st.overlong == int((lengths > 96).sum()) > 0
    assert st.cut_assistant == int((kept < trained).sum()) > 0
    reasons = st.unusable
    assert reasons[T.UNREADABLE] == sum(isinstance(r, str) for r in rows)
    assert any("no assistant turn" in k for k in reasons) and any("empty" in k for k in reasons)
    assert sum(c for _, _, c in T.buckets(st.lengths, 96)) == st.usable
    assert 0 < st.packing_efficiency <= 1
    assert seen == sorted(seen) and seen[-1] == len(rows)
    assert len(seen) == -(-len(rows) // T.BATCH)  # progress after every batch
    if policy == "per_turn":  # the one-thread path agrees
        one = T.file_stats(path, tok, s, cache=False, threads=1, processes=0)
        assert np.array_equal(one.lengths, st.lengths) and np.array_equal(one.trained, st.trained)
    else:  # and so do worker processes, merged in row order after the rows planned here
        monkeypatch.setattr(T, "POOL_AFTER", 200)
        pooled = T.file_stats(path, tok, s, cache=False, processes=2)
        assert np.array_equal(pooled.row_index, st.row_index) and np.array_equal(pooled.lengths, st.lengths)
        assert np.array_equal(pooled.trained_kept, st.trained_kept) and pooled.unusable == st.unusable


def test_cache_hits_for_the_same_version_and_misses_after_a_change(tmp_path, tok):
    rows = _rows(150, seed=1)
    path = _write(tmp_path / "c.jsonl", rows)
    s = T.Settings("chat", 128)
    first = T.file_stats(path, tok, s)
    assert first.cache == "miss"
    again = T.file_stats(path, tok, s)
    assert again.cache == "hit" and np.array_equal(again.lengths, first.lengths)
    assert again.to_dict() | {"cache": "", "seconds": 0} == first.to_dict() | {"cache": "", "seconds": 0}
    assert T.file_stats(path, tok, T.Settings("chat", 64)).cache == "miss"          # another max_seq_len
    assert T.file_stats(path, tok, T.Settings("chat", 128, turn_policy="last")).cache == "miss"
    other = make_tokenizer("chatml", vocab_size=300)                              # another tokenizer
    assert T.file_stats(path, other, s).cache == "miss"
    time.sleep(0.01)
    _write(path, rows + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}])
    changed = T.file_stats(path, tok, s)
    assert changed.cache == "miss" and changed.usable == first.usable + 1
    assert not list(T.cache_dir().glob(".*.tmp"))  # atomic writes leave no temp files


def test_cancellation_stops_within_a_batch(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(T, "BATCH", 256)
    path = _write(tmp_path / "big.jsonl", _rows(4000, seed=2))
    state = {"n": 0}

    def progress(st):
        state["n"] = st.rows

    t0 = time.perf_counter()
    with pytest.raises(T.StatsCancelled):
        T.file_stats(path, tok, T.Settings("chat", 128), progress=progress,
                     cancelled=lambda: state["n"] >= T.BATCH)
    assert state["n"] < 2 * T.BATCH + T.CANCEL_EVERY  # stopped after about one batch, not 4,000 rows
    assert time.perf_counter() - t0 < 30
    assert not list(T.cache_dir().glob("*.npz"))  # nothing half-done was cached


def test_sample_takes_an_even_sample(tmp_path, tok):
    rows = _rows(600, seed=3)
    path = _write(tmp_path / "s.jsonl", rows)
    st = T.file_stats(path, tok, T.Settings("chat", 128), sample=100, total=len(rows), cache=False)
    assert st.sample == 100 and st.usable + st.unusable_rows == 100
    assert st.row_index.max() >= 500  # spread over the file, not its head
    assert st.scope() == "a sample of 100 rows"


def test_cli_json_through_a_real_subprocess(tmp_path, model_dir):
    rows = _rows(150, seed=4)
    path = _write(tmp_path / "cli.jsonl", rows)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FTWB_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "tui.main", "data", "stats", str(path), "--model", str(model_dir),
           "--max-seq-len", "96", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    lengths, trained, _, unusable = _reference(make_tokenizer("chatml"), rows, "auto", 96)
    assert doc["format"] == "chat" and doc["rows"] == len(rows) and doc["usable"] == len(lengths)
    assert doc["unusable"] == unusable and doc["trained_tokens"] == int(trained.sum())
    assert doc["overlong"] == int((lengths > 96).sum()) and doc["lengths"]["max"] == int(lengths.max())
    assert sum(b["rows"] for b in doc["histogram"]) == doc["usable"] and doc["cache"] == "miss"
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert json.loads(again.stdout)["cache"] == "hit"
    text = subprocess.run(cmd[:-1], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert text.returncode == 0 and "max_seq_len 96" in text.stdout and "all 150 rows" in text.stdout
    bad = subprocess.run(cmd[:6] + ["--model", str(tmp_path / "nope")], capture_output=True, text=True, env=env,
                         timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "not a local directory" in bad.stderr and "Traceback" not in bad.stderr


async def test_data_screen_stats_cover_every_row_fill_in_and_come_from_the_cache(tmp_path, model_dir, monkeypatch):
    from textual.widgets import Static

    from tui.widgets.data.stats_panel import StatsPanel
    from tui_data_helpers import Host, wait_for

    import tui.screens.data_workbench as W

    monkeypatch.setattr(T, "BATCH", 50)  # several partial redraws on a small file
    monkeypatch.setattr(W, "STATS_SAMPLE", 100)
    rows = _rows(400, seed=5)
    path = _write(tmp_path / "screen.jsonl", rows)
    app = Host(path, model_path=str(model_dir), max_seq_len=96)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        panel = app.screen.query_one(StatsPanel)
        text = lambda: str(panel.query_one("#stats-text", Static).render())  # noqa: E731
        await pilot.press("s")
        await wait_for(pilot, lambda: "token lengths over all 400 rows" in text(), timeout=120, what="stats")
        lengths, trained, _, unusable = _reference(make_tokenizer("chatml"), rows, "auto", 96)
        assert f"{int((lengths > 96).sum()):,} rows over max_seq_len 96" in text()
        assert f"{int(trained.sum()):,} trained tokens" in text() and f"{unusable:,} rows cannot be formatted" in text()
        await pilot.press("s")  # the same file, tokenizer and settings: from the cache
        await wait_for(pilot, lambda: "from the cache" in text(), timeout=60, what="cached stats")
        await pilot.press("S")
        await wait_for(pilot, lambda: "token lengths over a sample of 100 rows" in text(), timeout=60, what="sample")
