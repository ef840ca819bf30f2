"""What the Runs screen does to a finished run, without widgets and without torch:
`ftwb eval` / `ftwb export` as subprocesses (awaited on the event loop, never blocking
it), and plain readers for what a run left behind (eval results, sample generations,
per-sample losses, exports, the dataset version) that feed the lineage view."""
from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import rundir
from engine.evaluate.evaluate import RESULTS, SAMPLES, read_results
from engine.evaluate.per_sample import PER_SAMPLE
from engine.export import EXPORT_DIR, read_exports

WORST_N = 50
EXISTS_HINT = "already exists; pass --force"


# ---------------------------------------------------------------- command lines

def ftwb_argv(*args: str) -> list[str]:
    """The `ftwb` command line, through this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "tui.main", *args]


def eval_argv(run_dir: str | Path) -> list[str]:
    return ftwb_argv("eval", str(run_dir), "--json")


def worst_argv(run_dir: str | Path, n: int = WORST_N) -> list[str]:
    return ftwb_argv("eval", str(run_dir), "--worst", str(n), "--json")


def export_argv(run_dir: str | Path, merge: bool = False, out: str | None = None, force: bool = False) -> list[str]:
    argv = ftwb_argv("export", str(run_dir))
    if merge:
        argv.append("--merge")
    if out:
        argv += ["--out", str(out)]
    if force:
        argv.append("--force")
    return argv


def default_export_dir(run_dir: str | Path, merge: bool) -> Path:
    return Path(run_dir) / EXPORT_DIR / ("merged" if merge else "adapter")


@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The last line the command printed on stderr (its one-line error), else stdout's."""
        for text in (self.stderr, self.stdout):
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        return f"exited with status {self.rc}"

    @property
    def target_exists(self) -> bool:
        """The export was refused because its target directory is already there."""
        return self.rc != 0 and EXISTS_HINT in self.stderr


async def run_cli(argv: list[str], cwd: str | Path | None = None) -> CliResult:
    """Run one ftwb command to the end; its output is collected, stdin is closed."""
    root = Path(__file__).resolve().parents[2]  # where `tui` and `engine` are importable from
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(cwd or root))
    except OSError as e:
        return CliResult(127, "", f"cannot start {argv[0]}: {e.strerror}")
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.terminate()
        raise
    return CliResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def parse_json(text: str) -> Any:
    """The JSON document a `--json` command printed (library noise before it is skipped)."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in the output")
    return json.loads(text[start:])


# ---------------------------------------------------------------- readers

def read_samples(run_dir: str | Path, limit: int = 200) -> list[dict]:
    """The sample generations of the last evaluation (prompt, reference, base, tuned)."""
    out: list[dict] = []
    try:
        with open(Path(run_dir) / rundir.EVAL / SAMPLES, encoding="utf-8") as f:
            for line in f:
                if len(out) >= limit:
                    break
                try:
                    s = json.loads(line)
                except ValueError:
                    continue
                if isinstance(s, dict):
                    out.append(s)
    except OSError:
        pass
    return out


def prompt_text(sample: dict) -> str:
    """The last user turn of a sample's prompt (what the model was asked)."""
    prompt = sample.get("prompt")
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1] if users else (prompt[-1].get("content", "") if prompt and isinstance(prompt[-1], dict)
                                             else ""))
    return str(prompt or "")


def has_per_sample(run_dir: str | Path) -> bool:
    return (Path(run_dir) / rundir.EVAL / PER_SAMPLE).is_file()


def read_worst(run_dir: str | Path, n: int = WORST_N) -> list[dict] | None:
    """The n highest-loss examples with previews, or None when they were never computed
    (computing them loads the model: that is `ftwb eval --worst`, in a subprocess)."""
    if not has_per_sample(run_dir):
        return None
    from engine.evaluate.per_sample import worst

    try:
        return worst(run_dir, n)
    except (OSError, ValueError, KeyError):
        return None


def dataset_path(run_dir: str | Path) -> str | None:
    """The file the run trained on: data.json's source, else the config's data.path."""
    run_dir = Path(run_dir)
    data = _read_json(run_dir / rundir.DATA)
    if isinstance(data.get("source"), str) and data["source"]:
        return data["source"]
    try:
        import yaml

        cfg = yaml.safe_load((run_dir / rundir.CONFIG).read_text()) or {}
        path = (cfg.get("data") or {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None
    if not path:
        return None
    from engine.demo import resolve_data_path

    return resolve_data_path(str(path))


def same_file(a: str | Path | None, b: str | Path | None) -> bool:
    if a is None or b is None:
        return False
    from engine.demo import resolve_data_path

    try:
        return Path(resolve_data_path(str(a))).resolve() == Path(resolve_data_path(str(b))).resolve()
    except OSError:
        return False


def source_index(source: Any, row: int, line: int | None) -> int | None:
    """Position in the Data screen's source of a loaded-dataset row. A JSONL source is
    indexed by non-blank line, so the row's source line finds it (unreadable lines are
    rows there but not in the loaded dataset); anything else is indexed like the loader."""
    index = getattr(source, "index", None)
    if line is not None and index is not None and hasattr(index, "snapshot"):
        import numpy as np

        linenos = index.snapshot()[2]
        k = int(np.searchsorted(linenos, line))
        return k if k < len(linenos) and int(linenos[k]) == line else None
    return row if 0 <= row < len(source) else None


# ---------------------------------------------------------------- lineage

@dataclass
class Lineage:
    """dataset version -> run -> evaluations -> exports, for one run."""
    run: Path
    data: dict = field(default_factory=dict)
    summary: Any = None
    results: dict | None = None
    exports: list[dict] = field(default_factory=list)
    done: dict = field(default_factory=dict)
    origin: str | None = None   # the file a saved dataset version was cleaned from


def load_lineage(run_dir: str | Path) -> Lineage:
    run_dir = Path(run_dir)
    from engine import events as ev

    done: dict = {}
    for e in ev.read_all(run_dir / rundir.EVENTS):
        if e.get("type") == "done":
            done = e
        elif e.get("type") == "hello":
            done = {}
    data = _read_json(run_dir / rundir.DATA)
    origin = None
    if data.get("version") and data.get("source"):
        from engine.data.versions import read_manifest

        origin = (read_manifest(data["source"]) or {}).get("source")
    return Lineage(run=run_dir, data=data, summary=rundir.summarize(run_dir),
                   results=read_results(run_dir), exports=read_exports(run_dir), done=done, origin=origin)


def _read_json(path: Path) -> dict:
    try:
        v = json.loads(path.read_text())
        return v if isinstance(v, dict) else {}
    except (OSError, ValueError):
        return {}


__all__ = ["CliResult", "Lineage", "RESULTS", "WORST_N", "dataset_path", "default_export_dir", "eval_argv",
           "export_argv", "ftwb_argv", "has_per_sample", "load_lineage", "parse_json", "prompt_text",
           "read_results", "read_samples", "read_worst", "run_cli", "same_file", "source_index", "worst_argv"]
