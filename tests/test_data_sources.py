"""Several datasets and split syntax: a list of sources, each with its own format, mapping,
split, weight and row cap, mixed deterministically; HF split syntax checked against
datasets' own ReadInstruction; what data.json records about each source."""
import json
from pathlib import Path

import pytest

from data_fixtures import make_tokenizer
from engine import config as C
from engine.data.errors import DataError
from engine.data.load import load_rows, parse_split, split_range
from engine.data.prepare import prepare
from engine.data.sources import dataset_hash, load_examples

F = Path(__file__).parent / "fixtures" / "formats"
LF = F / "llamafactory" / "dataset_info.json"


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWB_CACHE_DIR", str(tmp_path / "cache"))


def numbered(path: Path, n: int, start: int = 0) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"Say the number {i} in words", "output": f"number {i}"}) + "\n"
                            for i in range(start, start + n)))
    return path


def cfg_for(path, **data) -> C.RunConfig:
    return C.from_dict({"data": {"path": path, **data}})


# ---------------------------------------------------------------- split syntax

@pytest.mark.parametrize("spec", ["train", "train[:20%]", "train[100:200]", "train[-10%:]", "train[33%:66%]",
                                  "train[:7]", "train[-5:]", "train[5:-5]", "train[:0%]", "train[99%:]"])
@pytest.mark.parametrize("n", [0, 1, 7, 37, 250, 1001])
def test_split_rows_match_datasets_read_instruction(spec, n):
    from datasets import ReadInstruction

    ref = ReadInstruction.from_spec(spec).to_absolute({"train": n})[0]
    (name, a, b), = parse_split(spec)
    assert name == "train" and split_range(a, b, n) == range(ref.from_, ref.to)


def test_split_on_a_file_and_on_a_saved_datasetdict(tmp_path):
    p = numbered(tmp_path / "n.jsonl", 50)
    res = load_rows(p, split="train[10:15]")
    assert [r["output"] for r in res.rows] == [f"number {i}" for i in range(10, 15)] and res.lines[0] == 11
    assert [r["output"] for r in load_rows(p, split="train[:10%]+train[-2:]").rows] == \
        ["number 0", "number 1", "number 2", "number 3", "number 4", "number 48", "number 49"]
    with pytest.raises(DataError, match="split 'test' does not exist; a data file is one split named 'train'"):
        load_rows(p, split="test")

    import datasets

    rows = [{"text": f"document {i}"} for i in range(40)]
    d = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:30]),
                          "test": datasets.Dataset.from_list(rows[30:])}).save_to_disk(str(d))
    assert [r["text"] for r in load_rows(d, split="test[:20%]").rows] == ["document 30", "document 31"]
    assert len(load_rows(d, split="train[:50%]+test").rows) == 25
    with pytest.raises(DataError, match="split 'validation' does not exist; this dataset has train, test"):
        load_rows(d, split="validation")


def test_bad_split_syntax_is_a_config_error_before_anything_loads(tmp_path):
    with pytest.raises(C.ConfigError, match=r"data.split: .*'train\[:20\]%' is not a split; use NAME or NAME\[start:end\]"):
        cfg_for(str(tmp_path / "missing.jsonl"), split="train[:20]%")
    with pytest.raises(C.ConfigError, match=r"data.path\[1\].split"):
        cfg_for([str(tmp_path / "a.jsonl"), {"path": str(tmp_path / "b.jsonl"), "split": "train[x:]"}])


# ---------------------------------------------------------------- several sources

def test_sources_keep_their_own_format_and_mapping_and_are_numbered_globally(tmp_path):
    a = numbered(tmp_path / "a.jsonl", 12)
    cols = {"messages": "dialog", "role": "speaker", "content": "says", "system": "persona"}
    cfg = cfg_for([str(a), {"path": str(F / "custom_columns.jsonl"), "columns": cols,
                            "roles": {"Q": "user", "A": "assistant"}},
                   f"{LF}#tags_dialog", {"path": str(F / "pref_hh.jsonl"), "max_rows": 5}])
    mixed = load_examples(cfg.data, seed=1)
    assert [s.fmt for s in mixed.sources] == ["alpaca", "chat", "sharegpt", "preference"]
    assert mixed.usable == [12, 12, 12, 5] and len(mixed.examples) == 41
    assert mixed.examples[12]["messages"][0] == {"role": "system", "content": "You are a patient tutor."}
    assert mixed.rows[12] == 12 and mixed.rows[24] == 24  # one numbering across sources
    # max_rows: a seeded sample, the same for the same seed, another for another seed.
    again = load_examples(cfg.data, seed=1)
    assert again.rows == mixed.rows and load_examples(cfg.data, seed=2).rows[36:] != mixed.rows[36:]


def test_weights_repeat_or_sample_training_rows_only(tmp_path):
    a, b = numbered(tmp_path / "a.jsonl", 20), numbered(tmp_path / "b.jsonl", 20, start=100)
    cfg = cfg_for([{"path": str(a), "weight": 2}, {"path": str(b), "weight": 0.5}], val_split=0.2)
    prep = prepare(cfg, make_tokenizer("chatml"))
    from collections import Counter

    rows = Counter(it["row"] for it in prep.train)
    val_rows = {it["row"] for it in prep.val}
    from_a = [r for r in rows if r < 20]
    from_b = [r for r in rows if r >= 20]
    assert all(rows[r] == 2 for r in from_a)                      # weight 2: each training row twice
    assert all(rows[r] == 1 for r in from_b)
    train_b = 20 - sum(1 for r in val_rows if r >= 20)
    assert len(from_b) == round(train_b * 0.5)                     # weight 0.5: half of its training rows
    assert not val_rows & set(rows)                                # repeats never reach validation
    assert len(prep.val) == 8                                      # val is 20% of the 40 rows, unweighted
    again = prepare(cfg, make_tokenizer("chatml"))
    assert [it["row"] for it in again.train] == [it["row"] for it in prep.train]


def test_data_json_records_each_source_with_its_version_and_hash(tmp_path):
    from engine.data.load import content_hash

    a, b = numbered(tmp_path / "a.jsonl", 12), numbered(tmp_path / "b.jsonl", 12, start=50)
    (tmp_path / "b.jsonl.manifest.json").write_text(json.dumps({"version": "v3", "operations": []}))
    cfg = cfg_for([str(a), {"path": str(b), "split": "train[:50%]", "weight": 1.5}], val_split=0.0)
    info = prepare(cfg, make_tokenizer("chatml")).data_info
    s0, s1 = info["sources"]
    assert s0["content_hash"] == content_hash(a) and s1["content_hash"] == content_hash(b)
    assert (s1["version"], s1["split"], s1["weight"], s1["rows_usable"]) == ("v3", "train[:50%]", 1.5, 6)
    assert s0["format"] == s1["format"] == "alpaca"
    assert info["content_hash"] == dataset_hash(cfg.data)          # what the hello event carries
    assert info["content_hash"] not in (s0["content_hash"], s1["content_hash"])
    # One plain source keeps the file's own hash (as before there were several).
    one = prepare(cfg_for(str(a), val_split=0.0), make_tokenizer("chatml")).data_info
    assert one["content_hash"] == content_hash(a) and len(one["sources"]) == 1


def test_source_problems_are_named_in_the_config_or_by_file(tmp_path):
    with pytest.raises(C.ConfigError, match=r"data.path\[0\].weight: -1 is not allowed"):
        cfg_for([{"path": "a.jsonl", "weight": -1}])
    with pytest.raises(C.ConfigError, match=r"data.path\[0\].max_rows: 0 is not allowed"):
        cfg_for([{"path": "a.jsonl", "max_rows": 0}])
    with pytest.raises(C.ConfigError, match=r"data.path\[0\].colums: unknown key"):
        cfg_for([{"path": "a.jsonl", "colums": {}}])
    with pytest.raises(C.ConfigError, match=r"data.columns: unknown ftwb name 'conversation'"):
        cfg_for("a.jsonl", columns={"conversation": "x"})
    a = numbered(tmp_path / "a.jsonl", 12)
    cfg = cfg_for([str(a), {"path": str(F / "corpus.txt"), "format": "chat"}])
    with pytest.raises(DataError, match=r"corpus.txt: data.format is chat, but this is plain text"):
        load_examples(cfg.data)
