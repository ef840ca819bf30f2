"""Pre-flight: everything that can be checked before a run directory exists or a model loads.

One list of problems, each naming the field at fault, what is wrong and the fix, shared by
`ftwb train` (exit 2, no run directory) and the TUI's Config screen (its validity badge and
its Start key, from a worker). Checks, in order:

- the model: a local directory with config.json, weights and tokenizer files, or a hub id
  that is in the local hub cache, or (not cached) a hub that answers from this machine;
- the data: every source exists and reads, its format is detected and fits data.format,
  its first rows normalise, the objective fits the data, and there are enough rows for the
  configured validation/test split;
- the chat template (tokenizer only, no weights): it resolves and renders the first rows,
  and the loss mask keeps some tokens to train on;
- the runs directory: writable, with room for the checkpoints the run will keep;
- eval set files and tracker packages named in the config.

`check(cfg, deep=False)` skips the tokenizer (no transformers import): cheap enough for a
badge that follows every edit. Plain Python at import time.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SAMPLE_ROWS = 2000        # rows read per source: the whole of a small file, the head of a big one
RENDER_ROWS = 16          # examples rendered with the chat template
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "spiece.model",
                   "vocab.txt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SPACE_MARGIN = 64 << 20  # logs, events, eval outputs


@dataclass
class Problem:
    field: str        # the config field at fault: model.name_or_path, data.path, output.runs_dir ...
    message: str      # what is wrong
    fix: str = ""     # what to do about it

    def __str__(self) -> str:
        text = self.message if self.message.startswith(self.field) else f"{self.field}: {self.message}"
        return f"{text}; {self.fix}" if self.fix else text


@dataclass
class _Data:
    examples: list[dict]
    fmt: str


def check(cfg, runs_dir: str | None = None, deep: bool = True,
          notes: list[str] | None = None) -> list[Problem]:
    """Every problem that would stop this run, found without loading a model. `deep` also
    loads the tokenizer and renders the first rows with the chat template. `notes` (a list)
    receives one-line remarks that are not problems (a model that will be downloaded)."""
    from engine import launch
    from engine.config import ConfigError

    notes = notes if notes is not None else []
    try:
        cfg = launch.resolve_paths(cfg)  # also validates the config again (a form may have set fields)
    except ConfigError as e:
        msg = str(e)
        return [Problem(msg.split(":", 1)[0] if ":" in msg else "config", msg)]
    problems: list[Problem] = []
    model_dir = _check_model(cfg, problems, notes)
    data = _check_data(cfg, problems)
    _check_runs_dir(cfg, runs_dir, model_dir, problems)
    _check_eval_and_trackers(cfg, problems)
    if deep:
        _check_optimizer(cfg, problems)
    if deep and not problems and model_dir is not None and data is not None:  # the slow one last
        _check_template(cfg, model_dir, data, problems)
    return problems


def _check_eval_and_trackers(cfg, problems: list[Problem]) -> None:
    """Eval set and schema files that are not there, and train.report_to trackers whose
    package is not installed (each message names the field and the fix)."""
    from engine.evaluate.sets import missing_files
    from engine.trackers import missing_packages

    for field, msg in (("eval.sets", missing_files(cfg)), ("train.report_to", missing_packages(cfg))):
        if msg:
            problems.append(Problem(field, msg))


def _check_optimizer(cfg, problems: list[Problem]) -> None:
    """adamw_8bit is a bitsandbytes CUDA optimizer: refused up front on a machine without CUDA
    (never silently replaced by AdamW)."""
    if cfg.train.optimizer != "adamw_8bit":
        return
    import torch

    if not torch.cuda.is_available():
        problems.append(Problem("train.optimizer", "adamw_8bit needs a CUDA GPU (bitsandbytes) and this machine "
                                                   "has none", "set train.optimizer: adamw"))


def summary(problems: list[Problem]) -> str:
    """All problems as one text, one per line (what `ftwb train` prints)."""
    return "\n".join(str(p) for p in problems)


# ---------------------------------------------------------------- model

def _has_tokenizer(files: set[str]) -> bool:
    return bool(files & set(TOKENIZER_FILES))


def _has_weights(files: set[str]) -> bool:
    return any(f.endswith(WEIGHT_SUFFIXES) for f in files)


def _check_model(cfg, problems: list[Problem], notes: list[str]) -> Path | None:
    """The directory the tokenizer can be read from (None: not available here without a download)."""
    name = cfg.model.name_or_path
    if name == "demo":
        from engine.demo import demo_model_dir

        d = demo_model_dir()
        return d if (d / "config.json").exists() else None  # built on first use, from the recipe
    p = Path(name).expanduser()
    if p.exists():
        return _check_local(p, problems)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or not _HUB_ID.match(name)
    if looks_local:
        problems.append(Problem("model.name_or_path", f"{name} does not exist",
                                "pass a local model directory or a hub id such as meta-llama/Llama-3.2-1B"))
        return None
    return _check_hub(name, problems, notes)


def _check_local(p: Path, problems: list[Problem]) -> Path | None:
    if not p.is_dir():
        problems.append(Problem("model.name_or_path", f"{p} is a file, not a model directory",
                                "point it at the directory saved with save_pretrained"))
        return None
    files = {f.name for f in p.iterdir()}
    missing = []
    if "config.json" not in files:
        missing.append("config.json")
    if not _has_weights(files):
        missing.append("weights (*.safetensors or *.bin)")
    if not _has_tokenizer(files):
        missing.append("tokenizer files (tokenizer.json, tokenizer.model or tokenizer_config.json)")
    if missing:
        problems.append(Problem("model.name_or_path", f"{p} has no {', no '.join(missing)}",
                                "point it at a directory saved with save_pretrained (model and tokenizer)"))
        return None
    return p


def _hub_offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE",
                                                                                   "TRANSFORMERS_OFFLINE"))


def _cached_snapshot(repo_id: str) -> Path | None:
    """The local hub cache's snapshot of repo_id that has a config.json, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        got = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id or cache layout: treat as not cached
        return None
    return Path(got).parent if isinstance(got, str) else None


def _check_hub(repo_id: str, problems: list[Problem], notes: list[str]) -> Path | None:
    snap = _cached_snapshot(repo_id)
    if snap is not None:
        files = {f.name for f in snap.iterdir()}
        if _has_tokenizer(files) and _has_weights(files):
            return snap
        what = "tokenizer files" if not _has_tokenizer(files) else "weights"
        if _hub_offline() or not _reachable():
            problems.append(Problem("model.name_or_path", f"{repo_id} is in the hub cache without its {what}, and "
                                    "the hub is not reachable from this machine",
                                    f"download it on a machine with a network (huggingface-cli download {repo_id}) "
                                    "and copy it here, or point model.name_or_path at a local directory"))
            return None
        notes.append(f"model {repo_id}: its {what} will be downloaded from the hub")
        return None
    if _hub_offline():
        problems.append(Problem("model.name_or_path", f"{repo_id} is not a local directory and not in the hub cache, "
                                "and HF_HUB_OFFLINE is set",
                                f"download it first (huggingface-cli download {repo_id}) or point "
                                "model.name_or_path at a local directory"))
        return None
    if not _reachable():
        problems.append(Problem("model.name_or_path", f"{repo_id} is not a local directory and not in the hub cache, "
                                "and the hub is not reachable from this machine (no network)",
                                f"download it on a machine with a network (huggingface-cli download {repo_id}), "
                                "copy it here and point model.name_or_path at the directory"))
        return None
    notes.append(f"model {repo_id}: not cached; it will be downloaded from the hub")
    return None


def _reachable() -> bool:
    from engine.data.load import _hub_reachable  # one TCP probe with a short timeout

    return _hub_reachable()


# ---------------------------------------------------------------- data

def _check_data(cfg, problems: list[Problem]) -> _Data | None:
    from engine.data import sources as S
    from engine.data.errors import DataError
    from engine.data.preference import objective_problem

    d = cfg.data
    config = S.config_problems(d)
    if config:
        problems += [Problem(_field_of(msg, "data.path"), msg) for msg in config]
        return None
    try:
        specs = S.specs(d)
    except DataError as e:
        problems.append(Problem("data.path", str(e)))
        return None
    read: list = []
    complete = True
    for spec in specs:
        try:
            src = S.read(spec, limit=SAMPLE_ROWS)
        except DataError as e:
            problems.append(Problem("data.path", str(e)))
            continue
        except OSError as e:
            problems.append(Problem("data.path", f"{spec.label}: cannot be read ({e})", "check the path and its "
                                                                                         "permissions"))
            continue
        complete = complete and len(src.rows) + len(src.problems) < SAMPLE_ROWS
        fmt = "completion" if src.fmt == "text" else src.fmt
        why = objective_problem(cfg.train.objective, fmt, d.sft_on_chosen)
        if why:
            problems.append(Problem("train.objective", f"{spec.label}: {why}"))
            continue
        read.append(src)
    if len(read) < len(specs):
        return None
    mixed = S.mix(read, d.split_seed)
    if not mixed.examples:
        first = "; ".join(p.message for p in mixed.problems[:3]) or "no rows"
        problems.append(Problem("data.path", f"{', '.join(s.spec.label for s in read)}: none of the first rows is "
                                f"usable as {mixed.fmt} ({first})",
                                "fix these rows, or set data.format / data.columns to what the rows hold"))
        return None
    if complete:
        _check_split(cfg, len(mixed.examples), mixed.records, problems)
    return _Data(mixed.examples, mixed.fmt)


def _field_of(message: str, default: str) -> str:
    head = message.split(":", 1)[0]
    return head if head.startswith("data") and " " not in head else default


def _check_split(cfg, usable: int, total: int, problems: list[Problem]) -> None:
    """The configured split must be possible: a training example, and a validation (test)
    example whenever data.val_split (test_split) asks for one."""
    from engine.data.split import split_indices

    d = cfg.data
    parts = split_indices(usable, d.val_split, d.test_split, d.split_seed)
    short = []
    if not parts["train"]:
        short.append("training")
    if d.val_split > 0 and not parts["val"]:
        short.append("validation (data.val_split)")
    if d.test_split > 0 and not parts["test"]:
        short.append("test (data.test_split)")
    if short:
        rows = "row" if usable == 1 else "rows"
        problems.append(Problem("data.path", f"only {usable} usable {rows} (of {total}): too few for a "
                                f"{' and a '.join(short)} example",
                                "add rows (fine-tuning wants at least 10, and a few hundred to learn much), or set "
                                "data.val_split: 0 and data.test_split: 0 to train on them all"))


# ---------------------------------------------------------------- chat template

def _check_template(cfg, model_dir: Path, data: _Data, problems: list[Problem]) -> None:
    from engine.data.errors import DataError, RowError
    from engine.data.template import IGNORE, ensure_chat_template, tokenize_example
    from engine.train.model import ModelError, load_tokenizer

    try:
        tok = load_tokenizer(cfg, str(model_dir))
    except ModelError as e:
        problems.append(Problem("model.name_or_path", str(e)))
        return
    except Exception as e:  # noqa: BLE001 - a broken tokenizer file must be a message, not a traceback
        problems.append(Problem("model.name_or_path", f"the tokenizer in {model_dir} cannot be loaded "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})",
                                "re-save the tokenizer with save_pretrained"))
        return
    try:
        ensure_chat_template(tok, cfg.model.chat_template)
    except (DataError, ValueError) as e:
        problems.append(Problem("model.chat_template", str(e)))
        return
    sample = data.examples[:RENDER_ROWS]
    errors: list[str] = []
    trained = 0
    for ex in sample:
        try:
            _ids, labels = tokenize_example(tok, _sft_view(ex), cfg.data.train_on)
        except RowError as e:
            errors.append(str(e))
            continue
        trained += any(x != IGNORE for x in labels)
    if len(errors) == len(sample):
        problems.append(Problem("model.chat_template", f"the chat template cannot render the first rows "
                                f"({errors[0]})", "set model.chat_template to a template that fits these "
                                                  "conversations (a Jinja string or a name ftwb ships)"))
    elif not trained:
        problems.append(Problem("data.train_on", f"none of the first {len(sample)} examples has a token to train on "
                                "after masking (the template puts no assistant tokens in the loss)",
                                "check model.chat_template, or set data.train_on: all"))


def _sft_view(ex: dict) -> dict:
    """What one side of any example renders as: messages (chosen side for pairs) or text."""
    if "messages" in ex or "text" in ex:
        return {k: v for k, v in ex.items() if k in ("messages", "text", "tools")}
    if "prompt_messages" in ex:
        return {"messages": list(ex["prompt_messages"]) + list(ex.get("chosen") or []), "tools": ex.get("tools")}
    return ex


# ---------------------------------------------------------------- runs directory

def _existing_ancestor(p: Path) -> Path:
    p = p.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_runs_dir(cfg, runs_dir: str | None, model_dir: Path | None, problems: list[Problem]) -> None:
    from engine import rundir

    root = rundir.default_runs_dir(runs_dir, cfg.output.runs_dir if cfg.output.runs_dir != "runs" else None)
    field = "output.runs_dir" if not runs_dir and not os.environ.get(rundir.RUNS_DIR_ENV) else "--runs-dir"
    base = _existing_ancestor(root)
    if not base.is_dir():
        problems.append(Problem(field, f"{root} cannot be created: {base} is a file, not a directory",
                                "pick another runs directory (--runs-dir, FTWB_RUNS_DIR or output.runs_dir)"))
        return
    if not _writable(base):
        where = "is not writable" if base == root.expanduser().absolute() else f"cannot be created in {base} " \
                                                                               "(not writable)"
        problems.append(Problem(field, f"{root} {where}",
                                "pick a runs directory you can write to (--runs-dir, FTWB_RUNS_DIR or "
                                "output.runs_dir), or fix its permissions"))
        return
    need = expected_bytes(cfg, model_dir)
    free = shutil.disk_usage(base).free
    if free < need:
        problems.append(Problem(field, f"{root} has {_gib(free)} free; this run needs about {_gib(need)} for "
                                f"{cfg.train.keep_checkpoints + 2} checkpoints and the final weights",
                                "free some space, lower train.keep_checkpoints, or pick another runs directory"))


def _writable(d: Path) -> bool:
    """Really create (and remove) a file: permission bits say nothing on a read-only mount."""
    if not os.access(d, os.W_OK | os.X_OK):
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ftwb-preflight-", dir=d)
    except OSError as e:
        return e.errno == errno.ENOSPC  # writable but full: the space check says so, with numbers
    os.close(fd)
    os.unlink(tmp)
    return True


def expected_bytes(cfg, model_dir: Path | None) -> int:
    """Disk the run directory will need: the checkpoints it keeps (weights + optimizer state)
    and the final weights. Unknown model shape: only the margin."""
    shape = _shape(model_dir)
    if shape is None:
        return _SPACE_MARGIN
    from engine.memory import lora_params, lora_targets

    if cfg.method == "full":
        trainable = shape.n_params()
        weight_bytes = 2 if cfg.model.dtype in ("auto", "bfloat16", "float16") else 4
    else:
        targets, _unknown = lora_targets(cfg.lora.target_modules)
        trainable = lora_params(shape, cfg.lora.r, targets)
        weight_bytes = 4  # adapters are kept in fp32
    per_checkpoint = trainable * (weight_bytes + 8)  # weights + AdamW's two moments in fp32
    return per_checkpoint * (cfg.train.keep_checkpoints + 2) + trainable * weight_bytes + _SPACE_MARGIN


def _shape(model_dir: Path | None):
    if model_dir is None:
        return None
    import json

    from engine.memory import ModelConfigError, ModelShape

    try:
        return ModelShape.from_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, ModelConfigError):
        return None


def _gib(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GiB" if n >= 1 << 28 else f"{n / 1024 ** 2:.0f} MiB"


