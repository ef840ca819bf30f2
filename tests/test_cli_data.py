"""`ftwb data check` and `ftwb data split` end to end: exit codes, JSON shape, bad files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tui.main import main

ROOT = Path(__file__).resolve().parents[1]


_WORDS = ("printer router invoice refund login password screen battery update shipping warranty cable "
          "account email signal laptop charger order parcel voucher").split()


def _chat(i):
    """Distinct rows: each draws its own words, so no two are near duplicates."""
    import random

    rng = random.Random(i)
    q = " ".join(rng.choice(_WORDS) for _ in range(12))
    a = " ".join(rng.choice(_WORDS) for _ in range(16))
    return {"messages": [{"role": "user", "content": f"Help with {q}?"}, {"role": "assistant", "content": f"Try {a}."}]}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _check(capsys, *argv):
    rc = main(["data", "check", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else None), err


def test_clean_file_exits_0_with_json_shape(tmp_path, capsys):
    rc, doc, _ = _check(capsys, _jsonl(tmp_path / "ok.jsonl", [_chat(i) for i in range(20)]))
    assert rc == 0
    assert set(doc) >= {"file", "format", "rows", "findings", "counts"}
    assert doc["format"] == "chat" and doc["rows"] == 20 and doc["findings"] == [] and doc["counts"] == {}


def test_errors_exit_1_and_are_counted(tmp_path, capsys):
    rows = [_chat(i) for i in range(20)]
    rows[4]["messages"][1]["content"] = ""
    rows[6]["messages"][0]["content"] = "my key is AKIAIOSFODNN7EXAMPLE"
    rc, doc, _ = _check(capsys, _jsonl(tmp_path / "bad.jsonl", rows))
    assert rc == 1
    assert doc["counts"]["empty_assistant"] == 1 and doc["counts"]["secret_aws_key"] == 1
    f = next(x for x in doc["findings"] if x["check"] == "empty_assistant")
    assert (f["row"], f["line"], f["severity"]) == (4, 5, "error")


def test_warnings_only_exit_0(tmp_path, capsys):
    rows = [_chat(i) for i in range(20)] + [_chat(3)]
    rc, doc, _ = _check(capsys, _jsonl(tmp_path / "dup.jsonl", rows))
    assert rc == 0 and doc["counts"] == {"exact_duplicate": 1}


def test_missing_file_and_bad_arguments_exit_2(tmp_path, capsys):
    rc, _, err = _check(capsys, tmp_path / "nope.jsonl")
    assert rc == 2 and "not found" in err and "Traceback" not in err
    ok = _jsonl(tmp_path / "ok.jsonl", [_chat(i) for i in range(12)])
    rc, _, err = _check(capsys, ok, "--threshold", "1.5")
    assert rc == 2 and "--threshold" in err
    rc, _, err = _check(capsys, ok, "--model", tmp_path / "no_model_here")
    assert rc == 2 and "--model" in err


def _bad_file(tmp_path, name):
    good = [json.dumps(_chat(i)) for i in range(15)]
    files = {
        "binary.jsonl": lambda: bytes(range(256)) * 40,
        "latin1.jsonl": lambda: ("\n".join(good[:12]) + "\n" + json.dumps({"text": "café"}, ensure_ascii=False)).encode("latin-1"),
        "empty.jsonl": lambda: b"",
        "array.json": lambda: ("[" + ",\n".join(good[:7]) + ",\n{\"messages\": [oops},\n" + ",\n".join(good[7:]) + "]").encode(),
        "ragged.csv": lambda: b"instruction,input,output\n" + b"".join(f"q{i},,a{i}\n".encode() for i in range(12)) + b"q,x\n",
        "bom.jsonl": lambda: b"\xef\xbb\xbf" + "\n".join(good).encode(),
        "crlf.jsonl": lambda: "\r\n".join(good).encode() + b"\r\n",
        "huge.jsonl": lambda: json.dumps({"text": "x" * (50 * 1024 * 1024)}).encode(),
    }
    (tmp_path / name).write_bytes(files[name]())


@pytest.mark.parametrize("name,codes", [
    ("binary.jsonl", {2}), ("latin1.jsonl", {0, 1, 2}), ("empty.jsonl", {2}), ("array.json", {0, 1}),
    ("ragged.csv", {0, 1}), ("bom.jsonl", {0}), ("crlf.jsonl", {0}), ("huge.jsonl", {1}),
])
def test_bad_input_gives_a_message_never_a_traceback(tmp_path, name, codes):
    _bad_file(tmp_path, name)
    p = subprocess.run([sys.executable, "-c", "import sys; from tui.main import main; sys.exit(main(sys.argv[1:]))",
                        "data", "check", str(tmp_path / name), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode in codes, (p.returncode, p.stderr, p.stdout[:500])
    if p.returncode == 2:
        assert p.stderr.strip().count("\n") == 0 and str(tmp_path / name) in p.stderr
    else:
        doc = json.loads(p.stdout)
        if name == "array.json":  # the broken record is reported, the rest still checked
            assert doc["counts"].get("invalid_json", 0) >= 1 and doc["rows"] >= 7
        if name in ("bom.jsonl", "crlf.jsonl"):
            assert doc["rows"] == 15
        if name == "huge.jsonl":
            assert "too_few_rows" in doc["counts"]


def test_human_report_lists_checks_with_examples(tmp_path, capsys):
    rows = [_chat(i) for i in range(15)]
    rows[2]["messages"][0]["content"] += " <|im_end|>"
    rc = main(["data", "check", str(_jsonl(tmp_path / "t.jsonl", rows))])
    out = capsys.readouterr().out
    assert rc == 0 and "special_token_in_content" in out and "row 2" in out and "format: chat" in out


def test_split_writes_files_and_reports_leakage(tmp_path, capsys):
    rows = [_chat(i) for i in range(40)] + [_chat(i) for i in range(10)]  # 10 repeats: some will leak
    src = _jsonl(tmp_path / "s.jsonl", rows)
    before = src.read_bytes()
    rc = main(["data", "split", str(src), "--val", "0.2", "--test", "0.1", "--seed", "3", "--out",
               str(tmp_path / "out"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["rows"] == {"train": 35, "val": 10, "test": 5}
    lens = {k: len((tmp_path / "out" / f"{k}.jsonl").read_text().splitlines()) for k in ("train", "val", "test")}
    assert lens == doc["rows"] and src.read_bytes() == before
    assert set(doc["leaks"]) == {"val", "test"} and sum(doc["leaks"].values()) >= 1
    rc = main(["data", "split", str(src), "--val", "0.6", "--test", "0.5"])
    assert rc == 2


def test_split_stratifies_by_field(tmp_path, capsys):
    rows = [{"text": f"row {i} text", "label": "a" if i < 30 else "b"} for i in range(40)]
    src = _jsonl(tmp_path / "l.jsonl", rows)
    assert main(["data", "split", str(src), "--val", "0.5", "--stratify", "label", "--out", str(tmp_path / "o")]) == 0
    val = [json.loads(x) for x in (tmp_path / "o" / "val.jsonl").read_text().splitlines()]
    assert sum(r["label"] == "a" for r in val) == 15
