"""`ftwb runs`: every run with the status its events and lock say."""
import json
from pathlib import Path

from tui.main import main

RUNS = Path(__file__).resolve().parent / "fixtures" / "events" / "runs"


def test_runs_json_lists_each_recorded_run_with_its_status(capsys):
    assert main(["runs", "--json", "--runs-dir", str(RUNS)]) == 0
    runs = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs["healthy"]["status"] == "completed" and runs["healthy"]["best_val_loss"] is not None
    assert runs["nan"]["status"] == "failed" and runs["oom"]["status"] == "failed"
    assert runs["crash"]["status"] == "crashed"  # no done event and no live engine


def test_runs_table_and_empty_dir(capsys, tmp_path):
    assert main(["runs", "--runs-dir", str(RUNS)]) == 0
    out = capsys.readouterr().out
    assert "healthy" in out and "completed" in out
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_runs_table_at_80_columns_keeps_the_dataset(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "--runs-dir", str(RUNS)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "status" in line and "name" in line)
    assert "dataset" in header and "model" in header
    assert max(len(line) for line in out.splitlines()) <= 80
