"""Every fixture format: detected as what it is, normalised as its author meant, and clean
under `ftwb data check` (no false findings); multimodal data refused naming the modality."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.data.errors import DataError, RowError
from engine.data.normalize import normalize_kto, normalize_preference, normalize_row
from engine.data.sources import read, specs
from tui.main import main

from engine_helpers import SHARED as SHARED_ROOT

F = Path(__file__).parent / "fixtures" / "formats"
LF = F / "llamafactory" / "dataset_info.json"
SHARED = SHARED_ROOT / "datasets"  # the real LLaMA-Factory demo files, read in place where present
real_files = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real datasets are not on this machine")
Q0 = "Which planet is known as the red planet?"
A0 = "Mars is called the red planet because of the iron oxide on its surface."
B0 = "Mars is called the blue planet because its oceans cover most of its surface."


def data(path, **kw):
    return SimpleNamespace(path=str(path), format=kw.pop("format", "auto"), columns=kw.pop("columns", {}),
                           roles=kw.pop("roles", {}), split=kw.pop("split", None),
                           text_documents=kw.pop("text_documents", "file"))


def source(path, **kw):
    return read(specs(data(path, **kw))[0])


def check(capsys, *argv):
    rc = main(["data", "check", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else None), err


# (data.path, format, extra args for data check, extra source settings)
CASES = [
    ("chat_parts_value.jsonl", "chat", [], {}),
    ("chat_parts_text.jsonl", "chat", [], {}),
    ("chat_human_bot.jsonl", "chat", [], {}),
    ("kto_prompt_completion.jsonl", "kto", [], {}),
    ("kto_messages.jsonl", "kto", [], {}),
    ("pref_strings.jsonl", "preference", [], {}),
    ("pref_shared_prompt.jsonl", "preference", [], {}),
    ("pref_implicit.jsonl", "preference", [], {}),
    ("pref_hh.jsonl", "preference", [], {}),
    ("pref_sharegpt_ranking.json", "preference", [], {}),
    ("corpus.txt", "text", ["--text-documents", "blank_line"], {"text_documents": "blank_line"}),
    ("docs_dir", "text", [], {}),
    ("llamafactory/dataset_info.json#tags_dialog", "sharegpt", [], {}),
    ("llamafactory/dataset_info.json#alpaca_ranking", "preference", [], {}),
    ("llamafactory/dataset_info.json#sharegpt_kto", "kto", [], {}),
    ("llamafactory/dataset_info.json#pretrain", "completion", [], {}),
    ("llamafactory/alpaca_history", "alpaca", [], {}),
    ("chat_messages.jsonl", "chat", [], {}),
]


@pytest.mark.parametrize("name,fmt,args,kw", CASES, ids=[c[0] for c in CASES])
def test_fixture_is_detected_and_data_check_is_clean(capsys, name, fmt, args, kw):
    src = source(F / name, **kw)
    assert src.fmt == fmt, src.reason
    rc, doc, err = check(capsys, F / name, *args, "--no-near")
    few = {"too_few_rows"} if len(src.rows) < 10 else set()  # a small slice: said, and nothing else
    assert rc == (1 if few else 0) and doc["format"] == fmt, (err, doc and doc["counts"])
    assert set(doc["counts"]) == few, doc["counts"]


def test_typed_parts_with_value_or_text_read_as_their_text():
    for name in ("chat_parts_value.jsonl", "chat_parts_text.jsonl"):
        ex = normalize_row(source(F / name).rows[0], "chat")
        assert ex["messages"][-2:] == [{"role": "user", "content": Q0}, {"role": "assistant", "content": A0}]
    ex = normalize_row(source(F / "chat_parts_text.jsonl").rows[0], "chat")
    assert ex["messages"][0] == {"role": "system", "content": "Answer in one sentence."}


def test_every_preference_layout_gives_the_same_pair():
    want = {"prompt_messages": [{"role": "user", "content": Q0}], "chosen": [{"role": "assistant", "content": A0}],
            "rejected": [{"role": "assistant", "content": B0}], "tools": None}
    for name in ("pref_strings.jsonl", "pref_shared_prompt.jsonl", "pref_implicit.jsonl", "pref_hh.jsonl",
                 "pref_sharegpt_ranking.json"):
        assert normalize_preference(source(F / name).rows[0]) == want, name
    lf = source(f"{LF}#alpaca_ranking")
    assert normalize_preference(lf.rows[0]) == want
    # What SFT on chosen trains on: the prompt and the chosen answer.
    ex = normalize_row(source(F / "pref_hh.jsonl").rows[0], "preference")
    assert ex["messages"] == want["prompt_messages"] + want["chosen"] and ex["rejected"]["content"] == B0


def test_hh_transcripts_with_several_turns_share_the_prefix_as_prompt():
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: Why did the hen cross?",
           "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: No."}
    p = normalize_preference(row)
    assert [m["role"] for m in p["prompt_messages"]] == ["user", "assistant", "user"]
    assert p["chosen"][0]["content"] == "Why did the hen cross?" and p["rejected"][0]["content"] == "No."


@real_files
def test_real_dpo_demo_pairs_normalise():
    src = source(SHARED / "dpo_en_demo.json")
    pairs = [normalize_preference(r) for r in src.rows]
    assert len(pairs) == 300 and all(p["chosen"][0]["role"] == "assistant" for p in pairs)
    assert pairs[0]["rejected"][0]["content"] == src.rows[0]["rejected"]["value"]


def test_kto_rows_keep_their_label():
    ex = [normalize_kto(r) for r in source(F / "kto_prompt_completion.jsonl").rows]
    assert [e["label"] for e in ex[:4]] == [False, True, True, False]
    assert ex[0]["messages"] == [{"role": "user", "content": Q0}, {"role": "assistant", "content": B0}]
    lf = [normalize_kto(r) for r in source(f"{LF}#sharegpt_kto").rows]
    assert lf[1]["label"] is True and lf[1]["messages"][0]["role"] == "user"
    with pytest.raises(RowError, match="true .desirable. or false"):
        normalize_kto({"prompt": "p", "completion": "c", "label": 3})


def test_dataset_info_tags_columns_and_system_are_used():
    src = source(f"{LF}#tags_dialog")
    ex = normalize_row(src.rows[0], src.fmt)
    assert ex["messages"] == [{"role": "system", "content": "Be concise."}, {"role": "user", "content": Q0},
                              {"role": "assistant", "content": A0}]
    # A name in the directory that holds dataset_info.json resolves the same way.
    assert source(F / "llamafactory" / "tags_dialog").fmt == "sharegpt"
    hist = source(F / "llamafactory" / "alpaca_history")
    assert hist.spec.max_rows == 10  # num_samples
    assert [m["role"] for m in normalize_row(hist.rows[1], "alpaca")["messages"]] == ["user", "assistant"] * 2
    pre = source(f"{LF}#pretrain")
    assert normalize_row(pre.rows[0], pre.fmt) == {"text": f"{Q0} {A0}"}


def test_dataset_info_errors_name_the_fix():
    with pytest.raises(DataError, match=r"holds 6 datasets .*#NAME"):
        specs(data(LF))
    with pytest.raises(DataError, match=r"no dataset named 'tags_dialogue' \(did you mean 'tags_dialog'\?\)"):
        specs(data(f"{LF}#tags_dialogue"))
    with pytest.raises(DataError, match="images columns: a multimodal dataset"):
        specs(data(f"{LF}#pictures"))


def test_config_columns_and_roles_map_a_custom_layout(capsys, tmp_path):
    cols = {"messages": "dialog", "role": "speaker", "content": "says", "system": "persona"}
    roles = {"Q": "user", "A": "assistant"}
    src = source(F / "custom_columns.jsonl", columns=cols, roles=roles)
    assert src.fmt == "chat"
    ex = normalize_row(src.rows[0], src.fmt)
    assert ex["messages"] == [{"role": "system", "content": "You are a patient tutor."},
                              {"role": "user", "content": Q0}, {"role": "assistant", "content": A0}]
    assert "dialog" in src.load.rows[0]  # the rows as stored are untouched
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"data": {"path": str(F / "custom_columns.jsonl"), "columns": cols, "roles": roles}}))
    rc, doc, _ = check(capsys, "--config", cfg, "--no-near")
    assert rc == 0 and doc["sources"][0]["format"] == "chat" and doc["sources"][0]["counts"] == {}
    # Without the mapping the same file is refused, saying what was seen.
    rc, doc, _ = check(capsys, F / "custom_columns.jsonl")
    assert rc == 1 and "fields seen dialog" in doc["findings"][0]["message"]


@pytest.mark.parametrize("name,modality", [("multimodal_images.json", "image ('images' column)"),
                                           ("multimodal_parts.jsonl", "image (a content part of type 'image_url')")])
def test_multimodal_rows_are_refused_naming_the_modality(capsys, name, modality):
    with pytest.raises(DataError, match=r"12/12 rows carry " + modality.replace("(", r"\(").replace(")", r"\)")
                       + ".*ftwb trains text models only"):
        source(F / name)
    with pytest.raises(DataError, match="multimodal"):
        source(F / name, format="chat")  # a set format does not let them through as text
    rc, doc, _ = check(capsys, F / name)
    assert rc == 1 and list(doc["counts"]) == ["multimodal"]
    one = {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]},
                        {"role": "assistant", "content": "ok"}]}
    with pytest.raises(RowError, match="audio part"):
        normalize_row(one, "chat")


def test_text_corpora_one_document_per_file_or_per_block():
    assert len(source(F / "corpus.txt").rows) == 1
    blocks = source(F / "corpus.txt", text_documents="blank_line")
    assert len(blocks.rows) == 12 and blocks.rows[0] == {"text": f"{Q0}\n{A0}"} and blocks.lines[1] == 4
    md = source(F / "notes.md", text_documents="blank_line")
    assert md.rows[0] == {"text": "# Kitchen notes"} and md.fmt == "text"
    d = source(F / "docs_dir")
    assert len(d.rows) == 12 and d.rows[0]["text"] == f"{Q0}\n{A0}\n"


def test_a_set_format_that_does_not_fit_names_the_detected_one():
    with pytest.raises(DataError, match=r"data.format is chat, but this is plain text \(detected format: text"):
        source(F / "corpus.txt", format="chat")
    with pytest.raises(DataError, match=r"data.format is chat, but 8/8 sampled rows do not fit.*look like alpaca .* set data.format: alpaca or auto"):
        source(F / "identity.json", format="chat")
    # Labels and rejected answers are never dropped quietly by a set SFT format.
    with pytest.raises(DataError, match=r"data.format is alpaca, but the rows are preference .*set data.format: "
                                        r"preference or auto"):
        source(F / "pref_strings.jsonl", format="alpaca")
    with pytest.raises(DataError, match=r"data.format is chat, but the rows are kto .*labels would be ignored"):
        source(F / "kto_messages.jsonl", format="chat")
    # chat and sharegpt are read alike: a sharegpt file under format: chat is fine.
    assert source(F / "glaive_toolcall_en_demo.json", format="chat").fmt == "chat"


@real_files
@pytest.mark.parametrize("name,fmt", [("alpaca_en_demo.json", "alpaca"), ("identity.json", "alpaca"),
                                      ("glaive_toolcall_en_demo.json", "sharegpt"), ("dpo_en_demo.json", "preference"),
                                      ("c4_demo.jsonl", "completion")])
def test_real_shared_datasets_are_detected_and_every_row_is_usable(capsys, name, fmt):
    """The real files: their format, every row usable, and only content warnings (PII,
    duplicates that are really there), never a structure error."""
    src = source(SHARED / name)
    assert src.fmt == fmt
    rc, doc, _ = check(capsys, SHARED / name, "--no-near")
    assert rc == 0 and doc["format"] == fmt and doc["rows"] == len(src.rows)
    assert all(f["severity"] == "warning" for f in doc["findings"]), doc["counts"]
    assert set(doc["counts"]) <= {"exact_duplicate", "pii_email", "pii_phone", "pii_credit_card", "encoding",
                                  "length_imbalance"}
