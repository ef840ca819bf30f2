"""Several engine processes through torchrun: who this process is, and what they share.

A run on N devices is N copies of `python -m engine run RUN_DIR`, started by torchrun
(`torch.distributed.run`), which puts RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous in
their environment. `init()` joins them into one process group (nccl with one GPU per local
rank, gloo on CPU) and `world()` says who this process is; on one process both are no-ops
and every helper returns its input, so the single-process path does no collective at all.

The launcher side is `python -m engine.distributed [torchrun options] -m engine run RUN_DIR`:
torchrun itself, run in this process with the engine's own signal handling (see `main`).
Plain Python at import; torch loads only inside the functions that need it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AGENT_PID_ENV = "FTWB_AGENT_PID"  # the torchrun agent's pid, for the workers' watchdog
TIMEOUT_ENV = "FTWB_DIST_TIMEOUT_S"  # collectives wait this long for a peer (default 30 min)
RANKS_LOG_DIR = "ranks"  # torchrun's per-rank stdout/stderr inside the run directory
GRAD_BUCKET_ELEMS = 1 << 24  # gradients are all-reduced in flat buckets of up to this many elements


@dataclass
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None          # None on one process
    device: str = "cpu"                  # "cpu" or "cuda:i", this process's device
    host: str = field(default_factory=socket.gethostname)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    def describe(self) -> dict[str, Any]:
        return {"rank": self.rank, "host": self.host, "device": self.device}

    # ---------------------------------------------------------------- collectives
    def _tensor(self, values: list[float]):
        import torch

        dev = self.device if self.backend == "nccl" else "cpu"
        return torch.tensor(values, dtype=torch.float64, device=dev)

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Element-wise sum (or max) of `values` over all ranks."""
        if not self.is_distributed:
            return list(values)
        import torch.distributed as dist

        t = self._tensor(values)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t.tolist()

    def all_gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's `values`, in rank order (the same list on every rank)."""
        if not self.is_distributed:
            return [list(values)]
        import torch
        import torch.distributed as dist

        t = self._tensor(values)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [o.tolist() for o in out]

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's picklable `obj` on rank 0 (rank order); None on the other ranks."""
        if not self.is_distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.is_distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_params(self, params: list) -> None:
        """Rank 0's values of `params` on every rank (adapters start equal everywhere)."""
        if not self.is_distributed:
            return
        import torch.distributed as dist

        for p in params:
            dist.broadcast(p.data, src=0)

    def sum_gradients(self, params: list) -> None:
        """Sum the gradients of `params` over all ranks in place, in flat buckets (one
        all_reduce per bucket, not per tensor). Each rank's loss is already divided by the
        step's GLOBAL trained-token count, so the sum is the gradient of the global mean."""
        if not self.is_distributed:
            return
        import torch
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = []
        for p in params:
            if p.grad is None:  # a parameter this rank's batches did not reach: zeros, so shapes agree
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        bucket: list = []
        size = 0

        def flush():
            if not bucket:
                return
            flat = _flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            for g, new in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
                g.copy_(new)
            bucket.clear()

        for g in grads:
            if size + g.numel() > GRAD_BUCKET_ELEMS or (bucket and g.dtype != bucket[0].dtype):
                flush()
                size = 0
            bucket.append(g)
            size += g.numel()
        flush()


_WORLD = World()


def world() -> World:
    return _WORLD


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def init() -> World:
    """Join the process group when torchrun started this process; set this rank's device."""
    global _WORLD
    if not launched_by_torchrun():
        _WORLD = World()
        return _WORLD
    import datetime

    import torch
    import torch.distributed as dist

    _die_with_agent()
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)  # "cuda" now means this rank's GPU everywhere in the engine
        backend, device = "nccl", f"cuda:{local}"
    else:
        backend, device = "gloo", "cpu"
    timeout = float(os.environ.get(TIMEOUT_ENV, "") or 1800)
    kw = {"device_id": torch.device(device)} if backend == "nccl" else {}
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout), **kw)
    _WORLD = World(rank=rank, world_size=size, local_rank=local, backend=backend, device=device)
    return _WORLD


def shutdown() -> None:
    if _WORLD.is_distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _die_with_agent() -> None:
    """A worker must not outlive its torchrun agent (a SIGKILL of the agent cannot be
    forwarded): the kernel kills it when its parent dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    agent = os.environ.get(AGENT_PID_ENV, "")
    if agent.isdigit() and os.getppid() != int(agent):  # the agent died before prctl took effect
        os._exit(1)


def is_peer_failure(e: BaseException) -> bool:
    """True for an error of a collective whose peer went away (the peer's own failure is
    the one to report)."""
    try:
        import torch.distributed as dist

        if isinstance(e, getattr(dist, "DistError", ())):
            return True
    except ImportError:
        pass
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(s in text for s in (
        "gloo", "nccl", "connection closed by peer", "connection reset by peer", "broken pipe"))


# -------------------------------------------------------------------- faults of one rank

def fault_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / f"rank-{rank}.log"


def write_fault(run_dir: Path, rank: int, **fields: Any) -> None:
    """One JSON line saying how this rank failed (the only file a rank other than 0 writes)."""
    try:
        with open(fault_file(run_dir, rank), "a", encoding="utf-8") as f:
            f.write(json.dumps({"rank": rank, "host": socket.gethostname(), **fields}, default=str) + "\n")
    except OSError:
        pass


def read_fault(run_dir: Path, rank: int) -> dict | None:
    try:
        lines = fault_file(run_dir, rank).read_text(encoding="utf-8").splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def gpu_count() -> int:
    """Visible NVIDIA GPUs via NVML (no torch import), honouring CUDA_VISIBLE_DEVICES; 0 without any."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return 0
    try:
        n = int(pynvml.nvmlDeviceGetCount())
    except Exception:
        n = 0
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    if visible is not None:
        return min(n, len([v for v in visible.split(",") if v.strip()]))
    return n


# -------------------------------------------------------------------- the agent

def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return pids


def _run_dir_of(argv: list[str]) -> Path | None:
    for i in range(len(argv) - 3):
        if argv[i:i + 3] == ["-m", "engine", "run"]:
            return Path(argv[i + 3])
    return None


def main(argv: list[str] | None = None) -> int:
    """torchrun in this process, with the engine's signals: SIGHUP ignored (the run outlives
    its terminal), SIGTERM and SIGUSR1 forwarded to every worker (each worker starts its
    own session, so a signal to this process alone would never reach them; the workers
    then agree on the step to stop or save at). torchrun keeps SIGINT/SIGQUIT (tear down).
    When a worker fails and rank 0 could not say so, this process writes the run's
    `error` (naming the rank, with its last log lines) and `done` events."""
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not any(a.startswith(("--signals-to-handle", "--signals_to_handle")) for a in argv):
        argv = ["--signals-to-handle", "SIGINT,SIGQUIT", *argv]  # SIGTERM and SIGHUP are ours
    os.environ[AGENT_PID_ENV] = str(os.getpid())

    def forward(signum, frame):
        for pid in _children():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGUSR1, forward)
    run_dir = _run_dir_of(argv)
    from engine import rundir

    for old in (run_dir.glob("rank-*.log") if run_dir else ()):  # an earlier attempt's faults
        old.unlink(missing_ok=True)
    offset = (run_dir / rundir.EVENTS).stat().st_size if run_dir and (run_dir / rundir.EVENTS).exists() else 0
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
        return 0
    except ChildFailedError as e:
        print(e.format_msg(), file=sys.stderr, flush=True)
        codes = {getattr(f, "exitcode", None) for f in e.failures.values()}
        if codes == {3}:  # every rank refused (the run is locked by another engine): the engine's own code
            return 3
        if run_dir is not None:
            report_failure(run_dir, e.failures, offset)
        return 1


def _rank_log_tail(run_dir: Path, local_rank: int, n: int = 12) -> str:
    """The last lines torchrun captured from that worker (RUN_DIR/ranks/<id>/attempt_k/<local rank>/)."""
    files = sorted((Path(run_dir) / RANKS_LOG_DIR).glob(f"*/attempt_*/{local_rank}/std*.log"),
                   key=lambda p: p.stat().st_mtime)
    lines: list[str] = []
    for f in files[-2:]:  # the newest attempt's stdout and stderr
        try:
            lines += [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            pass
    return "\n".join(lines[-n:])


def _root_failure(run_dir: Path, failures: dict) -> tuple[int, Any, dict | None]:
    """The rank whose failure made the others fail: one that recorded its own fault, else
    the first to exit that did not merely lose a peer."""
    ranks = sorted(set(failures) | {int(p.stem.split("-")[1]) for p in Path(run_dir).glob("rank-*.log")
                                    if p.stem.split("-")[1].isdigit()})
    faults = {r: read_fault(run_dir, r) for r in ranks}
    own = [r for r in ranks if faults[r] and faults[r].get("kind") != "peer_lost"]
    if own:
        r = own[0]
        return r, failures.get(r), faults[r]
    lost = {r for r in ranks if faults[r]}
    rest = sorted((f.timestamp, r) for r, f in failures.items() if r not in lost) or \
        sorted((f.timestamp, r) for r, f in failures.items())
    r = rest[0][1] if rest else ranks[0]
    return r, failures.get(r), faults.get(r)


def _last_step(events: Path, offset: int) -> int | None:
    from engine import events as ev

    step = None
    try:
        with open(events, "rb") as f:
            f.seek(offset)
            for line in f:
                if b'"progress"' in line:
                    step = (ev.decode(line) or {}).get("step", step)
    except OSError:
        pass
    return step


def report_failure(run_dir: Path, failures: dict, offset: int) -> None:
    """`error` and `done` for a group whose rank 0 did not write its own `done`."""
    from engine import events as ev
    from engine import rundir

    run_dir = Path(run_dir)
    if rundir.is_alive(run_dir):  # refused: another engine holds the run, and its events are its own
        return
    try:
        with open(run_dir / rundir.EVENTS, "rb") as f:
            f.seek(offset)
            if any((ev.decode(line) or {}).get("type") == "done" for line in f):
                return
    except OSError:
        pass
    if not failures:
        return
    rank, failure, fault = _root_failure(run_dir, failures)
    local = getattr(failure, "local_rank", (fault or {}).get("local_rank", rank))
    tail = _rank_log_tail(run_dir, local)
    code = getattr(failure, "exitcode", None)
    how = (f"was killed by {failure.signal_name()}" if isinstance(code, int) and code < 0
           else f"exited with code {code}" if code is not None else "failed")
    where = (fault or {}).get("host") or getattr(failure, "hostname", "") or socket.gethostname()
    writer = ev.EventWriter.from_env(run_dir / rundir.EVENTS)
    keeper = rundir.SummaryKeeper(run_dir)

    def emit(type_: str, **fields):
        keeper.update(writer.emit(type_, **fields), writer.log_bytes)

    step = _last_step(run_dir / rundir.EVENTS, offset)
    how += f" after step {step}" if step is not None else " before the first step"
    fields: dict[str, Any] = {"rank": rank, "host": where, "log_tail": tail, "exitcode": code, "step": step}
    if fault and fault.get("kind") == "oom":
        emit("error", kind="oom", message=f"rank {rank}: {fault.get('message')}", device=fault.get("device"),
             batch_shape=fault.get("batch_shape"), hint=fault.get("hint"), **fields)
    elif fault:
        emit("error", kind=fault.get("kind") or "crash", message=f"rank {rank} on {where} {how}: "
             f"{fault.get('message')}", hint=fault.get("hint") or "see that rank's lines in engine.log",
             traceback_tail=fault.get("traceback_tail"), **fields)
    else:
        emit("error", kind="crash", message=f"rank {rank} on {where} {how}; the other ranks were stopped",
             hint=f"its last lines are in engine.log (prefixed [default{local}]) and under "
                  f"{run_dir / RANKS_LOG_DIR}; `ftwb train --resume {run_dir}` continues from the last checkpoint",
             traceback_tail=tail, **fields)
    emit("done", status="failed", summary={"failed_rank": rank})
    writer.close()


if __name__ == "__main__":
    sys.exit(main())
