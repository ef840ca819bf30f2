"""Checks cover every row, not the first 200,000: a defect planted after row 200,000 is found
by `ftwb data check` (a real subprocess), by the findings gate before training and by the
Data screen's run_all_checks; a running scan stops promptly when cancelled (Ctrl+C for
the command, with a partial report and exit 130); streamed findings equal run_checks'."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.data.checks import run_checks
from engine.data.checks_stream import check_stream, list_batches
from engine.data.paged import iter_batches

N = 250_000
EMPTY_AT = 230_001      # {"text": ""}: an error (empty_text)
DUP_AT = 240_000        # the text of row 3 again: exact_duplicate of row 3
SECRET_AT = 235_000     # an AWS key id: a secret the gate refuses
AWS_KEY = "AKIA" + "Z7QX2M4RB6TN3WV5"
ROOT = Path(__file__).resolve().parents[1]
FTWB = [sys.executable, "-c", "import sys; from tui.main import main; sys.exit(main(sys.argv[1:]))"]


def _text(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=6).hexdigest()  # unrelated short texts


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scale") / "big.jsonl"
    with open(p, "w", encoding="utf-8") as fh:
        for i in range(N):
            t = "" if i == EMPTY_AT else _text(3) if i == DUP_AT else f"key {AWS_KEY}" if i == SECRET_AT else _text(i)
            fh.write('{"text": "' + t + '"}\n')
    return p


def _ftwb(*args, **kw):
    return subprocess.run([*FTWB, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)


def test_data_check_scans_every_row(big):
    p = _ftwb("data", "check", str(big), "--json")
    assert p.returncode == 1, p.stderr  # the empty text is an error
    assert p.stderr == ""                # no progress bar off a terminal
    doc = json.loads(p.stdout)
    assert doc["rows_scanned"] == N and doc["partial"] is False
    late = {(f["check"], f["row"]) for f in doc["findings"] if f["row"] > 200_000}
    assert ("empty_text", EMPTY_AT) in late and ("exact_duplicate", DUP_AT) in late
    assert ("secret_aws_key", SECRET_AT) in late
    dup = next(f for f in doc["findings"] if f["check"] == "exact_duplicate")
    assert dup["message"] == "same text as row 3" and dup["line"] == DUP_AT + 1


def test_data_check_sample_stops_at_n_rows(big):
    doc = json.loads(_ftwb("data", "check", str(big), "--json", "--sample", "1000").stdout)
    assert doc["rows_scanned"] == 1000 and doc["sampled"] is True
    assert not [f for f in doc["findings"] if f["row"] >= 1000]


def test_gate_scans_every_row(big):
    from engine.data.gate import scan

    rep = scan(str(big))
    assert rep.scanned == N and rep.rows == N
    assert rep.counts == {"empty_text": 1, "secret_aws_key": 1}
    assert rep.first["secret_aws_key"] == f"line {SECRET_AT + 1}"
    assert "checked the first" not in rep.summary()


def test_data_screen_checks_scan_every_row(big):
    from tui.services.dataset_session import Workbench, open_source, run_all_checks

    src, _ = open_source(big)
    src.index.build()
    lines: list[str] = []
    batches: list[int] = []
    found, note = run_all_checks(Workbench(src, fmt="completion"), progress=lines.append,
                                 on_findings=lambda b: batches.append(len(b)))
    late = {(f.check, f.row, f.line) for f in found if f.row > 200_000}
    assert ("empty_text", EMPTY_AT, EMPTY_AT + 1) in late
    assert ("exact_duplicate", DUP_AT, DUP_AT + 1) in late
    assert note == f"checked {N:,} rows"
    assert any("rows/s" in ln for ln in lines) and len(batches) >= 2  # results came in as batches finished


def test_cancelled_scan_returns_promptly_with_partial_results(big):
    stop = threading.Event()
    seen: list = []
    out: dict = {}

    def run():
        out["res"] = check_stream(iter_batches(big, cancelled=stop.is_set), "completion",
                                  progress=lambda p: seen.append(p.rows), cancelled=stop.is_set)
    t = threading.Thread(target=run)
    t.start()
    while not seen and t.is_alive():
        time.sleep(0.01)
    t0 = time.monotonic()
    stop.set()
    t.join(30)
    assert not t.is_alive() and time.monotonic() - t0 < 10  # within a batch or two, not the whole file
    res = out["res"]
    assert res.partial and 0 < res.rows < N and "near_duplicate" in res.skipped
    assert not [f for f in res.findings if f.row > res.rows]


def test_ctrl_c_stops_data_check_with_a_partial_report(big):
    proc = subprocess.Popen([*FTWB, "data", "check", str(big), "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    fd_dir = Path(f"/proc/{proc.pid}/fd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # reading the file: the handler is set
        try:
            if any(os.readlink(f) == str(big) for f in fd_dir.iterdir()):
                break
        except OSError:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["partial"] is True and doc["rows_scanned"] < N and "Traceback" not in err


def test_progress_bar_on_a_terminal(tmp_path):
    import pty

    p = tmp_path / "small.jsonl"
    p.write_text("".join(json.dumps({"text": _text(i)}) + "\n" for i in range(60_000)))
    master, slave = pty.openpty()
    proc = subprocess.Popen([*FTWB, "data", "check", str(p), "--no-near"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    out = proc.communicate(timeout=120)[0]
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    bar = b"".join(chunks).decode()
    assert proc.returncode == 0 and "rows scanned: 60,000" in out
    assert "rows/s" in bar and "%" in bar and "\r" in bar


def _chat(rng: random.Random, i: int) -> dict:
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"]) + str(rng.randrange(500))
             for _ in range(rng.randint(8, 30))]
    row = {"messages": [{"role": "user", "content": " ".join(words)},
                        {"role": "assistant", "content": f"answer {i}: " + " ".join(reversed(words))}]}
    k = i % 97
    if k == 5:
        row["messages"][1]["content"] = ""
    elif k == 11:
        row["messages"].append({"role": "user", "content": "and?"})
    elif k == 17:
        row["messages"][0]["content"] += " mail me at someone.name@example.org"
    elif k == 23:
        row["messages"][1]["content"] += " <|im_end|>"
    elif k == 29:
        row = {"messages": "not a list"}
    return row


def test_streamed_findings_equal_run_checks():
    rng = random.Random(5)
    rows = [_chat(rng, i) for i in range(3000)]
    for a, b in ((10, 1500), (2999, 20), (700, 701)):          # exact copies, across batches
        rows[a] = json.loads(json.dumps(rows[b]))
    for a, b in ((900, 2500), (44, 2222)):                     # near copies: one word changed
        near = json.loads(json.dumps(rows[b]))
        near["messages"][0]["content"] = "changed " + near["messages"][0]["content"]
        rows[a] = near
    val = [rows[1200], rows[1300]]
    lines = [i + 1 for i in range(len(rows))]
    want = [f.to_dict() for f in run_checks(rows, lines, "chat", val_rows=val)]
    got = check_stream(list_batches(rows, lines, batch_rows=256), "chat", val_rows=val)
    assert [f.to_dict() for f in got.findings] == want
    checks = {f["check"] for f in want}
    assert {"exact_duplicate", "near_duplicate", "train_val_leak", "empty_assistant", "pii_email",
            "special_token_in_content", "last_not_assistant"} <= checks
    assert got.rows == 3000 and not got.partial


def test_streamed_preference_checks_equal_run_checks():
    rows = [{"prompt": f"q{i}", "chosen": f"a careful answer number {i} with detail", "rejected": f"no {i}"}
            for i in range(400)]
    rows[300]["rejected"] = rows[10]["chosen"]   # another row's chosen answer, in an earlier batch
    rows[5]["rejected"] = rows[390]["chosen"]    # ... and in a later one
    want = [f.to_dict() for f in run_checks(rows, None, "preference", near_dup=False)]
    got = check_stream(list_batches(rows, batch_rows=64), "preference", near_dup=False)
    assert [f.to_dict() for f in got.findings] == want
    assert {f["row"] for f in want if f["check"] == "rejected_is_other_chosen"} == {5, 300}


async def test_data_screen_fills_in_findings_and_escape_stops_the_scan(big):
    sys.path.insert(0, str(Path(__file__).parent))
    from tui_data_helpers import Host, wait_for

    from tui.widgets.data.findings_list import FindingsList

    app = Host(big, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded, timeout=60, what="index complete")
        flist = app.screen.query_one(FindingsList)

        def header() -> str:
            return str(flist.get_option_at_index(0).prompt) if flist.option_count else ""
        await pilot.press("i")
        await wait_for(pilot, lambda: "so far" in header() and "rows/s" in header(), timeout=60,
                       what="a progress line while checks run")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "stopped: checked" in header(), timeout=30, what="the scan stopped")
        assert "(partial" in header()
        assert "rows/s" not in header()  # the final list, not a progress redraw


def test_cancel_while_finding_duplicates_keeps_the_exact_ones():
    rng = random.Random(9)
    rows = [_chat(rng, i) for i in range(1500)]
    rows[1400] = json.loads(json.dumps(rows[3]))
    phase: list[str] = []
    res = check_stream(list_batches(rows, batch_rows=500), "chat", val_rows=rows[:5],
                       progress=lambda p: phase.append(p.phase), cancelled=lambda: "duplicates" in phase)
    assert res.rows == 1500 and res.partial
    assert set(res.skipped) == {"near_duplicate", "train_val_leak"}
    assert (1400, "same text as row 3") in [(f.row, f.message) for f in res.findings if f.check == "exact_duplicate"]


def test_unreadable_records_are_findings_wherever_they_are(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = '{"text": "%s"}\n'
    p.write_text("".join(good % _text(i) if i not in (3, 45_000) else "{not json\n" for i in range(50_000)))
    res = check_stream(iter_batches(p), "completion", near_dup=False)
    assert [(f.row, f.line) for f in res.findings if f.check == "invalid_json"] == [(3, 4), (45_000, 45_001)]
    assert res.records == 50_000 and res.rows == 49_998
    head = check_stream(iter_batches(p), "completion", near_dup=False, sample=10)
    assert head.sampled and head.rows == 10 and head.records == 11
    assert [f.row for f in head.findings if f.check == "invalid_json"] == [3]


def test_ftwb_train_shows_the_gate_scan_on_a_terminal_and_refuses_a_late_secret(tmp_path):
    """The secrets/PII gate before a run reads every row; on a terminal it says so as it goes."""
    import pty

    from engine import config as C
    from engine.demo import demo_config

    data = tmp_path / "notes.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for i in range(60_000):
            fh.write(json.dumps({"text": f"note {i}: {_text(i)}" + (f" {AWS_KEY}" if i == 55_000 else "")}) + "\n")
    cfg = demo_config()
    cfg.data.path, cfg.data.format = str(data), "auto"
    C.save(cfg, tmp_path / "run.yaml")
    master, slave = pty.openpty()
    proc = subprocess.Popen([*FTWB, "train", str(tmp_path / "run.yaml"), "--runs-dir", str(tmp_path / "runs")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    proc.communicate(timeout=180)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 2, err
    assert "checking notes.jsonl for secrets" in err and "rows/s" in err and "\r" in err
    assert "secret_aws_key line 55001" in err and "--allow-findings" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # refused: no run directory
