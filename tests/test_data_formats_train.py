"""A real 3-step training run (real CLI, real engine, demo model) on several formats at once:
typed parts, a custom column/role mapping, a LLaMA-Factory dataset_info entry and a text
corpus. The run's tokenised examples are checked token by token: the answers (and only
they) are trained, the text corpus is trained whole."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import events_of, ftwb, only_run, write_config

pytestmark = pytest.mark.slow
F = Path(__file__).parent / "fixtures" / "formats"
Q0 = "Which planet is known as the red planet?"
A0 = "Mars is called the red planet because of the iron oxide on its surface."
SOURCES = [
    str(F / "chat_parts_value.jsonl"),
    {"path": str(F / "custom_columns.jsonl"), "columns": {"messages": "dialog", "role": "speaker", "content": "says",
                                                         "system": "persona"},
     "roles": {"Q": "user", "A": "assistant"}},
    str(F / "llamafactory" / "dataset_info.json") + "#tags_dialog",
    {"path": str(F / "corpus.txt"), "text_documents": "blank_line", "max_rows": 6},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from engine.demo import demo_config

    tmp = tmp_path_factory.mktemp("formats_run")
    cfg = demo_config()
    d = cfg.to_dict()
    d["data"].update(path=SOURCES, format="auto", val_split=0.1, max_seq_len=128)
    d["train"].update(max_steps=3, eval_every=0, save_every=0, micro_batch_size=4)
    d["eval"]["at_end"] = False
    cfg = C.from_dict(d)
    res = ftwb("train", str(write_config(cfg, tmp / "run.yaml")), "--runs-dir", str(tmp / "runs"))
    return res, only_run(tmp / "runs"), cfg


def test_the_run_trains_three_steps_on_every_source(run):
    res, run_dir, _ = run
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run_dir)
    assert [e["step"] for e in evs if e["type"] == "metric"] == [1, 2, 3]
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    info = json.loads((run_dir / rundir.DATA).read_text())
    assert [s["format"] for s in info["sources"]] == ["chat", "chat", "sharegpt", "text"]
    assert [s["rows_usable"] for s in info["sources"]] == [12, 12, 12, 6]
    data = next(e for e in evs if e["type"] == "data")
    assert data["usable"] == 42 and data["problems"] == 0


def test_the_trained_tokens_are_the_answers_as_meant(run):
    """The run's own tokenised examples (a cache hit proves they are the same ones), decoded."""
    _, run_dir, cfg = run
    from transformers import AutoTokenizer

    from engine.data.prepare import prepare
    from engine.data.template import IGNORE
    from engine.demo import ensure_demo_model

    tok = AutoTokenizer.from_pretrained(str(ensure_demo_model()), local_files_only=True)
    prep = prepare(cfg, tok)
    assert prep.stats["cache"] == "hit"
    items = {it["row"]: it for it in prep.train + prep.val}

    def trained(it):
        return tok.decode([t for t, lab in zip(it["input_ids"], it["labels"]) if lab != IGNORE])

    def seen(it):
        return tok.decode(it["input_ids"])

    # Rows 0-11: typed parts; 12-23: the custom mapping (with its persona as system); 24-35: dataset_info tags.
    for row, system in ((0, None), (12, "You are a patient tutor."), (24, "Be concise.")):
        it = items[row]
        assert A0 in trained(it) and Q0 not in trained(it), (row, trained(it))
        assert Q0 in seen(it)
        if system:
            assert system in seen(it) and system not in trained(it)
    # The text corpus: a document per blank-line block, every token of it trained.
    text_rows = sorted(r for r in items if r >= 36)
    assert text_rows and all(seen(items[r]).strip() in trained(items[r]) or
                             trained(items[r]).strip() in seen(items[r]) for r in text_rows)
    blocks = (F / "corpus.txt").read_text().strip().split("\n\n")
    for r in text_rows:  # the whole block, between the tokenizer's own document markers, no chat template
        body = trained(items[r]).removeprefix(tok.bos_token or "").removesuffix(tok.eos_token or "")
        assert body in blocks and "<|im_start|>" not in trained(items[r])
