"""`ftwb estimate CONFIG`: will this run fit on the GPU? Term by term, before anything loads.

Exit codes: 0 fits (or no GPU size to check against), 1 will not fit, 2 bad input.
CONFIG may be an ftwb config, a run directory, or an Axolotl / LLaMA-Factory YAML.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BAR_WIDTH = 40


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "estimate", help="estimate GPU memory for a config, and the largest micro-batch that fits",
        description="Estimate the GPU memory a run needs from the model's config.json (no weights), "
                    "term by term, against the GPU here or --gpu-gb. Exit 0 fits, 1 will not fit, 2 bad input.")
    p.add_argument("config", help="ftwb config YAML, run directory, or an Axolotl / LLaMA-Factory YAML")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--gpu-gb", type=float, default=None, help="GPU memory in GiB (default: detect the GPU)")
    p.add_argument("--headroom", type=float, default=0.9,
                   help="fraction of the GPU a run may plan to use (default 0.9)")
    p.add_argument("--measure", action="store_true",
                   help="also run 2-3 real steps on the longest batch and report the measured peak (CUDA)")
    p.add_argument("--auto-fit", action="store_true",
                   help="find the largest micro_batch_size that fits and rebalance grad_accum")
    p.add_argument("--model-config", default=None,
                   help="path to the model's config.json (or its directory), e.g. for a hub id offline")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"ftwb estimate: {msg}", file=sys.stderr)
    return 2


def load_any_config(path: str):
    """(RunConfig, note or None): an ftwb config, a run dir's config.yaml, or an imported one."""
    from engine import config as C
    from engine.config_import import KIND_NAMES, detect_kind, import_config, read_source

    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    try:
        return C.load(p), None
    except C.ConfigError as first:
        try:
            data = read_source(p)
        except C.ConfigError:
            raise first from None
        if detect_kind(data) is None:
            raise first from None
        result = import_config(p)
        kind = KIND_NAMES.get(result.source_kind, result.source_kind)
        return result.config, f"read as {kind} config (see `ftwb config import {path}`)"


def _gib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1024 ** 3:.2f} GiB"


def _bar(used: int, total: int, limit: float) -> str:
    """Full blocks for the estimate, a '|' at the headroom limit, shading for the rest."""
    frac = min(used / total, 1.0)
    filled = round(frac * BAR_WIDTH)
    mark = min(BAR_WIDTH - 1, round(limit / total * BAR_WIDTH))
    cells = ["█" if i < filled else "░" for i in range(BAR_WIDTH)]
    cells[mark] = "|" if mark >= filled else "┃"
    return "".join(cells)


def run(args: argparse.Namespace) -> int:
    from engine import memory
    from engine.config import ConfigError

    if not 0 < args.headroom <= 1:
        return _fail(f"--headroom {args.headroom}: must be in (0, 1], e.g. 0.9")
    if args.gpu_gb is not None and args.gpu_gb <= 0:
        return _fail(f"--gpu-gb {args.gpu_gb}: must be a positive number of GiB, e.g. 80")
    try:
        cfg, source_note = load_any_config(args.config)
        model_config = memory.load_model_config(args.model_config or cfg.model.name_or_path)
        gpu_total = int(args.gpu_gb * 1024 ** 3) if args.gpu_gb else memory.detect_gpu_total()
        est = memory.estimate(cfg, model_config, gpu_total)
    except ConfigError as e:
        return _fail(str(e))
    if args.measure:
        from engine.memory_probe import cuda_available

        if not cuda_available():
            return _fail("--measure needs a CUDA GPU; none is visible here (the estimate works without one)")
    if args.auto_fit and not gpu_total:
        return _fail("--auto-fit needs the GPU size: no GPU detected; pass --gpu-gb N")

    fits = est.fits(gpu_total, args.headroom) if gpu_total else None
    measured = None
    if args.measure:
        from engine.memory_probe import measure

        try:
            measured = measure(cfg)[0]
        except ConfigError as e:
            return _fail(str(e))
        if gpu_total:
            fits = (not measured.oom) and measured.peak_allocated <= gpu_total * args.headroom
    fit = _auto_fit(cfg, model_config, gpu_total, args) if args.auto_fit else None

    if args.json:
        out = {"config": args.config, "model": cfg.model.name_or_path, "method": cfg.method,
               "source_note": source_note, **est.to_dict(), "gpu_total_bytes": gpu_total,
               "headroom": args.headroom, "fits": fits,
               "measured": measured.to_dict() if measured else None, "auto_fit": fit}
        print(json.dumps(out, indent=2))
    else:
        _print_table(args, cfg, est, gpu_total, fits, measured, fit, source_note)
    if fit is not None:
        return 0 if fit.get("micro_batch_size") else 1
    return 1 if fits is False else 0


def _auto_fit(cfg, model_config, gpu_total: int, args) -> dict:
    from engine import memory

    best = memory.largest_fitting_batch(cfg, model_config, gpu_total, args.headroom)
    probes = None
    if args.measure:
        from engine.memory_probe import largest_fitting_measured

        best, results = largest_fitting_measured(cfg, gpu_total, args.headroom, start=best or 1)
        probes = [r.to_dict() for r in results]
    t = cfg.train
    out = {"by": "measurement" if args.measure else "estimate", "micro_batch_size": best,
           "grad_accum": None, "from": {"micro_batch_size": t.micro_batch_size, "grad_accum": t.grad_accum},
           "effective_batch_before": t.micro_batch_size * t.grad_accum, "effective_batch_after": None,
           "probes": probes}
    if best:
        best, ga = memory.keep_effective_batch(t.micro_batch_size, t.grad_accum, best)
        out.update(micro_batch_size=best, grad_accum=ga, effective_batch_after=best * ga)
    return out


def _print_table(args, cfg, est, gpu_total, fits, measured, fit, source_note) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    if source_note:
        con.print(f"[dim]{args.config}: {source_note}[/]")
    from engine.memory import fmt_params

    title = (f"{cfg.model.name_or_path} · {cfg.method} · {fmt_params(est.n_params)} params, "
             f"{fmt_params(est.trainable_params)} trainable · {est.tokens_per_micro_batch} tokens/micro-batch")
    table = Table(title=title, title_justify="left")
    table.add_column("term", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("how it is counted", overflow="fold")
    for name, nbytes, note in est.breakdown:
        table.add_row(name, _gib(nbytes), note)
    table.add_section()
    table.add_row("[bold]total[/]", f"[bold]{_gib(est.total)}[/]", "what the run needs on the GPU")
    table.add_row("peak allocated", _gib(est.peak_allocated), "tensors only: comparable to torch's max_memory_allocated")
    if measured:
        meas = "out of memory" if measured.oom else _gib(measured.peak_allocated)
        err = ""
        if measured.peak_allocated:
            err = f" (estimate off by {(est.peak_allocated - measured.peak_allocated) / measured.peak_allocated:+.0%})"
        table.add_row("[bold]measured peak[/]", meas, f"3 real steps on {measured.micro_batch_size} x "
                                                        f"{measured.seq_len} tokens{err}")
    con.print(table)
    for n in est.notes:
        con.print(f"[dim]note: {n}[/]")
    if gpu_total:
        limit = gpu_total * args.headroom
        used = measured.peak_allocated if measured and measured.peak_allocated else est.total
        con.print(f"GPU {_bar(used, gpu_total, limit)} {_gib(used)} of {_gib(gpu_total)} "
                  f"({used / gpu_total:.0%}; limit at headroom {args.headroom:g}: {_gib(limit)})")
        if fits:
            con.print(f"[green]fits[/] with {_gib(limit - used)} to spare under the headroom")
        else:
            con.print(f"[bold red]will not fit[/]: needs {_gib(used)}, limit {_gib(limit)}. Try "
                      "--auto-fit, a smaller micro_batch_size or max_seq_len, "
                      + ("gradient_checkpointing: true, " if not cfg.train.gradient_checkpointing else "")
                      + ("method: qlora" if cfg.method != "qlora" else "a smaller lora.r"))
    else:
        con.print("[dim]no GPU detected: pass --gpu-gb N to check the fit[/]")
    if fit is not None:
        if fit["micro_batch_size"]:
            f0 = fit["from"]
            con.print(f"auto-fit (by {fit['by']}): train.micro_batch_size {f0['micro_batch_size']} -> "
                      f"{fit['micro_batch_size']}, train.grad_accum {f0['grad_accum']} -> {fit['grad_accum']} "
                      f"(effective batch {fit['effective_batch_before']} -> {fit['effective_batch_after']})")
        else:
            con.print("[bold red]auto-fit: even micro_batch_size 1 does not fit[/]; shorten max_seq_len, "
                      "turn on gradient_checkpointing or use method: qlora")
