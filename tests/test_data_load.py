"""Loading every supported source, with the problems a user can act on."""
import json

import pytest

from engine.data.errors import DataError
from engine.data.load import content_hash, load_rows


def write(tmp_path, name, data: bytes | str):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def test_jsonl_bad_line_is_reported_with_its_line_number_and_the_rest_loads(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"text": "a"}\n\n{"text": "b"\n{"text": "c"}\n[1, 2]\n')
    res = load_rows(p)
    assert [r["text"] for r in res.rows] == ["a", "c"]
    assert res.lines == [1, 4]
    assert res.kind == "jsonl" and res.source == str(p.resolve())
    assert [pr.line for pr in res.problems] == [3, 5]
    assert res.problems[0].message.startswith("line 3: not valid JSON (")
    assert "col" in res.problems[0].message
    assert "expected a JSON object" in res.problems[1].message


def test_jsonl_limit_stops_after_that_many_rows(tmp_path):
    p = write(tmp_path, "d.jsonl", "".join(f'{{"text": "{i}"}}\n' for i in range(10)))
    assert len(load_rows(p, limit=3).rows) == 3


def test_bom_and_crlf_are_handled(tmp_path):
    p = write(tmp_path, "d.jsonl", b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    res = load_rows(p)
    assert [r["text"] for r in res.rows] == ["a", "b"] and not res.problems
    c = write(tmp_path, "d.csv", b'\xef\xbb\xbfinstruction,output\r\n"say\r\nhi",hi\r\nx,y\r\n')
    res = load_rows(c)
    assert res.rows == [{"instruction": "say\r\nhi", "output": "hi"}, {"instruction": "x", "output": "y"}]
    assert res.lines == [2, 4]


def test_non_utf8_line_in_jsonl_is_a_row_problem_suggesting_utf8(tmp_path):
    p = write(tmp_path, "d.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    res = load_rows(p)
    assert len(res.rows) == 1
    assert res.problems[0].line == 2 and "UTF-8" in res.problems[0].message
    j = write(tmp_path, "d.json", b'[{"text": "caf\xe9"}]')
    with pytest.raises(DataError, match="not valid UTF-8 at line 1.*re-save the file as UTF-8"):
        load_rows(j)


def test_empty_and_binary_files_are_refused_clearly(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        load_rows(write(tmp_path, "e.jsonl", "\n  \n"))
    with pytest.raises(DataError, match="binary"):
        load_rows(write(tmp_path, "b.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
    with pytest.raises(DataError, match="not found"):
        load_rows(tmp_path / "missing.jsonl")


def test_json_array_and_object_with_a_list_field(tmp_path):
    p = write(tmp_path, "a.json", json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    res = load_rows(p)
    assert [r["text"] for r in res.rows] == ["a", "b"] and res.kind == "json"
    assert res.lines == [2, 5]
    o = write(tmp_path, "o.json", json.dumps({"version": 1, "data": [{"text": "x"}]}))
    assert load_rows(o).rows == [{"text": "x"}]


def test_broken_json_array_keeps_rows_before_the_error(tmp_path):
    text = '[\n {"text": "a"},\n {"text": "b"},\n {"text": "c" "oops"},\n {"text": "d"}\n]'
    res = load_rows(write(tmp_path, "broken.json", text))
    assert [r["text"] for r in res.rows] == ["a", "b"]
    assert len(res.problems) == 1
    pr = res.problems[0]
    assert pr.row == 2 and pr.line == 4
    assert "line 4: not valid JSON" in pr.message and "2 rows before it were loaded" in pr.message


def test_truncated_json_array_keeps_complete_rows(tmp_path):
    res = load_rows(write(tmp_path, "cut.json", '[{"text": "a"}, {"text": "b"}, {"te'))
    assert [r["text"] for r in res.rows] == ["a", "b"] and res.problems


def test_csv_ragged_row_is_a_problem_with_its_line(tmp_path):
    p = write(tmp_path, "d.csv", "instruction,output\nq1,a1\nq2,a2,extra\nq3\nq4,a4\n")
    res = load_rows(p)
    assert [r["instruction"] for r in res.rows] == ["q1", "q4"]
    assert [(pr.line, "more" in pr.message) for pr in res.problems] == [(3, True), (4, False)]


def test_parquet_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["q1", "q2"], "output": ["a1", "a2"]}), p)
    res = load_rows(p)
    assert res.kind == "parquet" and res.rows[1] == {"instruction": "q2", "output": "a2"}
    with pytest.raises(DataError, match="Parquet"):
        load_rows(write(tmp_path, "bad.parquet", b"PAR1 this is not parquet PAR1"))


def test_saved_hf_dataset_dir_takes_the_train_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"text": "t1"}, {"text": "t2"}]),
        "test": datasets.Dataset.from_list([{"text": "x"}]),
    })
    dd.save_to_disk(str(tmp_path / "saved"))
    res = load_rows(tmp_path / "saved")
    assert res.kind == "hf_saved" and [r["text"] for r in res.rows] == ["t1", "t2"]
    datasets.Dataset.from_list([{"text": "only"}]).save_to_disk(str(tmp_path / "single"))
    assert load_rows(tmp_path / "single").rows == [{"text": "only"}]
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        load_rows(tmp_path / "plain")


def test_hub_id_without_network_says_to_pass_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="hub is unreachable.*pass a local file"):
        load_rows("nobody-here/no-such-dataset")


def test_content_hash_changes_with_content_and_covers_directories(tmp_path):
    a = write(tmp_path, "a.jsonl", '{"text": "a"}\n')
    h1 = content_hash(a)
    assert len(h1) == 64 and h1 == content_hash(a)
    a.write_text('{"text": "b"}\n')
    assert content_hash(a) != h1
    d = tmp_path / "dir"
    d.mkdir()
    (d / "x").write_text("1")
    h2 = content_hash(d)
    (d / "y").write_text("2")
    assert content_hash(d) != h2


def test_the_file_is_never_modified(tmp_path):
    p = write(tmp_path, "d.jsonl", b'\xef\xbb\xbf{"text": "a"}\r\nnot json\r\n')
    before = p.read_bytes()
    load_rows(p)
    assert p.read_bytes() == before
