"""Cleaning sessions: the op log, undo/redo, saved versions and their manifests."""
import hashlib
import json

import pytest

from engine.data.errors import DataError
from engine.data.versions import Session, list_versions, read_manifest, save_version


def _write(tmp_path, rows):
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


@pytest.fixture
def src(tmp_path):
    rows = [_chat(f"question {i}", f"answer {i}") for i in range(12)]
    rows[3] = _chat("mail me at x.y@example.com", "ok")
    rows.append(_chat("question 1", "answer 1"))             # exact duplicate of row 1
    rows.append({"messages": [{"role": "user", "content": "no answer"}]})
    return _write(tmp_path, rows)


def test_cleaning_never_touches_the_source(src):
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    s = Session(src)
    s.delete_rows([0]); s.redact_pii(); s.edit_field(2, "messages[1].content", "new"); s.drop_exact_duplicates()
    save_version(s)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_operations_undo_and_redo(src):
    s = Session(src)
    assert len(s.rows) == 14
    s.drop_exact_duplicates()
    assert len(s.rows) == 13 and 12 not in s.row_ids
    s.drop_failing("no_assistant")
    assert len(s.rows) == 12
    s.redact_pii([3])
    assert s.rows[3]["messages"][0]["content"] == "mail me at [EMAIL]"
    s.edit_field(0, "messages[1].content", "edited")
    assert s.rows[0]["messages"][1]["content"] == "edited"
    s.undo(); s.undo()
    assert s.rows[0]["messages"][1]["content"] == "answer 0"
    assert "[EMAIL]" not in s.rows[3]["messages"][0]["content"]
    s.redo()
    assert "[EMAIL]" in s.rows[3]["messages"][0]["content"]
    s.delete_rows([5]); s.restore_rows([5])
    assert 5 in s.row_ids
    assert [o["op"] for o in s.ops] == ["drop_exact_duplicates", "drop_failing", "redact_pii",
                                        "delete_rows", "restore_rows"]
    assert s.original[3]["messages"][0]["content"].endswith("example.com")  # loaded rows kept intact


def test_bad_operations_are_refused_before_logging(src):
    s = Session(src)
    with pytest.raises(DataError):
        s.delete_rows([99])
    with pytest.raises(DataError):
        s.edit_field(0, "messages[7].content", "x")
    with pytest.raises(DataError):
        s.drop_failing("no_such_check")
    assert s.ops == []


def test_save_writes_version_and_manifest_and_never_overwrites(src):
    s = Session(src)
    s.drop_exact_duplicates()
    v1 = save_version(s)
    assert v1.path.name == f"{v1.version}.jsonl" and v1.version.startswith("v1-")
    assert v1.path.parent == src.parent / ".ftwb-versions" / "data"
    body = v1.path.read_bytes()
    assert len(body.splitlines()) == 13
    man = read_manifest(v1.path)
    assert man["version"] == v1.version and man["source"] == str(src.resolve())
    assert man["source_hash"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert man["result_hash"] == hashlib.sha256(body).hexdigest() and man["result_hash"][:8] in v1.version
    assert (man["rows_in"], man["rows_out"]) == (14, 13)
    assert man["operations"] == [{"op": "drop_exact_duplicates", "rows": [12], "lines": [13]}] and man["created"]
    v2 = save_version(s)  # same content: a new version number, the first file untouched
    assert v2.version.startswith("v2-") and v1.path.read_bytes() == body
    assert [v.version for v in list_versions(src)] == [v1.version, v2.version]


def test_save_to_out_dir(src, tmp_path):
    s = Session(src)
    v = save_version(s, out_dir=tmp_path / "elsewhere")
    assert v.path.parent == tmp_path / "elsewhere" and v.manifest_path.exists()
