"""`ftwb train CONFIG | --demo`: start (or resume) a run and follow it with a progress bar.

The engine runs detached in its own session: Ctrl+C asks it to stop after the current
step (with a checkpoint), and a hangup of this terminal leaves it training.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path

# 0 only for a completed run; 3 for a run that stopped with a checkpoint (resumable);
# 130 when Ctrl+C here stopped it; 2 for anything refused before training started.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def register(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA/QLoRA/full fine-tune headless, with a progress bar",
                       description="Start a run from CONFIG (or the bundled demo) and follow it. "
                                   "Exit 0 completed, 1 failed, 2 refused before training (config, paths, "
                                   "run busy), 3 stopped with a checkpoint (resumable), 130 interrupted by "
                                   "Ctrl+C here (stopped with a checkpoint).")
    p.add_argument("config", nargs="?", help="run config YAML")
    p.add_argument("--demo", nargs="?", const="sft", choices=("sft", "dpo"),
                   help="train the bundled demo (tiny model, support tickets); --demo dpo: preference pairs")
    p.add_argument("--runs-dir", help="runs root (default ./runs or $FTWB_RUNS_DIR)")
    p.add_argument("--name", help="short run name (directory is <timestamp>-<name>)")
    p.add_argument("--detach", action="store_true", help="print the run directory and return at once")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run from its last checkpoint")
    p.add_argument("--allow-findings", action="store_true",
                   help="train even though the dataset has secrets or PII (same as data.allow_findings: true)")
    g = p.add_argument_group("several devices and machines (torchrun)")
    g.add_argument("--devices", metavar="N|all|0,2",
                   help="processes to train on: a count, 'all' GPUs, or GPU indices (overrides train.devices); "
                        "without GPUs, N CPU processes")
    g.add_argument("--nnodes", type=int, default=1, help="machines taking part (run the same command on each)")
    g.add_argument("--node-rank", type=int, help="this machine's index, 0 to nnodes-1")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous address on the first machine (several machines)")
    g.add_argument("--rdzv-id", help="rendezvous id, the same on every machine (default ftwb)")
    g.add_argument("--master-port", type=int, help="port of the one-machine rendezvous (default: a free one)")
    p.set_defaults(func=run)


_DEMO_NAMES = {"sft": "demo", "dpo": "demo-dpo"}


def _err(msg: str) -> int:
    print(f"ftwb train: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _preflight(cfg, runs_dir: str | None = None) -> str | None:
    """Everything engine.preflight finds before a run directory exists or a model loads
    (model, data, chat template, runs directory, eval sets, trackers), one per line."""
    from engine import preflight

    notes: list[str] = []
    problems = preflight.check(cfg, runs_dir=runs_dir, notes=notes)
    for note in notes:
        print(f"ftwb train: {note}", file=sys.stderr)
    if not problems:
        return None
    return preflight.summary(problems).replace("\n", "\nftwb train: ")


def _findings_gate(cfg) -> str | None:
    """Secrets or PII in the dataset refuse the run unless the user allowed them."""
    d = cfg.data
    if d.allow_findings or not isinstance(d.path, str) or not Path(d.path).expanduser().exists():
        return None
    from engine.data.errors import DataError
    from engine.data.gate import scan

    from engine.cli.progress_line import CheckBar

    bar = CheckBar(f"checking {Path(d.path).name} for secrets and personal data")  # a big file takes a while
    try:
        report = scan(d.path, d.format, sensitive_only=True, progress=bar)
    except DataError:
        return None  # unreadable data: the engine reports it with its own message
    finally:
        bar.close()
    if not report.sensitive:
        return None
    return (f"data.path: {report.summary()}. Clean it first (ftwb data check {d.path}; the Data screen's "
            "redact, P), or train anyway with --allow-findings or data.allow_findings: true")


def _dist_options(args: argparse.Namespace):
    from engine import launch

    devices = launch.parse_devices(args.devices) if getattr(args, "devices", None) else None
    if getattr(args, "nnodes", 1) < 1:
        from engine.config import ConfigError

        raise ConfigError(f"--nnodes: {args.nnodes} is out of range; give at least 1")
    return launch.DistOptions(devices=devices, nnodes=getattr(args, "nnodes", 1), node_rank=getattr(args, "node_rank", None),
                              rdzv_endpoint=getattr(args, "rdzv_endpoint", None), rdzv_id=getattr(args, "rdzv_id", None),
                              master_port=getattr(args, "master_port", None))


def run(args: argparse.Namespace) -> int:
    from engine import config as C
    from engine import launch, rundir

    try:
        dist = _dist_options(args)
        if args.resume:
            if args.config or args.demo:
                return _err("--resume takes a run directory; do not pass a config or --demo with it")
            launched = launch.resume(args.resume, pipe=not args.detach, dist=dist)
        else:
            if bool(args.demo) == bool(args.config):
                return _err("pass a config file or --demo (one of them)")
            if args.demo:
                from engine.demo import demo_config

                cfg = demo_config(args.demo)
            else:
                cfg = C.load(args.config)
            problem = _preflight(launch.resolve_paths(cfg), args.runs_dir)
            if problem:
                return _err(problem)
            if args.allow_findings:
                cfg.data.allow_findings = True  # recorded in the run's config.yaml
            if dist.devices is not None:
                cfg.train.devices = dist.devices  # recorded too: a resume takes it unless --devices says otherwise
                C.from_dict(cfg.to_dict())  # the same checks as train.devices in a config file
            problem = _findings_gate(launch.resolve_paths(cfg))
            if problem:
                return _err(problem)
            launched = launch.start(cfg, runs_dir=args.runs_dir, name=args.name or _DEMO_NAMES.get(args.demo),
                                    pipe=not args.detach, dist=dist)
    except (C.ConfigError, rundir.RunDirError) as e:
        return _err(str(e))
    if args.detach:
        refused = launch.wait_started(launched)
        if refused:
            return _err(refused)
        print(launched.run_dir)
        return EXIT_OK
    print(f"run directory: {launched.run_dir}  (engine pid {launched.proc.pid}; "
          f"Ctrl+C stops it with a checkpoint; `ftwb attach` re-attaches)", file=sys.stderr)
    return follow(launched)


def follow(launched) -> int:
    """Read events from the pipe and draw a rich progress bar until `done`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from engine import events as ev
    from engine import launch, rundir

    console = Console(stderr=True)
    interrupted = False

    def on_sigint(signum, frame):
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            console.print("[yellow]stopping after the current step (with a checkpoint)... "
                          "Ctrl+C again to leave it running and exit[/]")
            try:
                os.kill(launched.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_sigint)
    info = {"loss": "-", "val": "-", "tps": "-", "eta": "-", "phase": "starting", "total_s": "?"}
    progress = Progress(TextColumn("[bold]{task.fields[phase]:<14}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("step {task.completed:.0f}/{task.fields[total_s]}"),
                        TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
                        TextColumn("{task.fields[tps]} tok/s  ETA {task.fields[eta]}"), TimeElapsedColumn(),
                        console=console, transient=False)
    task = progress.add_task("train", total=None, **info)
    done = None
    # Only this engine's events count: an earlier attempt's `done` is history. A stalled
    # terminal (Ctrl+Z) only misses pipe events; the follower re-reads them from the log.
    follower = ev.PipeFollower(launched.run_dir / rundir.EVENTS, launched.log_offset)
    fd = launched.event_fd
    try:
        with progress:
            while done is None:
                r, _, _ = select.select([fd], [], [], 1.0)
                if not r:
                    if launched.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                for e in follower.feed(chunk):
                    done = _apply(e, progress, task, info, console) or done
            if done is None:  # pipe closed without a done event: the log may have what it missed
                try:
                    launched.proc.wait(timeout=30)
                except Exception:  # noqa: BLE001 - judged below from the log and the exit code
                    pass
                for e in follower.finish():
                    done = _apply(e, progress, task, info, console) or done
    except KeyboardInterrupt:
        console.print(f"left the engine running; re-attach with: ftwb attach {launched.run_dir}")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, old)
        os.close(fd)
    if done is None and launched.proc.returncode == launch.ENGINE_REFUSED:
        console.print(f"[red]refused:[/] {launch.exit_reason(launched.run_dir, launched.proc.returncode)}")
        return EXIT_USAGE
    if done is None:
        tail = _log_tail(launched.run_dir / rundir.LOG)
        console.print(f"[red]the engine exited without finishing (code {launched.proc.returncode}).[/] "
                      f"Last lines of engine.log:\n{tail}")
        if launched.proc.returncode == -signal.SIGKILL:
            # Nothing in the engine can catch this; on CPU it is usually the kernel's OOM killer.
            console.print("  hint: it was killed (SIGKILL), often by the kernel when memory runs out: lower "
                          "train.micro_batch_size or data.max_seq_len; `ftwb train --resume` continues from "
                          "the last checkpoint")
        return EXIT_FAILED
    status = done.get("status")
    s = done.get("summary") or {}
    if status == "completed":
        best = s.get("best_val_loss")
        console.print(f"[green]completed[/] {s.get('steps')} steps"
                      + (f", best val loss {best:.4f} at step {s.get('best_step')}" if isinstance(best, float) else "")
                      + f"; adapter: {s.get('adapter')}")
        return EXIT_OK
    if status == "stopped":
        console.print(f"[yellow]stopped[/] at step {s.get('steps')}; checkpoint {s.get('last_checkpoint')}. "
                      f"Resume with: ftwb train --resume {launched.run_dir}")
        return EXIT_INTERRUPTED if interrupted else EXIT_STOPPED
    console.print(f"[red]failed[/]; details in {launched.run_dir / rundir.LOG}")
    return EXIT_FAILED


def _apply(e: dict, progress, task, info: dict, console) -> dict | None:
    t = e.get("type")
    if t == "progress":
        eta = e.get("eta_s")
        info["eta"] = time.strftime("%H:%M:%S", time.gmtime(eta)) if isinstance(eta, (int, float)) else "-"
        info["total_s"] = str(e.get("total_steps", "?"))
        progress.update(task, total=e.get("total_steps"), completed=e.get("step", 0), **info)
    elif t == "metric":
        info["loss"] = f"{e['loss']:.4f}" if isinstance(e.get("loss"), float) else str(e.get("loss"))
        info["tps"] = f"{e.get('tokens_per_s', 0):,.0f}"
        progress.update(task, **info)
    elif t == "eval":
        info["val"] = f"{e['val_loss']:.4f}" if isinstance(e.get("val_loss"), float) else "-"
        progress.update(task, **info)
    elif t == "phase":
        info["phase"] = e.get("phase", "")
        progress.update(task, **info)
    elif t == "data":
        console.print(f"data: {e.get('rows')} rows ({e.get('format')}), train {e.get('train')}, "
                      f"val {e.get('val')}, test {e.get('test')}; truncated {e.get('truncated', 0)}, "
                      f"dropped {e.get('dropped', 0)}, unusable rows {e.get('problems', 0)}")
        for p in e.get("first_problems") or []:
            console.print(f"  [yellow]row {p.get('row')}" + (f" (line {p.get('line')})" if p.get("line") else "")
                          + f":[/] {p.get('message')}")
    elif t == "log":
        console.print(f"[dim]{e.get('message')}[/]")
    elif t == "warning":
        console.print(f"[yellow]warning ({e.get('kind')}):[/] {e.get('message')}")
    elif t == "error":
        console.print(f"[red]error ({e.get('kind')}):[/] {e.get('message')}")
        if e.get("hint"):
            console.print(f"  hint: {e['hint']}")
    elif t == "checkpoint":
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] checkpoint step {e.get('step')}"
                      + (" [green](best)[/]" if e.get("is_best") else ""))
    elif t == "done":
        return e
    return None


def _log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no engine.log)"
