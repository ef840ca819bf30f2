"""The run config: one YAML schema, validated at the edge.

Plain Python (dataclasses + PyYAML), cheap to import, shared by the engine and the TUI.
Every error names the field, the bad value and what is allowed, and is raised before
any model or dataset is touched.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config problem a user can fix; the message says what and how."""


# ---------------------------------------------------------------- schema
# Each field carries metadata: "help" (one line, with the usual range), and for numbers
# "min"/"max" (inclusive) or "gt" (exclusive). The TUI's editor reads the same metadata.

def _f(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)),
                     metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class ModelConfig:
    name_or_path: str = _f("demo", "Local model directory or hub id; 'demo' builds the bundled tiny model.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _f(
        "auto", "Weight/compute dtype; auto picks bf16 on GPUs that support it, fp32 on CPU.")
    attn_implementation: Literal["auto", "ftwb_varlen", "flash_attention_2", "sdpa", "eager"] = _f(
        "auto", "Attention kernel; auto tries torch's varlen kernel (CUDA), flash_attention_2, then sdpa, "
                "each checked for packing isolation at start-up.")
    trust_remote_code: bool = _f(False, "Run model code shipped with the checkpoint. Off unless you trust it.")
    chat_template: str | None = _f(
        None, "Override the tokenizer's chat template: a Jinja string, or a template ftwb ships (chatml, qwen, "
              "qwen3, llama3, mistral, gemma, phi, deepseek_r1). Empty = tokenizer's own.")


@dataclass
class LoraConfig:
    r: int = _f(16, "LoRA rank; 8-64 is usual.", min=1, max=1024)
    alpha: float = _f(32.0, "LoRA alpha (scale = alpha / r); about 2*r is usual.", gt=0)
    dropout: float = _f(0.05, "Dropout on the LoRA path; 0-0.1 is usual.", min=0.0, max=0.9)
    target_modules: Union[str, list[str]] = _f(
        "all-linear", "Modules to adapt: 'all-linear' or a list such as [q_proj, v_proj].")


@dataclass
class QuantConfig:
    bits: Literal[4, 8] = _f(4, "Quantisation bits for QLoRA (4 = NF4).")
    type: Literal["nf4", "fp4"] = _f("nf4", "4-bit quantisation type; nf4 is the QLoRA default.")
    double_quant: bool = _f(True, "Quantise the quantisation constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = _f("bfloat16", "Dtype of the dequantised matmuls.")


@dataclass
class DataConfig:
    path: Union[str, list[Union[str, dict]]] = _f(
        "demo", "Dataset file or directory (JSONL, JSON, CSV, Parquet, .txt/.md, saved HF dataset, "
                "dataset_info.json#name), 'demo', or a list of sources {path, format, columns, roles, split, "
                "weight, max_rows}.")
    format: Literal["auto", "chat", "sharegpt", "alpaca", "completion", "preference", "kto", "text"] = _f(
        "auto", "Row format; auto detects it from the fields (and names it when a set format does not fit).")
    columns: dict[str, str] = _f({}, "Source column per ftwb name, e.g. {messages: conversations, role: from, "
                                     "content: value}; empty = ftwb's own names.")
    roles: dict[str, str] = _f({}, "Source role -> user/assistant/system/tool, e.g. {Q: user, A: assistant}.")
    split: str | None = _f(None, "Rows to take, in HF split syntax: train, train[:20%], train[100:200]; "
                                 "empty = all (a saved DatasetDict: its train split).")
    text_documents: Literal["file", "blank_line"] = _f(
        "file", "How .txt/.md corpora become rows: one document per file, or one per blank-line block.")
    val_split: float = _f(0.1, "Fraction held out for validation; 0.05-0.1 is usual.", min=0.0, max=0.5)
    test_split: float = _f(0.0, "Fraction held out for the final test evaluation.", min=0.0, max=0.5)
    split_seed: int = _f(42, "Seed of the train/validation/test split.", min=0, max=2**32 - 1)
    max_seq_len: int = _f(1024, "Longest example in tokens; longer ones are truncated or dropped.", min=16, max=1048576)
    overlong: Literal["truncate", "drop"] = _f("truncate", "What to do with examples longer than max_seq_len.")
    train_on: Literal["assistant", "all"] = _f("assistant", "Train on assistant turns only, or on every token.")
    turn_policy: Literal["auto", "single", "per_turn", "last"] = _f(
        "auto", "Multi-turn rows whose template renders earlier assistant turns differently (e.g. strips their "
                "reasoning): auto = one render when every turn renders as it would last, else per_turn (one "
                "example per assistant turn); single = one render; last = train only the last turn.")
    packing: bool = _f(True, "Pack short examples into one row (attention kept inside each example).")
    allow_findings: bool = _f(False, "Train even when the dataset has secrets, PII or error-level check "
                                     "findings (ftwb train refuses them otherwise; --allow-findings).")
    sft_on_chosen: bool = _f(False, "Preference data with train.objective: sft trains on prompt + chosen only "
                                    "(rejected answers unused); off = such a run is refused.")


@dataclass
class TrainConfig:
    epochs: float = _f(1.0, "Passes over the training set; 1-3 is usual.", gt=0, max=1000)
    max_steps: int = _f(0, "Stop after this many optimizer steps; 0 = use epochs.", min=0)
    learning_rate: float = _f(2e-4, "Peak LR: LoRA 1e-4 to 3e-4, full fine-tuning 1e-5 to 5e-5.", gt=0, max=1.0)
    scheduler: Literal["cosine", "linear", "constant"] = _f("cosine", "LR schedule after warmup.")
    warmup_ratio: float = _f(0.03, "Warmup as a fraction of all steps; a few percent is usual.", min=0.0, max=0.5)
    warmup_steps: int = _f(0, "Warmup in steps; overrides warmup_ratio when > 0.", min=0)
    weight_decay: float = _f(0.0, "AdamW weight decay; 0-0.1.", min=0.0, max=1.0)
    optimizer: Literal["adamw", "adamw_8bit"] = _f("adamw", "Optimizer; adamw_8bit (bitsandbytes) saves memory on GPU.")
    micro_batch_size: int = _f(4, "Examples per forward pass (with packing: max_seq_len-sized slots per row).", min=1, max=4096)
    grad_accum: int = _f(1, "Micro-batches per optimizer step.", min=1, max=4096)
    gradient_checkpointing: bool = _f(True, "Recompute activations in backward: much less memory, ~30% slower.")
    auto_fit: Literal["auto", "tokens", "off"] = _f(
        "auto", "On CUDA, measure and pick tokens per micro-batch and checkpointing for the most trained "
                "tokens/s that fit (tokens per step kept); 'tokens' keeps gradient_checkpointing; off on CPU.")
    tokens_per_micro_batch: int = _f(
        0, "Tokens per packed micro-batch; 0 = micro_batch_size x max_seq_len, or auto-fit's choice.", min=0,
        max=1048576)
    loss_kernel: Literal["chunked", "liger"] = _f(
        "chunked", "lm_head + cross-entropy: chunked (default) or Liger's fused kernel (CUDA, pip liger-kernel).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 disables clipping.", min=0.0)
    strategy: Literal["auto", "ddp", "fsdp2"] = _f(
        "auto", "Several processes: auto = DDP for LoRA/QLoRA that fits one GPU, FSDP2 (sharded weights, "
                "gradients and optimizer) for full fine-tuning or a model that does not fit; ddp or fsdp2 forces one.")
    seed: int = _f(42, "Seed for initialisation and data order.", min=0, max=2**32 - 1)
    eval_every: int = _f(50, "Evaluate on the validation split every N steps; 0 = only at the end.", min=0)
    save_every: int = _f(100, "Checkpoint every N steps; 0 = only at the end.", min=0)
    evals_per_epoch: int = _f(0, "Evaluate N times per epoch (replaces eval_every once the steps per epoch are "
                                 "known); 0 = use eval_every.", min=0, max=1000)
    saves_per_epoch: int = _f(0, "Checkpoint N times per epoch (replaces save_every once the steps per epoch "
                                 "are known); 0 = use save_every.", min=0, max=1000)
    keep_checkpoints: int = _f(2, "Keep the last K checkpoints (the best by val loss is kept too).", min=1, max=1000)
    early_stopping_patience: int = _f(0, "Stop after N evals without a better val loss; 0 = off.", min=0)
    log_every: int = _f(1, "Emit a metric event every N optimizer steps.", min=1)
    report_to: Union[Literal["none", "tensorboard", "wandb", "mlflow"], list[Literal["tensorboard", "wandb", "mlflow"]]] = _f(
        "none", "Mirror metrics and eval scores into trackers: tensorboard, wandb (offline unless WANDB_MODE), "
                "mlflow (RUN_DIR/mlruns unless MLFLOW_TRACKING_URI); each needs its pip extra.")
    objective: Literal["sft", "dpo", "orpo", "kto"] = _f(
        "sft", "sft (next-token loss); dpo or orpo on chosen/rejected pairs; kto on rows labelled good/bad.")
    devices: Union[int, Literal["all"], list[int]] = _f(
        1, "Devices to train on: a count, 'all' (every GPU), or GPU indices such as [0, 2]; more than one "
           "runs one process per device through torchrun (without GPUs: that many CPU processes, gloo).")


@dataclass
class PreferenceConfig:
    beta: float = _f(0.1, "DPO/KTO: how far the policy may move from the reference (0.05-0.5; lower = further). "
                          "ORPO: weight of the odds-ratio term (about 0.1).", gt=0, max=100.0)
    loss: Literal["sigmoid", "ipo", "hinge"] = _f(
        "sigmoid", "DPO loss: sigmoid (standard DPO), ipo (squared, per-token averaged; resists overfitting), hinge.")
    label_smoothing: float = _f(0.0, "DPO sigmoid: assumed fraction of flipped pairs (conservative DPO); 0-0.2.",
                                min=0.0, max=0.49)
    rpo_alpha: float = _f(0.0, "DPO: add this times the chosen answers' NLL (RPO); 0 = off, about 1.0 when used.",
                          min=0.0, max=100.0)
    desirable_weight: float = _f(1.0, "KTO: weight of rows labelled good; raise it when they are the minority.",
                                 gt=0, max=100.0)
    undesirable_weight: float = _f(1.0, "KTO: weight of rows labelled bad.", gt=0, max=100.0)


@dataclass
class EvalConfig:
    at_end: bool = _f(True, "Evaluate base vs fine-tuned on the test split when the run ends.")
    max_new_tokens: int = _f(128, "Generation length for generation-based scores.", min=1, max=32768)
    max_samples: int = _f(50, "Test examples to generate for.", min=1)
    sample_prompts: int = _f(3, "Validation prompts answered (greedy) at each eval during training; 0 = off.",
                             min=0, max=32)
    sample_max_new_tokens: int = _f(48, "Token cap of each answer generated during training.", min=1, max=1024)
    sets: Union[str, list[Union[str, dict]]] = _f(
        ["test", "regression", "refusal"],
        "Eval sets scored base vs fine-tuned: test (the held-out split), regression (bundled general set, "
        "loss), refusal (bundled unsafe prompts), a file path, or {name, path, scorer, pattern, schema, max_rows}.")
    regression_threshold: float = _f(
        0.05, "A regression is flagged when a set gets worse by more than this: a score (0-1) drops by it, "
              "or the loss rises by this fraction.", min=0.0, max=10.0)
    system_prompt: str | None = _f(
        None, "Prompt-only baseline: a system prompt given to the base model (does prompting alone get there?).")
    few_shot: Union[int, list[dict]] = _f(
        0, "Prompt-only baseline: N training examples (or a list of {user, assistant}) shown to the base model.",
        min=0, max=32)
    judge: dict | None = _f(
        None, "LLM judge: {url, model, api_key_env, mode: pairwise|pointwise, rubric, max_samples, sets}; "
              "url/model also from FTWB_JUDGE_URL/FTWB_JUDGE_MODEL. The key is read from the environment only.")


@dataclass
class OutputConfig:
    runs_dir: str = _f("runs", "Where run directories are created (also FTWB_RUNS_DIR).")
    name: str | None = _f(None, "A short name for the run; the directory is <timestamp>-<name>.")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Literal["lora", "qlora", "full"] = _f("lora", "lora, qlora (4-bit base) or full fine-tuning.")
    lora: LoraConfig = field(default_factory=LoraConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    # ---- conversions
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def copy(self) -> "RunConfig":
        return from_dict(self.to_dict())


SECTIONS = ("model", "lora", "quant", "data", "train", "preference", "eval", "output")


# ---------------------------------------------------------------- validation

_PLURAL = {int: "integers", float: "numbers", bool: "true/false values", str: "strings", dict: "mappings"}


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is Union or origin is types.UnionType:
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return "a list of " + _PLURAL.get(get_args(tp)[0], "items")
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))


def _coerce(path: str, value: Any, tp: Any, meta: dict) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widened to float)."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Union or origin is types.UnionType:  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(path, value, a, meta)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{path}: {value!r} is not allowed; expected {_type_name(tp)}")
    if origin is Literal:
        if value in args and type(value) is type(args[args.index(value)]):
            return value
        raise ConfigError(f"{path}: {value!r} is not allowed; expected {_type_name(tp)}")
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path}: {value!r} is not allowed; expected {_type_name(tp)} (non-empty)")
        return [_coerce(f"{path}[{i}]", v, args[0], {}) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = value
        else:
            raise ConfigError(f"{path}: {value!r} is not allowed; expected an integer")
    elif tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-4" as a string; accept numeric strings for floats.
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{path}: {value!r} is not allowed; expected a number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        else:
            raise ConfigError(f"{path}: {value!r} is not allowed; expected a number")
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    if tp in (int, float):
        # .nan / .inf pass every comparison below (or poison the run at step 1): refuse them.
        if tp is float and not math.isfinite(value):
            raise ConfigError(f"{path}: {value!r} is not allowed; expected a finite number")
        if tp is int and meta.get("max") is None and abs(value) >= 2**63:
            raise ConfigError(f"{path}: {value!r} is out of range; it must be below 2**63")
        lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
        if gt is not None and not value > gt:
            raise ConfigError(f"{path}: {value!r} is out of range; it must be greater than {gt}")
        if lo is not None and value < lo:
            rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"{path}: {value!r} is out of range; it must be {rng}")
        if hi is not None and value > hi:
            rng = f"between {lo} and {hi}" if lo is not None else f"at most {hi}"
            raise ConfigError(f"{path}: {value!r} is out of range; it must be {rng}")
        return value
    raise ConfigError(f"{path}: {value!r} is not allowed; expected {_type_name(tp)}")


def _close_match(name: str, choices: list[str]) -> str:
    import difflib

    m = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{m[0]}'?)" if m else ""


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of fields, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(f"{path}: unknown key{_close_match(str(key), list(fields))}; "
                              f"allowed keys here: {allowed}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, path)
        else:
            kwargs[key] = _coerce(path, value, tp, dict(fields[key].metadata))
    return cls(**kwargs)


def _cross_checks(cfg: RunConfig) -> None:
    from engine.data.sources import config_problems  # plain Python: no file is opened

    for problem in config_problems(cfg.data)[:1]:
        raise ConfigError(problem)
    if cfg.data.val_split + cfg.data.test_split >= 0.9:
        raise ConfigError(f"data.val_split + data.test_split: {cfg.data.val_split + cfg.data.test_split:g} "
                          "leaves almost nothing to train on; keep the sum below 0.9")
    if cfg.method == "qlora" and cfg.train.strategy == "fsdp2":
        raise ConfigError("train.strategy: 'fsdp2' cannot shard a QLoRA model (its 4-bit bitsandbytes weights are "
                          "not sharded by FSDP2 here); use train.strategy: auto or ddp, or method: lora with fsdp2")
    if cfg.method == "qlora" and cfg.quant.bits == 8 and cfg.quant.type != "nf4":
        raise ConfigError("quant.type: only applies to 4-bit; set quant.bits: 4 or leave quant.type at nf4")
    ct = cfg.model.chat_template
    if ct:
        from engine.data.templates import resolve  # plain Python: reads one small file

        try:
            resolve(ct)
        except ValueError as e:
            raise ConfigError(f"model.chat_template: {e}") from None
    tm = cfg.lora.target_modules
    if isinstance(tm, str) and tm != "all-linear":
        raise ConfigError(f"lora.target_modules: {tm!r} is not allowed; expected 'all-linear' or a list "
                          "of module names such as [q_proj, v_proj]")
    tpm = cfg.train.tokens_per_micro_batch
    if tpm and tpm < cfg.data.max_seq_len:
        raise ConfigError(f"train.tokens_per_micro_batch: {tpm} is below data.max_seq_len "
                          f"({cfg.data.max_seq_len}), so the longest example would not fit a micro-batch; "
                          "raise it, or set 0 to use micro_batch_size x max_seq_len")
    _check_devices(cfg)
    from engine.evaluate.sets import check_eval_config  # plain Python, no heavy imports

    check_eval_config(cfg)


def device_count(devices: Any) -> int | None:
    """Processes train.devices asks for; None for 'all' (known only on the machine that runs it)."""
    if devices == "all":
        return None
    return len(devices) if isinstance(devices, list) else int(devices)


def _check_devices(cfg: RunConfig) -> None:
    dv = cfg.train.devices
    if isinstance(dv, int) and dv < 1:
        raise ConfigError(f"train.devices: {dv!r} is out of range; give a count of at least 1, 'all', "
                          "or a list of GPU indices such as [0, 1]")
    if isinstance(dv, list):
        if any(i < 0 for i in dv) or len(set(dv)) != len(dv):
            raise ConfigError(f"train.devices: {dv!r} is not allowed; GPU indices are distinct numbers from 0 "
                              "up (as nvidia-smi lists them), such as [0, 1]")
    problem = preference_parallel_problem(cfg, device_count(dv))  # 'all': checked once the count is known
    if problem:
        raise ConfigError(problem)


def preference_parallel_problem(cfg: RunConfig, processes: int | None) -> str | None:
    """Why cfg's preference objective cannot train on `processes` processes (None: not
    known yet), or None. LoRA/QLoRA train DPO, ORPO and KTO with data parallelism (DDP);
    full fine-tuning shards the model with FSDP2, which the preference step (and the
    reference log-probs cached before training) runs under; an adapter's reference (the
    model with its adapter switched off) is not run sharded."""
    obj = cfg.train.objective
    if obj == "sft" or not processes or processes <= 1:
        return None
    if cfg.method != "full" and cfg.train.strategy == "fsdp2":
        return (f"train.objective: {obj} with method: {cfg.method} and train.strategy: fsdp2 is not supported on "
                f"{processes} processes (preference objectives with adapters run on several with DDP); set "
                f"train.strategy: ddp (or auto), or train.devices: 1")
    return None


def from_dict(data: Any, cross_checks: bool = True) -> RunConfig:
    """The config from a mapping, every field checked. cross_checks=False leaves out the checks
    across fields and sections (`check`), which import the data and eval modules: for a bundled
    config whose caller runs them a moment later (the TUI, after its first frame)."""
    cfg = _build(RunConfig, data, "")
    if cross_checks:
        _cross_checks(cfg)
    return cfg


def check(cfg: RunConfig) -> None:
    """The checks across fields and sections that from_dict(..., cross_checks=False) left out."""
    _cross_checks(cfg)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would silently keep
    the last), naming both lines."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except (TypeError, yaml.YAMLError):
                continue  # unhashable keys: the base class reports them
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first given at line {seen[key]}); "
                                "keep one of them", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike, missing_hint: str, what: str = "file") -> Any:
    """Parse a YAML file; every failure is a ConfigError naming the file (and line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the {what} ({e})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


def load(path: str | os.PathLike, cross_checks: bool = True) -> RunConfig:
    data = read_yaml(path, "check the path or run `ftwb train --demo`", what="config file")
    if data is None:  # empty or only comments: never a silent full default run
        raise ConfigError(f"{Path(path)}: the config file is empty; give at least model.name_or_path and "
                          "data.path (see sample_data/demo.yaml), or run `ftwb train --demo`")
    try:
        return from_dict(data, cross_checks)
    except ConfigError as e:
        raise ConfigError(f"{Path(path)}: {e}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory and rename: never a half-written file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(cfg: RunConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, cfg.to_yaml())


def field_help() -> dict[str, dict[str, Any]]:
    """'section.field' -> metadata (help, min, max, gt) and type, for editors and docs."""
    out: dict[str, dict[str, Any]] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            path = f"{prefix}.{f.name}" if prefix else f.name
            if dataclasses.is_dataclass(tp):
                walk(tp, path)
            else:
                out[path] = {**f.metadata, "type": tp, "type_name": _type_name(tp)}

    walk(RunConfig, "")
    return out


# Fields a resumed run may change: they apply from the resume step on. Everything else
# (model, method, adapter shape, data and its order, batch shape, seed, objective) decides
# what the checkpoint's weights and data position mean, so a change there is refused.
RESUMABLE = ("train.epochs", "train.max_steps", "train.learning_rate", "train.scheduler", "train.warmup_ratio",
             "train.warmup_steps", "train.weight_decay", "train.max_grad_norm", "train.eval_every",
             "train.save_every", "train.keep_checkpoints", "train.early_stopping_patience", "train.log_every",
             "train.gradient_checkpointing", "train.report_to", "train.devices", "eval.", "output.")


def resume_changes(old: RunConfig, new: RunConfig) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """(allowed, refused) changes from the config a checkpoint was trained with to the run's
    config now, each as (field, old, new)."""
    allowed, refused = [], []
    for change in diff(old, new):
        ok = any(change[0] == f or (f.endswith(".") and change[0].startswith(f)) for f in RESUMABLE)
        (allowed if ok else refused).append(change)
    return allowed, refused


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)


def diff(a: RunConfig, b: RunConfig) -> list[tuple[str, Any, Any]]:
    """Fields whose values differ, as (dotted path, a's value, b's value)."""
    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            p = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                out.update(flat(v, p))
            else:
                out[p] = v
        return out

    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]
