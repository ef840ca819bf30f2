"""The row view: turns with roles, the raw JSON, and the token view with the loss mask
(trained and masked counts) through a tiny locally built tokenizer; the stats panel."""
from __future__ import annotations

import json

import pytest
from textual.widgets import Static

from data_fixtures import make_tokenizer
from tui.widgets.data.stats_panel import StatsPanel
from tui_data_helpers import Host, wait_for


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    make_tokenizer("chatml").save_pretrained(d)
    return d


def rows_file(tmp_path):
    p = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": "What is two plus two?"},
                          {"role": "assistant", "content": "Two plus two is four."}], "label": "math"}] * 3
    rows.append({"messages": [{"role": "user", "content": "Hello! " * 200},
                              {"role": "assistant", "content": "Hello! " * 50}], "label": "chat"})
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def text_of(app, wid: str) -> str:
    return str(app.screen.query_one(wid, Static).render())


async def test_turns_raw_and_tokens_with_trained_and_masked_counts(tmp_path, model_dir):
    from engine.data.normalize import normalize_row
    from engine.data.template import IGNORE, tokenize_example

    app = Host(rows_file(tmp_path), model_path=str(model_dir), max_seq_len=64)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        await wait_for(pilot, lambda: "assistant" in text_of(app, "#row-turns"), what="turns")
        turns = text_of(app, "#row-turns")
        assert "system" in turns and "user" in turns and "Two plus two is four." in turns
        assert '"role": "assistant"' in text_of(app, "#row-raw")

        await pilot.press("o")
        await wait_for(pilot, lambda: "trained" in text_of(app, "#row-tokens"), what="token view")
        ids, labels = tokenize_example(make_tokenizer("chatml"), normalize_row(
            json.loads(rows_file(tmp_path).read_text().splitlines()[0]), "chat"))
        trained = sum(lab != IGNORE for lab in labels)
        assert f"{len(ids)} tokens, {trained} trained" in text_of(app, "#row-tokens")
        assert 0 < trained < len(ids)

        await pilot.press("end")  # the long row: the max_seq_len cut is marked
        await wait_for(pilot, lambda: "max_seq_len 64: everything after" in text_of(app, "#row-tokens"),
                       what="cut marker")

        await pilot.press("s")
        panel = app.screen.query_one(StatsPanel)
        await wait_for(pilot, lambda: "token lengths" in str(panel.query_one("#stats-text", Static).render()),
                       what="stats")
        stats = str(panel.query_one("#stats-text", Static).render())
        assert "1 rows over max_seq_len 64" in stats and "cut trained assistant tokens" in stats
        assert "balance of label" in stats and "math 75%" in stats
        assert "packing efficiency" in stats


async def test_token_view_without_a_model_says_how_to_get_one(tmp_path):
    app = Host(rows_file(tmp_path), model_path=str(tmp_path / "no-such-model"))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, what="loaded")
        await pilot.press("o")
        await wait_for(pilot, lambda: "not a local model directory" in text_of(app, "#row-tokens"),
                       what="message")
