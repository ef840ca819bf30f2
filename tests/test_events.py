"""The event protocol: the log always gets every event; a broken pipe is not an error."""
import json
import os

from engine import events as ev


def test_every_event_has_v_type_ts_and_goes_to_log_and_pipe(tmp_path):
    r, w = os.pipe()
    writer = ev.EventWriter(tmp_path / "events.jsonl", w)
    writer.emit("metric", step=1, loss=1.5)
    writer.emit("done", status="completed", summary={})
    writer.close()
    piped = os.read(r, 65536).decode().splitlines()
    logged = (tmp_path / "events.jsonl").read_text().splitlines()
    assert piped == logged and len(logged) == 2
    for line in logged:
        e = json.loads(line)
        assert e["v"] == 1 and e["type"] and isinstance(e["ts"], float)


def test_broken_pipe_keeps_writing_the_log(tmp_path):
    r, w = os.pipe()
    os.close(r)  # the TUI went away
    writer = ev.EventWriter(tmp_path / "events.jsonl", w)
    for i in range(3):
        writer.emit("metric", step=i, loss=1.0)
    writer.close()
    assert len(ev.read_all(tmp_path / "events.jsonl")) == 3


def test_nan_loss_is_still_valid_json(tmp_path):
    writer = ev.EventWriter(tmp_path / "e.jsonl")
    writer.emit("metric", step=3, loss=float("nan"))
    writer.close()
    (e,) = ev.read_all(tmp_path / "e.jsonl")
    assert e["loss"] == "nan"


def test_follower_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    f = ev.LogFollower(path)
    assert f.poll() == []
    with open(path, "w") as out:
        out.write(ev.encode(ev.make("phase", phase="training")) + "\n")
        out.write('{"v": 1, "type": "metric", "st')  # partial line, writer mid-flush
    assert [e["type"] for e in f.poll()] == ["phase"]
    with open(path, "a") as out:
        out.write('ep": 1}\nnot json\n')
    assert [e["type"] for e in f.poll()] == ["metric"]
    assert f.poll() == []


def test_decode_ignores_garbage():
    assert ev.decode(b"") is None and ev.decode("[1]") is None and ev.decode('{"x": 1}') is None
