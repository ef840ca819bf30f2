"""What the Config screen shows beside the form: the memory estimate grouped into the
bar's segments, auto-fit, the measured pre-flight (through the `ftwb estimate` CLI in a
subprocess, so torch never loads in the TUI), and the effective batch and step count.

Plain Python, no widgets: the screen calls these from thread workers.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config as C
from engine import memory as M

GPU_CHOICES_GB = (24, 40, 48, 80, 141)
DEFAULT_GPU_GB = 80
HEADROOM = 0.9
GB = 1024 ** 3  # the sizes above are sold as "GB" and mean GiB of usable memory

# The bar's segments: (key, label, estimator terms summed into it).
SEGMENTS = (
    ("weights", "weights", ("weights",)),
    ("trainable", "params+grads+optim", ("lora_params", "gradients", "optimizer_states", "master_weights",
                                                "autocast_copies")),
    ("activations", "activations", ("activations", "attention_mask", "dequant_buffer")),
    ("logits", "logits", ("logits",)),
    ("overhead", "CUDA ctx", ("cuda_context", "fragmentation")),
)


@dataclass
class MemoryView:
    """The estimate as the bar draws it, or the one-line reason there is none."""

    segments: list[tuple[str, str, int]] = field(default_factory=list)  # (key, label, bytes)
    total: int = 0
    gpu_total: int = 0
    gpu_detected: bool = False
    headroom: float = HEADROOM
    n_params: int = 0
    trainable: int = 0
    model_note: str = ""
    error: str | None = None

    @property
    def limit(self) -> float:
        return self.gpu_total * self.headroom

    @property
    def fits(self) -> bool | None:
        return None if self.error or not self.gpu_total else self.total <= self.limit


# ---------------------------------------------------------------- model config.json

class ModelConfigs:
    """config.json per model path, read once per path (the screen recomputes on every
    keystroke). 'demo' reads the built demo model, or the recipe's shape before it is built
    (building it would load torch)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[dict[str, Any], str]] = {}

    def get(self, name_or_path: str) -> tuple[dict[str, Any], str]:
        """(config dict, note); raises engine.memory.ModelConfigError with a one-line message."""
        if name_or_path not in self._cache:
            self._cache[name_or_path] = _read_model_config(name_or_path)
        return self._cache[name_or_path]


def _read_model_config(name_or_path: str) -> tuple[dict[str, Any], str]:
    if name_or_path == "demo":
        from engine import demo

        built = demo.demo_model_dir() / "config.json"
        if built.exists():
            return M._read_config_json(built), "demo model"
        recipe = demo._load_recipe()  # a plain-Python module: constants only at import
        return ({**recipe.MODEL, "vocab_size": recipe.VOCAB_SIZE, "model_type": "llama"},
                "demo model (not built yet: shape from its recipe, vocab at its upper bound)")
    return M.load_model_config(name_or_path), ""


def detect_gpu() -> int | None:
    return M.detect_gpu_total()


def memory_view(cfg: C.RunConfig, models: ModelConfigs, gpu_total: int, detected: bool,
                headroom: float = HEADROOM) -> MemoryView:
    try:
        mc, note = models.get(cfg.model.name_or_path)
        est = M.estimate(cfg, mc, gpu_total)
    except C.ConfigError as e:
        return MemoryView(gpu_total=gpu_total, gpu_detected=detected, headroom=headroom, error=str(e))
    by_term = {n: b for n, b, _ in est.breakdown}
    segs = [(key, label, sum(by_term.get(t, 0) for t in terms)) for key, label, terms in SEGMENTS]
    if cfg.method == "full":
        segs[1] = (segs[1][0], "params grads+optim", segs[1][2])
    else:
        segs[1] = (segs[1][0], "LoRA p+g+optim", segs[1][2])
    return MemoryView(segments=segs, total=est.total, gpu_total=gpu_total, gpu_detected=detected,
                      headroom=headroom, n_params=est.n_params, trainable=est.trainable_params, model_note=note)


def strategy_note(cfg: C.RunConfig) -> str:
    """How the processes of a multi-device run share the model, for the Config screen."""
    s = cfg.train.strategy
    if s == "ddp" or (s == "auto" and cfg.method != "full"):
        return "DDP: each process holds the whole model" + (
            " (auto: FSDP2 if it does not fit one GPU)" if s == "auto" else "")
    return "FSDP2 shards weights, gradients and optimizer over the devices: each needs less than this"


def detect_gpu_count() -> int | None:
    """The GPUs `train.devices: all` would use: CUDA_VISIBLE_DEVICES's entries where set,
    else what NVML counts; None without a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # set, even empty (CUDA then sees no GPU)
        return len([v for v in visible.split(",") if v.strip()]) or None
    return M.nvml_gpu_count()


# ---------------------------------------------------------------- auto-fit

@dataclass
class AutoFit:
    micro_batch_size: int | None     # None: even 1 does not fit
    grad_accum: int | None
    changes: list[tuple[str, Any, Any]]  # (field, now, proposed), for the diff the user accepts
    message: str


def auto_fit(cfg: C.RunConfig, models: ModelConfigs, gpu_total: int, headroom: float = HEADROOM) -> AutoFit:
    mc, _ = models.get(cfg.model.name_or_path)
    t = cfg.train
    best = M.largest_fitting_batch(cfg, mc, gpu_total, headroom)
    if best is None:
        return AutoFit(None, None, [], "Even micro_batch_size 1 does not fit: shorten data.max_seq_len, turn on "
                                       "train.gradient_checkpointing or use method qlora.")
    # Never change the effective batch: that would change the training. The micro-batch
    # is the largest that fits and divides it.
    effective = t.micro_batch_size * t.grad_accum
    capped = best > effective
    best, ga = M.keep_effective_batch(t.micro_batch_size, t.grad_accum, best)
    changes = [(p, a, b) for p, a, b in (("train.micro_batch_size", t.micro_batch_size, best),
                                         ("train.grad_accum", t.grad_accum, ga)) if a != b]
    msg = (f"Largest micro-batch under {headroom:.0%} of {gpu_total / GB:.0f} GiB: {best}"
           + (" (capped at the effective batch)" if capped else "")
           + f"; effective batch {effective} -> {best * ga}")
    return AutoFit(best, ga, changes, msg)


# ---------------------------------------------------------------- measured pre-flight

@dataclass
class Measured:
    peak_allocated: int | None = None
    oom: bool = False
    error: str | None = None


def measure(cfg: C.RunConfig, gpu_gb: float | None, timeout: float = 900) -> Measured:
    """`ftwb estimate CONFIG --measure --json` in a child process: torch loads there, not here."""
    fd, tmp = tempfile.mkstemp(prefix="ftwb-measure-", suffix=".yaml")
    os.close(fd)
    try:
        C.save(cfg, tmp)
        cmd = [sys.executable, "-m", "tui.main", "estimate", tmp, "--measure", "--json"]
        if gpu_gb:
            cmd += ["--gpu-gb", str(gpu_gb)]
        root = Path(__file__).resolve().parents[2]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=os.getcwd(),
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     filter(None, [str(root), os.environ.get("PYTHONPATH")]))})
        except subprocess.TimeoutExpired:
            return Measured(error=f"the measurement took over {timeout:.0f} s and was stopped")
    finally:
        Path(tmp).unlink(missing_ok=True)
    if out.returncode == 2 or not out.stdout.strip():
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Measured(error=last.removeprefix("ftwb estimate: ").replace(tmp, "the config"))
    try:
        m = json.loads(out.stdout)["measured"] or {}
    except (ValueError, KeyError, TypeError):
        return Measured(error="the measurement printed something that is not its JSON report")
    return Measured(peak_allocated=m.get("peak_allocated_bytes"), oom=bool(m.get("oom")))


# ---------------------------------------------------------------- batch and steps

@dataclass
class DataSize:
    rows: int | None
    bytes_per_row: float | None = None
    note: str = ""


def count_rows(path: str) -> DataSize:
    """A cheap row count: non-empty lines of JSONL, lines of CSV, Parquet metadata.
    Other sources (JSON arrays, saved datasets) would need a full load: unknown here."""
    if path == "demo":
        from engine.demo import demo_dataset_path

        path = str(demo_dataset_path())
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    try:
        if p.is_file() and suffix in (".jsonl", ".ndjson", ".csv"):
            rows, size = 0, 0
            with open(p, "rb") as f:
                for line in f:
                    if line.strip():
                        rows += 1
                        size += len(line)
            if suffix == ".csv":
                rows = max(0, rows - 1)  # the header
            return DataSize(rows, size / rows if rows else None)
        if p.is_file() and suffix == ".parquet":
            import pyarrow.parquet as pq

            n = pq.ParquetFile(p).metadata.num_rows
            return DataSize(n, p.stat().st_size * 3 / n if n else None)  # ~3x compression
    except OSError as e:
        return DataSize(None, note=f"cannot read {p}: {e.strerror}")
    if not p.exists():
        return DataSize(None, note=f"{path}: not found")
    return DataSize(None, note="row count unknown for this source (known for JSONL, CSV, Parquet)")


BYTES_PER_TOKEN = 4.0  # rough: JSON text of English chat, keys and markup included


@dataclass
class StepsInfo:
    effective_batch: int
    devices: int
    train_rows: int | None = None
    steps: int | None = None
    approximate: bool = True
    how: str = ""


def steps_info(cfg: C.RunConfig, size: DataSize | None, devices: int = 1) -> StepsInfo:
    t, d = cfg.train, cfg.data
    eff = t.micro_batch_size * t.grad_accum * devices
    info = StepsInfo(effective_batch=eff, devices=devices)
    if t.max_steps > 0:
        info.steps, info.approximate, info.how = t.max_steps, False, "train.max_steps"
        if size and size.rows is not None:
            info.train_rows = int(size.rows * (1 - d.val_split - d.test_split))
        return info
    if size is None or size.rows is None:
        info.how = size.note if size else "counting rows ..."
        return info
    train_rows = int(size.rows * (1 - d.val_split - d.test_split))
    info.train_rows = train_rows
    if d.packing and size.bytes_per_row:
        # Packing fills micro_batch_size x max_seq_len tokens per micro-batch.
        tokens = min(d.max_seq_len, size.bytes_per_row / BYTES_PER_TOKEN)
        micro = math.ceil(train_rows * tokens / (t.micro_batch_size * d.max_seq_len))
        info.how = f"packed, ~{tokens:.0f} tokens/example assumed from file size"
    else:
        micro = math.ceil(train_rows / t.micro_batch_size)
        info.how = "packing off: one example per slot" if not d.packing else "one example per slot"
    per_epoch = max(1, math.ceil(max(micro, 1) / (t.grad_accum * devices)))
    info.steps = max(1, math.ceil(per_epoch * t.epochs))
    return info


def auto_fit_line(cfg, runs_dir) -> str:
    """What auto-fit does with this config, and the choice the newest run of the same model
    and data made (RUN_DIR/auto_fit.json): the Config screen's line under the batch."""
    import json
    from pathlib import Path

    t = cfg.train
    if t.auto_fit == "off":
        line = "off: tokens per micro-batch and checkpointing as set"
    else:
        keep = "; keeps gradient_checkpointing" if t.auto_fit == "tokens" else " and checkpointing"
        line = (f"{t.auto_fit}: on a CUDA GPU the engine measures tokens per micro-batch{keep} at start "
                "(tokens per step kept); on CPU the config is used as set")
    try:
        runs = sorted((p for p in Path(runs_dir).iterdir() if (p / "auto_fit.json").is_file()), reverse=True)
    except OSError:
        runs = []
    for run in runs[:50]:
        try:
            import yaml

            rc = yaml.safe_load((run / "config.yaml").read_text()) or {}
            if (rc.get("model") or {}).get("name_or_path") != cfg.model.name_or_path or \
                    (rc.get("data") or {}).get("path") != cfg.data.path:
                continue
            c = json.loads((run / "auto_fit.json").read_text())
        except (OSError, ValueError, AttributeError):
            continue
        gc = "on" if c.get("gradient_checkpointing") else "off"
        return (line + f"\nlast choice ({run.name}): {c.get('tokens_per_micro_batch')} tokens/micro-batch, "
                f"checkpointing {gc}, grad_accum {c.get('grad_accum')}")
    return line
