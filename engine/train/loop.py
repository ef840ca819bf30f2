"""The training loop: optimizer steps over packed micro-batches, with events.

One object owns the mutable training state (step, data position, best val loss) so a
checkpoint captures all of it and resume continues exactly where it stopped: the batch
plan of each epoch is a pure function of (seed, epoch), so the data position is just
(epoch, micro-batch index).

On several processes (engine.distributed) an optimizer step takes a window of
grad_accum x world_size consecutive micro-batches of that one plan, and rank r trains the
r-th grad_accum of them: no example twice, the same order as one process with grad_accum
x world_size, and a window that runs past the end of an epoch's plan continues into the
next epoch's (wrapping), so every rank has grad_accum micro-batches at every step. The
loss is divided by the step's GLOBAL trained-token count and the gradients are summed
over the ranks, so the step equals that one-process step up to float summation order.
The data position stays a micro-batch index of the plan, whatever the world size: a run
resumed on a different number of processes continues at the same example. Preference
objectives (DPO, ORPO, KTO with LoRA/QLoRA) take the same windows: their step divides by
the step's global pair and chosen-token counts (engine.train.preference).
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.config import RunConfig
from engine import distributed
from engine.data import pack
from engine.train import checkpoint as ckpt
from engine.train import preference
from engine.train.control import Control
from engine.train.loss import batch_loss
from engine.train.schedule import make_scheduler

SPIKE_FACTOR = 3.0  # a loss this many times the recent average is reported as a spike

# Fault injection for tests of the failure paths on machines without the hardware to hit
# them for real: FTWB_INJECT_FAULT=oom@3 raises CUDA OOM at step 3, nan@3 a NaN loss,
# nangrad@3 a NaN gradient norm, cpuoom@3 the CPU allocator's failure, latesave@3 a SIGUSR1
# the process sends itself right after step 3's agreement of the ranks; a trailing +
# (nan@3+) repeats it at every later step; a suffix :rankN (cpuoom@3:rank1) hits that rank only.
_FAULT, _, _FAULT_RANK = os.environ.get("FTWB_INJECT_FAULT", "").partition(":rank")


def step_context(model, cfg: RunConfig, device: str, amp_dtype):
    """Autocast in the compute dtype around forward passes: the base weights are bf16 and
    the fp32 adapters run their matmuls in bf16 too, so activations are saved in bf16
    while the adapters and their AdamW states stay fp32 (master weights). PEFT's cast of
    each adapter's input to fp32 is switched off inside (it would only add a copy).
    `amp_dtype` None (fp32 models, full fine-tuning): no autocast."""
    import contextlib

    import torch

    if amp_dtype is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type=device, dtype=amp_dtype))
    if cfg.method != "full":
        from peft.helpers import disable_input_dtype_casting

        stack.enter_context(disable_input_dtype_casting(model))
    return stack


class NonFiniteLoss(RuntimeError):
    """Training cannot go on finitely (non-finite losses or gradients step after step, or
    non-finite weights); the run stops with its last checkpoint whose weights are finite."""


# A non-finite loss or gradient norm skips the optimizer step; this many in a row (or any
# non-finite weight) means the run cannot continue.
NONFINITE_LIMIT = 3


@dataclass
class State:
    step: int = 0                 # optimizer steps done
    epoch: int = 0                # epoch of the next micro-batch
    batch_index: int = 0          # index of the next micro-batch within that epoch's plan
    tokens_seen: int = 0
    trained_tokens: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0            # evals in a row without improvement (early stopping)
    train_time_s: float = 0.0     # wall time spent in steps, evals and saves (for the ETA)
    last_checkpoint: str | None = None
    total_steps: int = 0
    extra: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, model, tokenizer, train: list[dict],
                 val: list[dict], device: str, emit: Callable[..., Any], control: Control,
                 world: distributed.World | None = None, strategy: str = "single"):
        self.cfg, self.run_dir, self.model, self.tok = cfg, run_dir, model, tokenizer
        self.world = world or distributed.world()
        # fsdp2 (engine.train.fsdp): FSDP2 sums the gradients itself, and every forward, the
        # finite check, checkpoints and the export are collective (all ranks, same count).
        self.sharded = strategy == "fsdp2"
        self.train_items, self.val_items = train, val
        self.device, self.emit, self.control = device, emit, control
        self.attn = getattr(model.config, "_attn_implementation", None) or "sdpa"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lengths = [preference.item_length(x) for x in train]  # a pair counts both its sides
        # dpo/orpo: the preference objective computes each step's loss (None = SFT).
        self.pref = (preference.PreferenceObjective(cfg, model, self.pad_id, self.attn, device, self.world,
                                                    sharded=self.sharded)
                     if cfg.train.objective != "sft" else None)
        if self.pref is not None and self.pref.needs_cached_reference:
            self.pref.cache_reference(run_dir, {"train": train, "val": val}, emit)
        self._pref_eval: dict | None = None
        self.state = State()
        self._plans: dict[int, list[list[int]]] = {}
        t = cfg.train
        per_epoch = max(1, math.ceil(len(self.plan(0)) / self._window()))
        self.steps_per_epoch = per_epoch
        # N evals/saves per epoch (imported configs) become step intervals now that an epoch's steps are known.
        for n, key in ((t.evals_per_epoch, "eval_every"), (t.saves_per_epoch, "save_every")):
            if n:
                setattr(t, key, max(1, per_epoch // n))
                emit("log", message=f"train.{key}: {getattr(t, key)} steps ({n} per epoch of {per_epoch} steps)")
        self.state.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(per_epoch * t.epochs))
        self.optimizer = self._make_optimizer()
        self.scheduler = make_scheduler(self.optimizer, t, self.state.total_steps)
        self._loss_ema: float | None = None
        self._setup_step()
        self.samples = None  # engine.train.samples.SamplePrompts, set by the run when eval.sample_prompts > 0
        self.config_text: str | None = None  # the run's config.yaml as written, kept in each checkpoint

    # ------------------------------------------------------------ set-up
    def _make_optimizer(self):
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        t = self.cfg.train
        if t.optimizer == "adamw_8bit" and self.device != "cuda":  # never a silent AdamW instead
            from engine.config import ConfigError

            raise ConfigError(f"train.optimizer: adamw_8bit needs a CUDA GPU (bitsandbytes) and this run is on "
                              f"{self.device}; set train.optimizer: adamw")
        if t.optimizer == "adamw_8bit":
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=t.learning_rate, weight_decay=t.weight_decay)
        kw = {"fused": True} if self.device == "cuda" and not self.sharded else {}
        return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay, **kw)

    def _setup_step(self) -> None:
        """Precision and overlap of the step (see step_context and _collated)."""
        import torch

        from engine.train.model import compute_dtype

        self.amp_dtype = compute_dtype(self.cfg, self.device)
        self.scaler = None
        self._pool = None
        self._pending: dict = {}
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 matmuls (adapters outside autocast)
            torch.backends.cudnn.allow_tf32 = True
            if self.amp_dtype == torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")  # fp16 gradients underflow without it
            from concurrent.futures import ThreadPoolExecutor

            # The next micro-batches are collated into pinned memory while the GPU works.
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ftwb-collate")

    def step_context(self):
        return step_context(self.model, self.cfg, self.device, self.amp_dtype)

    def _plan_shape(self) -> tuple[int, int]:
        """(rows per micro-batch, tokens per row) of the batch plan. With packing, a micro-batch
        is one row of tokens_per_micro_batch tokens (micro_batch_size x max_seq_len when 0)."""
        d, t = self.cfg.data, self.cfg.train
        if t.tokens_per_micro_batch:
            if d.packing:
                return 1, t.tokens_per_micro_batch
            return max(1, t.tokens_per_micro_batch // d.max_seq_len), d.max_seq_len
        return t.micro_batch_size, d.max_seq_len

    def plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            d, t = self.cfg.data, self.cfg.train
            rows, seq = self._plan_shape()
            self._plans = {epoch: pack.plan_batches(self.lengths, rows, seq, d.packing, t.seed, epoch)}
        return self._plans[epoch]

    def _window(self) -> int:
        """Micro-batches one optimizer step takes over all ranks."""
        return self.cfg.train.grad_accum * self.world.world_size

    def _share(self, window: list) -> list:
        """This rank's grad_accum micro-batches of a step's window."""
        g = self.cfg.train.grad_accum
        return window[self.world.rank * g:(self.world.rank + 1) * g]

    def _next_micro_batches(self, start: tuple[int, int] | None = None) -> list[tuple[list[int], int, int]]:
        """The next step's window of micro-batches (all ranks') as (indices, epoch, index), crossing epochs."""
        out = []
        epoch, idx = start or (self.state.epoch, self.state.batch_index)
        while len(out) < self._window():
            plan = self.plan(epoch)
            if idx >= len(plan):
                epoch, idx = epoch + 1, 0
                continue
            out.append((plan[idx], epoch, idx))
            idx += 1
        return out

    def _to_device(self, batch: dict) -> dict:
        import torch

        return {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()}

    def _collate(self, items: list[dict], pin: bool = False) -> dict:
        return pack.collate(items, self.cfg.data.packing, self.pad_id, pin=pin)

    def _collated(self, mbs: list[tuple[list[int], int, int]], after: tuple[int, int] | None = None) -> list:
        """Futures (CUDA: collated in the background into pinned memory) or batches (CPU) of
        these micro-batches; on CUDA this rank's share of the following step (the window
        from `after` on) is queued at once too."""
        if self._pool is None:
            return [self._collate([self.train_items[i] for i in idxs]) for idxs, _, _ in mbs]
        last = mbs[-1]
        after = after or (last[1], last[2] + 1)
        following = self._share(self._next_micro_batches(after)) if self.pref is None else []
        for idxs, epoch, index in mbs + following:
            if (epoch, index) not in self._pending:
                items = [self.train_items[i] for i in idxs]
                self._pending[(epoch, index)] = self._pool.submit(self._collate, items, True)
        return [self._pending.pop((e, i)) for _, e, i in mbs]

    # ------------------------------------------------------------ resume
    def resume_from(self, path: Path, changes: list | None = None) -> None:
        loader = None
        if self.sharded:
            from engine.train import fsdp

            loader = lambda d: fsdp.load_state(self.model, self.optimizer, d)  # noqa: E731 - collective
        saved = ckpt.load(path, self.model, self.optimizer, self.scheduler, self.cfg.method, rank=self.world.rank,
                          weights_loader=loader)
        extra = saved.pop("extra", {})
        total = self.state.total_steps  # from this config: an edited max_steps/epochs applies
        self.state = State(**{k: v for k, v in saved.items() if k in State.__dataclass_fields__}, extra=extra)
        self.state.last_checkpoint = str(path)
        changed = {k for k, _, _ in (changes or [])}
        was = int(extra.get("world_size", 1))
        if was != self.world.world_size:
            # The data position (epoch, micro-batch of the plan) is kept; each step now takes
            # grad_accum x the new world size micro-batches. An epoch-based run's step count is
            # what is left of its epochs at the new step size; max_steps keeps its meaning.
            if self.cfg.train.max_steps <= 0:
                n = len(self.plan(0)) or 1
                left = max(0, math.ceil(n * self.cfg.train.epochs) - (self.state.epoch * n + self.state.batch_index))
                total = self.state.step + max(1, math.ceil(left / self._window()))
                changed.add("train.max_steps")
            self.emit("warning", kind="world_size_changed", step=self.state.step, old=was,
                      new=self.world.world_size,
                      message=f"{path.name} was trained on {was} process(es), this run has {self.world.world_size}: "
                              f"the data position is kept (epoch {self.state.epoch}, micro-batch "
                              f"{self.state.batch_index}, {self.state.tokens_seen:,} tokens seen) and each step "
                              f"from here takes {self._window()} micro-batches; losses will not repeat the "
                              "earlier run's exactly")
        self.state.total_steps = total
        if changed & {"train.learning_rate", "train.max_steps", "train.epochs", "train.scheduler",
                      "train.warmup_ratio", "train.warmup_steps"}:
            # The saved optimizer and scheduler carry the old peak LR; take the new schedule
            # at the resume step.
            from engine.train.schedule import lr_factor, warmup_steps

            t = self.cfg.train
            w = warmup_steps(t, total)
            self.scheduler.lr_lambdas = [lambda s, w=w: lr_factor(s, total, w, t.scheduler)
                                         for _ in self.optimizer.param_groups]
            f = lr_factor(self.scheduler.last_epoch, total, w, t.scheduler)
            self.scheduler.base_lrs = [t.learning_rate for _ in self.optimizer.param_groups]
            for g in self.optimizer.param_groups:
                g["initial_lr"], g["lr"] = t.learning_rate, t.learning_rate * f
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if "train.weight_decay" in changed:
            for g in self.optimizer.param_groups:
                g["weight_decay"] = self.cfg.train.weight_decay

    # ------------------------------------------------------------ one step
    def train_step(self) -> dict:
        import torch

        self.model.train()
        window = self._next_micro_batches()
        mbs = self._share(window)
        if self.pref:
            with self.step_context():
                pref = self.pref.step([[self.train_items[i] for i in idxs] for idxs, _, _ in mbs])
            self._current_shape = pref["shape"]
            batches = []
        else:
            pref = None
            batches = self._collated(mbs, (window[-1][1], window[-1][2] + 1))
        # Counts come from the host: waiting for a future blocks only on collation, never the GPU.
        loss_total = None
        if not pref:
            counted = [b.result() if hasattr(b, "result") else b for b in batches]
            n_trained = sum(b["num_trained"] for b in counted)
            n_tokens = sum(b["num_tokens"] for b in counted)
            my_tokens = n_tokens
            if self.world.is_distributed:  # the loss is a mean over the whole step's trained tokens
                n_trained, n_tokens = (int(x) for x in self.world.all_reduce([n_trained, n_tokens]))
            n_trained = n_trained or 1
        else:  # the step's global counts (all-reduced by the objective)
            n_trained, n_tokens, my_tokens = pref["trained"], pref["tokens"], pref["my_tokens"]
        # No host sync in here: the loss is summed on the device and read once per step below.
        for b in (counted if not pref else []):
            self._current_shape = tuple(b["input_ids"].shape)
            with self.step_context():
                loss_sum, _ = batch_loss(self.model, self._to_device(b), self.cfg.train.loss_kernel)
            scaled = loss_sum / n_trained
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_total = loss_sum.detach() if loss_total is None else loss_total + loss_sum.detach()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.sharded:
            self.world.sum_gradients(params)  # after accumulation: one reduction per step, none per micro-batch
        max_norm = self.cfg.train.max_grad_norm
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.sharded:
            from engine.train import fsdp

            norm_t = fsdp.clip_grad_norm(params, max_norm)  # the norm over every rank's shards
        else:
            norm_t = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        if pref:
            loss, grad_norm = pref["loss"], float(norm_t)
        else:  # the one host sync of the step
            if loss_total is None:  # no micro-batch of this rank had tokens (cannot happen on one process)
                loss_total = torch.zeros((), device=norm_t.device)
            loss_sum_f, grad_norm = torch.stack([loss_total.float(), norm_t.float().to(loss_total.device)]).tolist()
            if self.world.is_distributed:
                loss_sum_f = self.world.all_reduce([loss_sum_f])[0]
            loss = loss_sum_f / n_trained
        if _FAULT and (not _FAULT_RANK or _FAULT_RANK == str(self.world.rank)):
            loss, grad_norm = self._inject(loss, grad_norm)
        # A NaN/inf loss or gradient norm must never reach the weights: skip the update. With
        # fp16 loss scaling inf gradients are routine; the scaler skips and rescales itself.
        skipped = ("loss" if not math.isfinite(loss)
                   else "grad_norm" if not math.isfinite(grad_norm) and not self.scaler else None)
        lr = self.scheduler.get_last_lr()[0]
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        elif self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        last_idxs, last_epoch, last_index = window[-1]
        self.state.epoch, self.state.batch_index = last_epoch, last_index + 1
        if self.state.batch_index >= len(self.plan(last_epoch)):
            self.state.epoch, self.state.batch_index = last_epoch + 1, 0
        self.state.step += 1
        self.state.tokens_seen += n_tokens
        self.state.trained_tokens += n_trained
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": n_tokens, "trained": n_trained,
                "pref": pref, "skipped": skipped, "my_tokens": my_tokens}

    def _inject(self, loss: float, grad_norm: float) -> tuple[float, float]:
        kind, _, at = _FAULT.partition("@")
        again, at = at.endswith("+"), at.rstrip("+")
        step = self.state.step + 1
        if at.isdigit() and (step == int(at) or (again and step > int(at))):
            if kind == "oom":
                import torch

                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
            if kind == "cpuoom":  # the CPU allocator's own words
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                                   "memory: you tried to allocate 1099511627776 bytes (injected)")
            if kind == "nan":
                return float("nan"), grad_norm
            if kind == "nangrad":
                return loss, float("nan")
        return loss, grad_norm

    def _non_finite(self, what: str, value: float, step: int) -> None:
        """Warn that `what` was non-finite at `step` (the update was skipped); stop the run
        when it keeps happening or the weights themselves went non-finite."""
        self._nonfinite_streak = getattr(self, "_nonfinite_streak", 0) + 1
        name = {"loss": "loss", "grad_norm": "gradient norm", "val_loss": "validation loss"}[what]
        skipped = what != "val_loss"
        self.emit("warning", kind="nan", what=what, step=step, skipped=skipped,
                  message=f"{name} was {value} at step {step}"
                          + ("; the optimizer step was skipped" if skipped else ""))
        if not self.weights_finite():
            raise NonFiniteLoss(f"{name} was {value} at step {step} and the weights are no longer finite")
        if self._nonfinite_streak >= NONFINITE_LIMIT:
            raise NonFiniteLoss(f"{name} was {value} at step {step}: non-finite {self._nonfinite_streak} "
                                "times in a row")

    # ------------------------------------------------------------ eval
    def evaluate(self) -> tuple[float, float] | None:
        import torch

        if not self.val_items:
            return None
        if self.pref is not None:
            with self.step_context():
                self._pref_eval = self.pref.evaluate(self.val_items)
            return self._pref_eval["loss"], self._pref_eval["perplexity"]
        self.model.eval()
        lengths = [len(x["input_ids"]) for x in self.val_items]
        rows, seq = self._plan_shape()
        plan = pack.plan_batches(lengths, rows, seq, self.cfg.data.packing, 0, 0)
        if not self.sharded:  # each rank scores its share (FSDP2: every rank runs every forward)
            plan = plan[self.world.rank::self.world.world_size]
        total, n = None, 0
        with torch.no_grad(), self.step_context():
            for idxs in plan:
                b = self._to_device(self._collate([self.val_items[i] for i in idxs], pin=self._pool is not None))
                loss_sum, k = batch_loss(self.model, b)
                total = loss_sum.float() if total is None else total + loss_sum.float()
                n += k
        self.model.train()
        total_f = float(total) if total is not None else 0.0  # one host sync for the whole evaluation
        if self.world.is_distributed and not self.sharded:
            total_f, n = self.world.all_reduce([total_f, n])
        if n == 0:
            return None
        val = total_f / n
        return val, math.exp(min(val, 50.0))

    # ------------------------------------------------------------ saving
    def weights_finite(self) -> bool:
        if self.sharded:
            from engine.train import fsdp

            return fsdp.weights_finite(self.model)  # collective
        return ckpt.weights_finite(self.model)

    def _save_sharded_weights(self) -> Path:
        """FSDP2: every rank gathers into rank 0's temporary checkpoint directory (one name on
        all ranks), which checkpoint.save then completes."""
        import shutil

        from engine.train import fsdp

        tmp = ckpt.shared_tmp(self.run_dir, self.state.step)
        if self.world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.world.barrier()
        fsdp.save_state(self.model, self.optimizer, self.tok, tmp)
        return tmp

    def save_checkpoint(self) -> Path:
        self.emit("phase", phase="saving")
        # Only finite weights are ever saved: a checkpoint is what a stopped run falls back to.
        if not self.weights_finite():
            raise NonFiniteLoss(f"the weights are not all finite at step {self.state.step}; "
                                "checkpoint not saved")
        self.state.extra["world_size"] = self.world.world_size
        state = asdict(self.state)
        state["finite"] = True
        rngs = self.world.gather_object(ckpt.rng_state()) if self.world.is_distributed else None
        written = self._save_sharded_weights() if self.sharded else None
        if not self.world.is_main:  # rank 0 writes the checkpoint (every rank's RNG state included)
            self.state.last_checkpoint = str(ckpt.path_of(self.run_dir, self.state.step))
            return ckpt.path_of(self.run_dir, self.state.step)
        path = ckpt.save(self.run_dir, self.state.step, self.model, self.tok, self.optimizer,
                         self.scheduler, state, self.cfg.method, config_text=self.config_text, rank_rngs=rngs,
                         written=written)
        self.state.last_checkpoint = str(path)
        ckpt.rotate(self.run_dir, self.cfg.train.keep_checkpoints, self.state.best_step)
        self.emit("checkpoint", step=self.state.step, path=str(path),
                  is_best=self.state.best_step == self.state.step, finite=True)
        self.emit("phase", phase="training")
        return path

    # ------------------------------------------------------------ the loop
    def run(self, on_step: Callable[[dict], None] | None = None) -> str:
        """Train until done; returns 'completed', 'stopped' or 'early_stopped'."""
        t = self.cfg.train
        total = self.state.total_steps
        self._base_samples()
        self._session_t0, self._session_first_step = time.perf_counter(), self.state.step
        self.emit("phase", phase="training")
        self.emit("progress", step=self.state.step, total_steps=total, epoch=self._epoch_float(),
                  tokens_seen=self.state.tokens_seen, eta_s=None)
        while self.state.step < total:
            t0 = time.perf_counter()
            m = self.train_step()
            step = self.state.step
            dt = time.perf_counter() - t0
            ranks_tps, dt, agreed = self._agree(m, dt)
            if _FAULT == f"latesave@{step}" and _FAULT_RANK in ("", str(self.world.rank)):
                os.kill(os.getpid(), signal.SIGUSR1)  # a signal that misses this step's agreement
            if m.get("skipped"):
                self._non_finite(m["skipped"], m[m["skipped"]], step)
            else:
                self._nonfinite_streak = 0
                self._check_spike(m["loss"], step)
            if (step % t.log_every == 0 or step == total) and not m.get("skipped"):
                self.emit("metric", step=step, loss=round(m["loss"], 6), lr=m["lr"],
                          grad_norm=round(m["grad_norm"], 6), tokens_per_s=round(m["tokens"] / dt, 1),
                          ranks_tokens_per_s=ranks_tps,
                          trained_tokens_per_s=round(m["trained"] / dt, 1), epoch=self._epoch_float(),
                          step_time_s=round(dt, 4), **preference.metric_fields(m.get("pref") or {}))
                self._emit_memory()
            stop_early = False
            if t.eval_every and step % t.eval_every == 0 and step < total:
                stop_early = self._eval_and_track(step)
            saved = False
            periodic = t.save_every and step % t.save_every == 0 and step < total and not m.get("skipped")
            if periodic or self._requested("save", agreed):
                self.control.save_requested = False
                self.save_checkpoint()
                saved = True
            self.state.train_time_s += time.perf_counter() - t0
            self.emit("progress", step=step, total_steps=total, epoch=self._epoch_float(),
                      tokens_seen=self.state.tokens_seen, eta_s=round(self._eta(), 1))
            if on_step:
                on_step(m)
            if self._requested("stop", agreed):
                if not saved:
                    self.save_checkpoint()
                return "stopped"
            if stop_early:
                return "early_stopped"
        return "completed"

    def _agree(self, m: dict, dt: float) -> tuple[list[float], float, dict[str, bool]]:
        """Step boundary: every rank's tokens/s and the step's wall time (the slowest
        rank's, so the global rate never exceeds the ranks' sum), and the stop and save-now
        requests of any rank (a signal reaches each process at its own moment), so all
        ranks stop or save at the same step. One small all_gather; nothing on one process."""
        mine = [m.get("my_tokens", m["tokens"]) / dt if dt > 0 else 0.0,
                float(self.control.stop_requested), float(self.control.save_requested), dt]
        rows = self.world.all_gather(mine)
        agreed = {"stop": any(r[1] for r in rows), "save": any(r[2] for r in rows)}
        return [round(r[0], 1) for r in rows], max(r[3] for r in rows), agreed

    def _requested(self, what: str, agreed: dict[str, bool]) -> bool:
        """Whether to stop or save at this step. Several processes act only on what they
        agreed at the boundary: a signal that reaches one rank after it (during the step's
        eval or save) waits for the next step's agreement, or that rank alone would enter a
        checkpoint's collectives and every rank would hang. One process reads the signal live."""
        if self.world.is_distributed:
            return agreed[what]
        return self.control.stop_requested if what == "stop" else self.control.save_requested

    def final_eval(self) -> tuple[float, float] | None:
        t0 = time.perf_counter()
        res = self._eval_and_track(self.state.step, final=True)
        self.state.train_time_s += time.perf_counter() - t0
        return res

    def _eval_and_track(self, step: int, final: bool = False):
        self.emit("phase", phase="evaluating")
        res = self.evaluate()
        if self.samples is not None:
            self.samples.emit_now(self.model, self.emit, step)
        self.emit("phase", phase="training")
        if res is None:
            return None if final else False
        val, ppl = res
        if not math.isfinite(val):
            self._non_finite("val_loss", val, step)
            return None if final else False
        improved = self.state.best_val_loss is None or val < self.state.best_val_loss
        if improved:
            self.state.best_val_loss, self.state.best_step, self.state.bad_evals = val, step, 0
        else:
            self.state.bad_evals += 1
        self.emit("eval", step=step, val_loss=round(val, 6), perplexity=round(ppl, 4), is_best=improved,
                  best_val_loss=round(self.state.best_val_loss, 6), best_step=self.state.best_step,
                  **preference.metric_fields(self._pref_eval or {}))
        if final:
            return res
        patience = self.cfg.train.early_stopping_patience
        if patience and self.state.bad_evals >= patience:
            self.emit("warning", kind="early_stop",
                      message=f"validation loss has not improved for {patience} evals "
                              f"(best {self.state.best_val_loss:.4f} at step {self.state.best_step}); stopping")
            return True
        return False

    def _base_samples(self) -> None:
        """The base model's answers to the sample prompts, once per run (a resumed LoRA run
        switches its adapter off; a resumed full fine-tune has no base left to ask)."""
        if self.samples is None or self.state.extra.get("base_samples"):
            return
        if self.state.step > 0 and not hasattr(self.model, "disable_adapter"):
            return
        self.samples.emit_base(self.model, self.emit, self.state.step)
        self.state.extra["base_samples"] = True

    def _check_spike(self, loss: float, step: int) -> None:
        ema = self._loss_ema
        if ema is not None and step > 10 and loss > SPIKE_FACTOR * ema:
            self.emit("warning", kind="spike", step=step,
                      message=f"loss spiked to {loss:.4f} at step {step} (recent average {ema:.4f})")
        self._loss_ema = loss if ema is None else 0.9 * ema + 0.1 * loss

    def _epoch_float(self) -> float:
        n = len(self.plan(self.state.epoch)) or 1
        return round(self.state.epoch + self.state.batch_index / n, 4)

    def _eta(self) -> float:
        # Wall time per step in this session so far, evals and saves included, so the
        # estimate already counts them at their real rate.
        done = max(1, self.state.step - self._session_first_step)
        per_step = (time.perf_counter() - self._session_t0) / done
        return per_step * (self.state.total_steps - self.state.step)

    def _emit_memory(self) -> None:
        """A memory event with this process's devices (as on one process) and `ranks`: every
        rank's own device and RSS, gathered on rank 0 (all ranks call this at the same steps)."""
        import psutil
        import torch

        def device(i: int) -> dict:
            return {"index": i, "allocated": torch.cuda.memory_allocated(i),
                    "reserved": torch.cuda.memory_reserved(i), "peak": torch.cuda.max_memory_allocated(i),
                    "total": torch.cuda.get_device_properties(i).total_memory}

        rss = psutil.Process().memory_info().rss
        cuda = self.device == "cuda"
        mine = {"rank": self.world.rank, "host": self.world.host,
                "devices": [device(torch.cuda.current_device())] if cuda else [], "process_rss": rss}
        ranks = self.world.gather_object(mine)
        if not self.world.is_main:
            return
        if cuda:
            devs = [device(i) for i in range(torch.cuda.device_count())]
            self.emit("memory", devices=devs, ranks=ranks)
        else:
            self.emit("memory", devices=[], process_rss=rss, ranks=ranks)
