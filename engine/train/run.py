"""One engine run, start to finish: `python -m engine run RUN_DIR [--resume]`.

Owns the run's lock, event writer and signal handling; turns every failure into an
`error` event with a hint and a `done` event, so whoever watches always learns how the
run ended. Tracebacks go to engine.log only.

Under torchrun (several processes, engine.distributed) every rank runs this function:
rank 0 alone takes the run's lock, writes events, summary.json, data.json, checkpoints and
the adapter; the others only train (a rank that fails writes one line to RUN_DIR/rank-<r>.log,
and the torchrun agent turns it into the run's error event when rank 0 cannot).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from engine import __version__, rundir
from engine import config as C
from engine.events import EventWriter
from engine.train.control import Control

OOM_HINT = ("lower train.micro_batch_size (raise train.grad_accum to keep the effective batch), "
            "turn on train.gradient_checkpointing, use method: qlora, or lower data.max_seq_len")


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"ftwb": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": sys.version.split()[0]}


def _devices() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [{"type": "cpu", "name": "cpu", "threads": torch.get_num_threads()}]
    return [{"type": "cuda", "index": i, "name": torch.cuda.get_device_name(i),
             "total": torch.cuda.get_device_properties(i).total_memory}
            for i in range(torch.cuda.device_count())]


def _set_cpu_threads(torch) -> None:
    """Leave a core free on CPU: OpenMP threads spin-wait at every barrier, and on a small
    machine shared with the TUI (or other jobs) a descheduled thread makes each op 5-10x
    slower. Several processes on one machine share the cores. FTWB_CPU_THREADS overrides."""
    env = os.environ.get("FTWB_CPU_THREADS", "")
    procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = int(env) if env.isdigit() and int(env) > 0 else max(1, min(((os.cpu_count() or 2) - 1) // procs, 16))
    torch.set_num_threads(n)


def _is_oom(e: BaseException) -> bool:
    import torch

    # CPU: torch's allocator says "can't allocate memory"; Python's own MemoryError too.
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and any(s in str(e).lower() for s in ("out of memory", "can't allocate memory")))


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _to_engine_log(text: str) -> None:
    """A traceback for engine.log; on a full disk even that write fails, which must not
    stop the error and done events that follow."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def _intact_checkpoints(run_dir: Path, emit) -> list[Path]:
    """Complete checkpoints that verify against their manifests, oldest first; each one
    that does not is named in a warning."""
    from engine.train.checkpoint import verify

    good = []
    for p in rundir.checkpoints(run_dir):
        problem = verify(p)
        if problem:
            emit("warning", kind="checkpoint_corrupt", path=str(p),
                 message=f"{p.name} is damaged ({problem}); it will not be resumed from")
        else:
            good.append(p)
    return good


def _resume(trainer, ckpts: list[Path], emit) -> None:
    """Resume from the newest checkpoint that loads; fall back to older ones with a warning."""
    from engine import launch

    for i, p in enumerate(reversed(ckpts)):
        changes = launch.config_changes(trainer.run_dir, p)  # ConfigError for a frozen field
        try:
            trainer.resume_from(p, changes)
        except Exception as e:  # noqa: BLE001 - unreadable weights or state: try the next one
            _to_engine_log(traceback.format_exc())
            if i == len(ckpts) - 1:
                raise
            emit("warning", kind="checkpoint_corrupt", path=str(p),
                 message=f"{p.name} cannot be loaded ({type(e).__name__}: {e}); trying an older checkpoint")
            continue
        if i:
            emit("warning", kind="checkpoint_corrupt", path=str(p),
                 message=f"resuming from {p.name}, the newest intact checkpoint")
        if changes:
            emit("warning", kind="config_changed", step=trainer.state.step,
                 changes=[{"field": k, "old": a, "new": b} for k, a, b in changes],
                 message=f"the config was edited since {p.name}; applied from step {trainer.state.step + 1}: "
                         f"{C.describe_changes(changes)}")
        emit("log", message=f"resumed from {p.name}")
        return


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def _write_data_json(run_dir: Path, info: dict, resume: bool, emit) -> None:
    path = run_dir / rundir.DATA
    if resume and path.exists():
        old = json.loads(path.read_text())
        if old.get("content_hash") != info.get("content_hash"):
            emit("warning", kind="data_changed",
                 message=f"the dataset at {info.get('source')} changed since this run started "
                         f"({str(old.get('content_hash'))[:12]} -> {str(info.get('content_hash'))[:12]}); "
                         "resuming on the new content")
        else:
            return
    C.atomic_write_text(path, json.dumps(info, indent=1, default=str))


def _strategy(cfg, world, device: str) -> tuple[str, str]:
    """single, ddp or fsdp2 (engine.train.fsdp.choose_strategy) from the memory estimate
    against this rank's GPU; on CPU everything fits."""
    from engine.train import fsdp

    estimate = total = None
    if world.is_distributed and device == "cuda":
        try:
            import torch

            from engine.memory import estimate as mem_estimate
            from engine.memory import load_model_config

            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
            estimate = mem_estimate(cfg, load_model_config(cfg.model.name_or_path)).total
        except Exception:  # noqa: BLE001 - no estimate (a hub id offline, the demo): the method decides
            estimate = None
    name, reason = fsdp.choose_strategy(cfg.method, world.world_size, estimate, total,
                                        getattr(cfg.train, "strategy", "auto"))
    return name, reason


def _save_adapter(trainer, run_dir: Path, world=None, strategy: str = "single") -> Path:
    from engine.train.model import save_weights

    final = run_dir / rundir.ADAPTER
    if strategy == "fsdp2":  # gathered by every rank into rank 0's directory
        from engine.train import fsdp

        tmp = run_dir / f".tmp-adapter-{os.environ.get('FTWB_AGENT_PID') or os.getpid()}"
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        world.barrier()
        fsdp.export_pretrained(trainer.model, trainer.tok, tmp)
        if not world.is_main:
            return final
    else:
        tmp = run_dir / f".tmp-adapter-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        if strategy != "fsdp2":
            save_weights(trainer.model, trainer.tok, tmp, trainer.cfg.method)
    except OSError as e:
        from engine.train.checkpoint import DiskError

        shutil.rmtree(tmp, ignore_errors=True)
        raise DiskError(Path(e.filename) if e.filename else tmp, e) from None
    if final.exists():  # a resumed run that had already finished once: keep the old one aside
        final.rename(run_dir / f"adapter.old-{int(time.time())}")
    os.replace(tmp, final)
    return final


def _evaluate_at_end(run_dir: Path, trainer, prepared, emit) -> dict:
    """Base vs fine-tuned on the held-out split and per-sample losses. A failure here is a
    warning: the trained adapter is already saved and the run still completed."""
    out: dict = {}
    try:
        from engine.evaluate.evaluate import evaluate_run
        from engine.evaluate.per_sample import per_sample_losses

        res = evaluate_run(run_dir, model=trainer.model, tokenizer=trainer.tok, emit=emit, prepared=prepared)
        out["eval"] = str(run_dir / rundir.EVAL)
        out["eval_scores"] = {k: res.get(k) for k in ("split", "base", "tuned") if k in res}
        out["regressions"] = len(res.get("regressions") or [])
        per_sample_losses(run_dir, model=trainer.model, tokenizer=trainer.tok, prepared=prepared)
    except Exception as e:  # noqa: BLE001
        print(traceback.format_exc(), file=sys.stderr)
        emit("warning", kind="eval_failed", message=f"end-of-run evaluation failed: {type(e).__name__}: {e} "
                                                    "(the adapter is saved; run `ftwb eval RUN_DIR` to retry)")
    return out


def _event_writer(run_dir: Path, world) -> EventWriter:
    """Rank 0's writer. Under torchrun the pipe's fd is the agent's (torchrun closes fds
    for its workers), so rank 0 opens that same pipe through /proc."""
    from engine.events import EVENT_FD_ENV

    fd = os.environ.get(EVENT_FD_ENV, "")
    if world.is_distributed and fd.isdigit():
        try:
            os.fstat(int(fd))
        except OSError:
            try:
                own = os.open(f"/proc/{os.getppid()}/fd/{fd}", os.O_WRONLY)
                return EventWriter(run_dir / rundir.EVENTS, own)
            except OSError:  # no pipe (a detached start): the log alone
                return EventWriter(run_dir / rundir.EVENTS, None)
    return EventWriter.from_env(run_dir / rundir.EVENTS)


class _Quiet:
    """The events of a rank other than 0: none."""

    log_bytes = 0

    def emit(self, type_: str, **fields):
        return {"type": type_, **fields}

    def close(self) -> None:
        pass


def _lock(run_dir: Path, world) -> tuple[rundir.RunLock | None, str | None]:
    """The run's lock, taken by one process per machine (rank 0's decides for all): the pid
    file names the torchrun agent, which is what a stop or save-now signal goes to."""
    from engine.distributed import AGENT_PID_ENV

    lock, refused = None, None
    if world.is_local_main:
        lock = rundir.RunLock(run_dir)
        try:
            lock.acquire()
            agent = os.environ.get(AGENT_PID_ENV, "")
            if world.is_distributed and agent.isdigit():
                C.atomic_write_text(run_dir / rundir.PID, agent)
        except rundir.RunDirError as e:
            lock, refused = None, str(e)
    if world.is_distributed and world.all_reduce([1.0 if refused else 0.0], "max")[0] and not refused:
        refused = "another rank found the run locked by another engine"
    return lock, refused


def _prepare_in_turn(world, fn):
    """Tokenising fills the shared cache: one process per machine (rank 0 first) builds it,
    the others read it after a barrier, so no two write the same cache at once."""
    out = fn() if world.is_local_main else None
    world.barrier()
    if not world.is_local_main:
        out = fn()
    return out


def run(run_dir: Path, resume: bool = False) -> int:
    from engine import distributed

    try:
        world = distributed.init()
    except Exception as e:  # noqa: BLE001 - a rendezvous that fails: say so in engine.log
        print(f"ftwb engine: cannot join the other processes: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    try:
        return _run(run_dir, resume, world)
    finally:
        distributed.shutdown()


def _run(run_dir: Path, resume: bool, world) -> int:
    from engine import distributed

    lock, refused = _lock(run_dir, world)
    if refused:
        print(f"ftwb engine: {refused}", file=sys.stderr)
        if lock is not None:
            lock.release()
        return 3
    main = world.is_main
    events = _event_writer(run_dir, world) if main else _Quiet()
    keeper = rundir.SummaryKeeper(run_dir) if main else None

    def emit(type_: str, **fields):
        if type_ == "error" and world.is_distributed:
            fields.setdefault("rank", world.rank)
        event = events.emit(type_, **fields)
        if keeper is not None:
            keeper.update(event, events.log_bytes)  # summary.json: what `ftwb runs` and attach read
        return event

    control = Control().install()
    status, summary, code = "failed", {}, 1
    trainer = None
    mirror = None
    peer_lost = False  # a collective failed because another rank died: the agent reports that rank
    try:
        cfg = C.load(run_dir / rundir.CONFIG)
        from engine.trackers import open_mirror

        problem = C.preference_parallel_problem(cfg, world.world_size)
        if problem:  # train.devices: all, or torchrun started by hand
            raise C.ConfigError(problem)
        mirror = open_mirror(cfg, run_dir, emit) if main else None
        if mirror is not None:
            emit = mirror.wrap(emit)
        import torch

        from engine.data.sources import dataset_hash
        from engine.train.model import load_model, pick_device

        torch.manual_seed(cfg.train.seed)  # the same on every rank: adapters start equal
        device = pick_device()
        if not world.is_distributed:
            world.device = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"
        if device == "cpu":
            _set_cpu_threads(torch)
        try:
            data_hash = dataset_hash(cfg.data)  # what data.json records: one file's hash, or all sources'
        except Exception:
            data_hash = None
        ckpts = _intact_checkpoints(run_dir, emit) if resume else []
        if world.is_distributed:  # every rank resumes from the checkpoint rank 0 judged intact
            ckpts = [Path(p) for p in world.broadcast_object([str(p) for p in ckpts])]
        ranks = world.gather_object(world.describe())
        strategy, why = _strategy(cfg, world, device)
        if strategy == "fsdp2" and cfg.train.objective != "sft" and cfg.method != "full":  # by the estimate
            raise C.ConfigError(f"train.objective: {cfg.train.objective} with method: {cfg.method} runs on several "
                                f"processes with DDP, and this run would shard the model with FSDP2 ({why}); use "
                                "method: qlora or a smaller data.max_seq_len / train.micro_batch_size so each GPU "
                                "holds the model, or train.devices: 1")
        if resume and not ckpts:
            raise C.ConfigError(f"{run_dir} has no intact checkpoint to resume from")
        resumed_from = int(ckpts[-1].name.split("-")[-1]) if ckpts else None
        agent = os.environ.get(distributed.AGENT_PID_ENV, "") if world.is_distributed else ""
        emit("hello", pid=int(agent) if agent.isdigit() else os.getpid(), versions=_versions(), config_hash=cfg.hash(),
             dataset_hash=data_hash, devices=_devices(), run_dir=str(run_dir), method=cfg.method,
             model=cfg.model.name_or_path, resumed_from_step=resumed_from, world_size=world.world_size,
             strategy=strategy, ranks=ranks)
        if world.is_distributed:
            emit("log", message=f"{world.world_size} processes, {strategy}: {why}")

        emit("phase", phase="loading_model")
        t0 = time.perf_counter()
        if world.is_distributed:  # the demo model is built once, by rank 0, before anyone loads it
            if main:
                from engine.train.model import resolve_model_path

                resolve_model_path(cfg.model.name_or_path, lambda m: emit("log", message=m))
            world.barrier()
        model, tok = load_model(cfg, device, log=lambda m: emit("log", message=m), emit=emit, strategy=strategy)
        from engine.train.model import trainable_parameters

        if world.is_distributed:
            if cfg.method != "full" and strategy != "fsdp2":  # LoRA's random init: rank 0's everywhere
                world.broadcast_params([p for p in model.parameters() if p.requires_grad])
            torch.manual_seed(cfg.train.seed + world.rank)  # dropout differs per rank

        trainable, total = trainable_parameters(model)
        emit("log", message=f"model loaded in {time.perf_counter() - t0:.1f}s on {device}: "
                            f"{trainable:,} trainable of {total:,} parameters")

        emit("phase", phase="preparing_data")
        from engine.data.prepare import prepare

        prepared = _prepare_in_turn(world, lambda: prepare(cfg, tok, emit=emit))
        if main:
            _write_data_json(run_dir, prepared.data_info, resume, emit)

        from engine.memory_probe import auto_fit

        # CUDA: tokens per micro-batch and checkpointing measured for this GPU (cfg.train is set).
        # Several processes: measured on rank 0's GPU, and every rank takes that choice.
        if main and strategy != "fsdp2":  # its probes are forwards: under FSDP2 they would be collective
            auto_fit(model, cfg, device, emit=emit, run_dir=run_dir, pad_id=tok.pad_token_id or 0)
        if world.is_distributed:
            t = cfg.train
            chosen = world.broadcast_object((t.tokens_per_micro_batch, t.grad_accum, t.gradient_checkpointing))
            if not main and chosen[2] != t.gradient_checkpointing:
                from engine.train.model import set_gradient_checkpointing

                set_gradient_checkpointing(model, chosen[2])
            t.tokens_per_micro_batch, t.grad_accum, t.gradient_checkpointing = chosen
        from engine.train.loop import NonFiniteLoss, Trainer

        trainer = Trainer(cfg, run_dir, model, tok, prepared.train, prepared.val, device, emit, control,
                          world=world, strategy=strategy)
        trainer.config_text = (run_dir / rundir.CONFIG).read_text()  # as written, before any auto-fit
        if strategy == "fsdp2" and cfg.eval.sample_prompts:
            emit("log", message="sample answers during training are off under FSDP2 (generation would have "
                                "to run on every rank)")
        if cfg.eval.sample_prompts and prepared.val_examples and main and strategy != "fsdp2":
            from engine.train.samples import SamplePrompts

            trainer.samples = SamplePrompts(prepared.val_examples, tok, cfg.eval.sample_prompts,
                                            cfg.eval.sample_max_new_tokens)
        if ckpts:
            _resume(trainer, ckpts, emit)
        try:
            outcome = trainer.run()
        except NonFiniteLoss as e:
            last = trainer.state.last_checkpoint
            emit("warning", kind="nan", step=trainer.state.step, what="run",
                 message=f"{e}; stopping. The last good checkpoint (all weights finite) is "
                         f"{last or 'none (no checkpoint yet)'}. Try a lower train.learning_rate or "
                         "train.max_grad_norm, then resume or start a new run")
            summary = {"reason": "non_finite_loss", "last_good_checkpoint": last, "steps": trainer.state.step}
            return 1 if main else 0  # rank 0 tells it; the others leave quietly
        if outcome == "stopped":
            status, code = "stopped", 0
        else:
            if prepared.val:
                trainer.final_eval()  # every rank scores its share
            if not main and strategy != "fsdp2":
                status = "completed"
                return 0
            emit("phase", phase="saving")
            if not trainer.weights_finite():  # never an adapter of NaNs
                raise NonFiniteLoss(f"the weights are not all finite after step {trainer.state.step}; "
                                    "no adapter written")
            adapter = _save_adapter(trainer, run_dir, world, strategy)
            if not main:
                status = "completed"
                return 0
            summary["adapter"] = str(adapter)
            if strategy == "fsdp2" and cfg.eval.at_end and cfg.method != "full":
                emit("log", message="end-of-run evaluation skipped under FSDP2; run `ftwb eval RUN_DIR`")
            elif cfg.eval.at_end and cfg.method != "full":
                summary.update(_evaluate_at_end(run_dir, trainer, prepared, emit))
            status, code = "completed", 0
            if outcome == "early_stopped":
                summary["early_stopped"] = True
        st = trainer.state
        summary.update({"steps": st.step, "total_steps": st.total_steps, "tokens_seen": st.tokens_seen,
                        "best_val_loss": st.best_val_loss, "best_step": st.best_step,
                        "last_checkpoint": st.last_checkpoint, "train_time_s": round(st.train_time_s, 2)})
        return code
    except C.ConfigError as e:
        emit("error", kind="config", message=str(e), hint="fix the config and start a new run")
        return 1
    except Exception as e:  # noqa: BLE001 - every failure must end in error + done events
        from engine.data.errors import DataError
        from engine.train.model import ModelError

        from engine.train.checkpoint import DiskError

        tb = traceback.format_exc()
        _to_engine_log(tb)
        if world.is_distributed and (distributed.is_peer_failure(e) or not main):
            peer_lost = distributed.is_peer_failure(e)
            _rank_fault(run_dir, world, trainer, e, tb, peer_lost)
            if peer_lost or not main:
                return 1
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS and not isinstance(e, DiskError):
            e = DiskError(Path(e.filename or run_dir), e)
        if isinstance(e, DiskError):
            last = trainer.state.last_checkpoint if trainer is not None else None
            emit("error", kind="disk", message=str(e), path=str(e.path), free_bytes=e.free_bytes,
                 last_checkpoint=last,
                 hint=f"free some space (or lower train.keep_checkpoints), then resume with "
                      f"`ftwb train --resume {run_dir}`" + (f"; the last complete checkpoint is {last}" if last else ""))
        elif isinstance(e, DataError) and "chat template" in str(e).replace("_", " "):
            emit("error", kind="template", message=str(e),
                 hint="fix model.chat_template (a Jinja string or a shipped template name such as chatml), "
                      "or leave it empty to use the tokenizer's own")
        elif isinstance(e, DataError):
            emit("error", kind="data", message=str(e), hint="fix the dataset (ftwb data check FILE) or data.format")
        elif isinstance(e, ModelError):
            emit("error", kind="config", message=str(e), hint="fix model.name_or_path")
        elif _is_oom(e):
            shape = getattr(trainer, "_current_shape", None)
            import torch

            cuda = isinstance(e, torch.cuda.OutOfMemoryError) or getattr(trainer, "device", "cuda") == "cuda"
            on = "CUDA" if cuda else "CPU"
            emit("error", kind="oom", message=f"{on} out of memory on a batch of shape {shape} (rows x tokens)",
                 batch_shape=list(shape) if shape else None, device=on.lower(), traceback_tail=_tail(tb, 4),
                 hint=OOM_HINT if on == "CUDA" else
                 "this batch needs more RAM than the machine has: lower train.micro_batch_size (raise "
                 "train.grad_accum to keep the effective batch) or data.max_seq_len")
        else:
            emit("error", kind="crash", message=f"{type(e).__name__}: {e}", hint="see engine.log in the run directory",
                 traceback_tail=_tail(tb))
        return 1
    finally:
        if status == "failed" and trainer is not None:
            summary.setdefault("steps", trainer.state.step)
            summary.setdefault("last_checkpoint", trainer.state.last_checkpoint)
        if main and not peer_lost:
            emit("done", status=status, summary=summary)
        if mirror is not None:
            mirror.close()
        events.close()
        if lock is not None:
            lock.release()


def _rank_fault(run_dir: Path, world, trainer, e: BaseException, tb: str, peer_lost: bool) -> None:
    """RUN_DIR/rank-<r>.log: how this rank failed, for the agent's error event."""
    from engine import distributed

    if peer_lost:
        distributed.write_fault(run_dir, world.rank, kind="peer_lost", local_rank=world.local_rank,
                                message=f"{type(e).__name__}: {e}"[:500])
        return
    if _is_oom(e):
        shape = getattr(trainer, "_current_shape", None)
        distributed.write_fault(run_dir, world.rank, kind="oom", local_rank=world.local_rank, device=world.device,
                                batch_shape=list(shape) if shape else None, hint=OOM_HINT,
                                message=f"out of memory on {world.device} on a batch of shape {shape} (rows x tokens)",
                                traceback_tail=_tail(tb, 4))
        return
    distributed.write_fault(run_dir, world.rank, kind="crash", local_rank=world.local_rank,
                            message=f"{type(e).__name__}: {e}"[:2000], traceback_tail=_tail(tb))
