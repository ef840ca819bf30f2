"""One-command GPU check (`make gpu-check`): one H100/H200, no internet, under 8 minutes.

Parts, each in its own subprocess under its own time limit and a global budget; a part
that fails prints a FAILED line and the check goes on:

  env        versions, the GPU, which attention routes exist here, wheels from .whl/
  isolation  packing isolation on CUDA: a small random Llama, the route auto picks
             (engine.train.attention.choose) and every candidate route, packed rows
             against the same examples run alone (hidden states and input gradients)
  1b / 8b    trained tokens/s and peak memory of ftwb's engine (auto-fit on) vs HF
             Trainer + PEFT vs TRL SFTTrainer (packing + padding-free) on a random
             Llama-shaped model built from a config (benchmarks/bench_engine_vs_hf.py),
             and the estimator's error against the measured peak; 8b also under a 24 GiB cap
  qlora      a real QLoRA run (NF4, double quant) through `ftwb train` on a saved random
             model: its memory events, adapter dtypes and the estimator's error

Results: one JSON line per measurement in $OUT/gpu_check.jsonl (OUT defaults to
./gpu_check_out), then a summary table. Wheels the GPU image lacks (bitsandbytes, trl,
textual ...) are installed from ./.whl when present (../shared/gpu-wheels.sh trl
liger-kernel downloads them on a machine with internet).

  python3 benchmarks/gpu_check.py                 # the whole check
  python3 benchmarks/gpu_check.py --cpu-smoke     # every part, tiny, on CPU, in about a minute
  python3 benchmarks/gpu_check.py --only isolation,qlora
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_engine_vs_hf.py"
G = 2 ** 30


def out_dir() -> Path:
    p = Path(os.environ.get("OUT") or ROOT / "gpu_check_out")
    p.mkdir(parents=True, exist_ok=True)
    return p


def record(part: str, **kw) -> dict:
    row = {"part": part, **kw}
    line = json.dumps(row, default=str)
    print(line, flush=True)
    with open(out_dir() / "gpu_check.jsonl", "a") as f:
        f.write(line + "\n")
    return row


# ---------------------------------------------------------------- parts (run in a child process)

def part_env(a) -> None:
    import torch
    import transformers

    from engine.train import attention

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}
    for mod in ("peft", "trl", "bitsandbytes", "flash_attn", "liger_kernel", "datasets", "textual", "triton"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "present")
        except Exception as e:  # noqa: BLE001
            info[mod] = f"missing ({type(e).__name__})"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, sm=f"{p.major}.{p.minor}", total_gib=round(p.total_memory / G, 1),
                    bf16=torch.cuda.is_bf16_supported())
    order, skipped = attention.candidates(dev, torch.bfloat16 if dev == "cuda" else torch.float32)
    record("env", device=dev, attention_candidates=order, attention_not_tried=skipped, **info)


def _tiny_llama(dev, dtype, vocab=1000):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).to(dev, dtype)
    m.config.use_cache = False
    return m


def part_isolation(a) -> None:
    import torch

    from engine import config as C
    from engine.train import attention

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    model = _tiny_llama(dev, dtype)
    events = []
    chosen = attention.choose(model, C.RunConfig(), dev, dtype, emit=lambda t, **f: events.append((t, f)))
    record("isolation", what="route chosen by auto", route=chosen, device=dev, dtype=str(dtype),
           events=[{"type": t, **f} for t, f in events])
    order, _ = attention.candidates(dev, dtype)
    attention.register_varlen()
    for route in dict.fromkeys(order + [attention.VARLEN, "eager"]):  # varlen off CUDA: its per-example path
        for lengths in ((37, 120, 5, 64, 211), (2048, 1000, 1, 3000, 77)):  # short, and rows of ~6k tokens
            try:
                err = attention.probe(model, route, dev, lengths=lengths)
                tol = attention.TOLERANCE[str(dtype).replace("torch.", "")]
                record("isolation", route=route, tokens=sum(lengths), examples=len(lengths),
                       max_rel_error_vs_alone=round(err, 6), isolated=err <= tol, tolerance=tol)
            except Exception as e:  # noqa: BLE001
                record("isolation", route=route, tokens=sum(lengths), error=f"{type(e).__name__}: {str(e)[:300]}")
    # A 2D mask switches transformers' packed detection off: the leak the engine avoids.
    from engine.data.pack import collate

    g = torch.Generator().manual_seed(1)
    items = [{"input_ids": torch.randint(3, 1000, (n,), generator=g).tolist()} for n in (40, 90, 30)]
    for it in items:
        it["labels"] = it["input_ids"]
    b = collate(items, True, 0)
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        ids, pos = b["input_ids"].to(dev), b["position_ids"].to(dev)
        alone = torch.cat([model(input_ids=torch.tensor([it["input_ids"]], device=dev)).logits[0] for it in items])
        leak = model(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids)).logits[0]
        clean = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
    record("isolation", what="control: sdpa with position ids, with and without a 2D mask",
           max_abs_logit_diff_with_2d_mask=round(float((leak - alone).abs().max()), 4),
           max_abs_logit_diff_position_ids_only=round(float((clean - alone).abs().max()), 4))


def part_qlora(a) -> None:
    """A real engine run: `ftwb train` with method qlora on a saved random Llama."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_engine_vs_hf as B

    from engine import config as C
    from engine import memory

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    size = a.qlora_size if dev == "cuda" else "tiny"
    work = Path(tempfile.mkdtemp(prefix="ftwb-gpucheck-"))
    t0 = time.perf_counter()
    model = B.build_model(size, dev)
    model.save_pretrained(work / "model", safe_serialization=True)
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
    tok = B.tiny_tokenizer()
    tok.save_pretrained(work / "model")
    rng = random.Random(0)
    with open(work / "data.jsonl", "w") as f:
        for _ in range(600):
            n = int(min(2000, max(16, rng.lognormvariate(math.log(300), 0.8))))
            f.write(json.dumps({"text": " ".join(f"w{rng.randrange(997)}" for _ in range(n))}) + "\n")
    record("qlora", what="saved random model", size=size, save_s=round(time.perf_counter() - t0, 1))
    cfg = C.RunConfig()
    cfg.model.name_or_path = str(work / "model")
    cfg.method = "qlora" if dev == "cuda" else "lora"
    cfg.data.path, cfg.data.format, cfg.data.max_seq_len = str(work / "data.jsonl"), "completion", 2048
    cfg.data.val_split = 0.05
    cfg.train.max_steps = a.qlora_steps if dev == "cuda" else 2
    # The classic QLoRA set-up, pinned (auto-fit is measured in the throughput parts).
    cfg.train.micro_batch_size, cfg.train.grad_accum = (4, 1) if dev == "cuda" else (1, 1)
    cfg.train.gradient_checkpointing, cfg.train.auto_fit = True, "off"
    cfg.train.eval_every = cfg.train.save_every = 0
    cfg.eval.at_end = False
    cfg.eval.sample_prompts = 0
    if dev != "cuda":
        cfg.data.max_seq_len = 256
    cfg_path = work / "qlora.yaml"
    C.save(cfg, cfg_path)
    env = {**os.environ, "FTWB_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    t1 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "tui.main", "train", str(cfg_path), "--runs-dir", str(work / "runs")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=a.part_timeout)
    runs = sorted((work / "runs").glob("*"))
    evs = [json.loads(x) for x in (runs[-1] / "events.jsonl").read_text().splitlines()] if runs else []
    mem = [e for e in evs if e["type"] == "memory"]
    metrics = [e for e in evs if e["type"] == "metric"]
    fit = next((e for e in evs if e["type"] == "auto_fit"), {})
    att = next((e for e in evs if e["type"] == "attention"), {})
    errors = [e.get("message") for e in evs if e["type"] in ("error", "warning")]
    row = {"size": size, "method": cfg.method, "rc": res.returncode, "wall_s": round(time.perf_counter() - t1, 1),
           "attention": att.get("route"), "auto_fit": {k: fit.get(k) for k in
                                                       ("status", "tokens_per_micro_batch", "grad_accum",
                                                        "gradient_checkpointing", "reason")},
           "losses": [round(m["loss"], 3) for m in metrics][:3] + [round(m["loss"], 3) for m in metrics][-2:],
           "trained_tokens_per_s": metrics[-1].get("trained_tokens_per_s") if metrics else None,
           "memory_events": len(mem), "problems": errors[:5]}
    if mem and mem[-1].get("devices"):
        peak = max(e["devices"][0]["peak"] for e in mem if e.get("devices"))
        row["peak_alloc_gib"] = round(peak / G, 2)
        fitted = C.load(cfg_path)
        if fit.get("status") in ("chosen", "reused"):
            fitted.train.tokens_per_micro_batch = fit["tokens_per_micro_batch"]
            fitted.train.grad_accum = fit["grad_accum"]
            fitted.train.gradient_checkpointing = fit["gradient_checkpointing"]
        mc = json.loads((work / "model" / "config.json").read_text())
        e = memory.estimate(fitted, mc, assumptions=memory.Assumptions(attention_route=att.get("route")))
        row.update(estimated_peak_gib=round(e.peak_allocated / G, 2), estimate_error=round(e.peak_allocated / peak - 1, 3))
    if runs and (runs[-1] / "adapter" / "adapter_model.safetensors").exists():
        from safetensors import safe_open

        with safe_open(str(runs[-1] / "adapter" / "adapter_model.safetensors"), "pt") as f:
            row["adapter_dtypes"] = sorted({str(f.get_tensor(k).dtype) for k in f.keys()})
    if res.returncode != 0:
        row["stderr_tail"] = res.stderr[-1500:]
    record("qlora", **row)


PARTS = {"env": part_env, "isolation": part_isolation, "qlora": part_qlora}


# ---------------------------------------------------------------- the driver

def bench_arm(arm: str, size: str, extra: list[str], timeout: float, smoke: bool) -> dict:
    argv = [sys.executable, str(BENCH), "--arm", arm, "--size", size] + extra
    if smoke:
        argv += ["--steps", "3", "--warmup", "1", "--max-len", "256"]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith('{"arm"')), None)
    if line is None:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        oom = "out of memory" in res.stderr.lower()
        return {"error": ("OOM: " if oom else "") + " | ".join(tail)[-600:]}
    return {**json.loads(line), "wall_s": round(time.perf_counter() - t0, 1)}


def throughput(size: str, budget_left, smoke: bool) -> None:
    """ftwb (auto-fit) vs HF + PEFT vs TRL on one model size; ratios at the end."""
    if smoke:
        common, arms = [], [("hf", []), ("trl", []), ("ftwb", ["--auto-fit"])]
    else:
        # 16k tokens per optimizer step for ftwb and TRL (8 packed rows of 2048); HF + PEFT
        # pads batches of 8 examples. The peers train with checkpointing, as their docs advise
        # for 8B; ftwb's auto-fit picks its own.
        gc = ["--gc"] if size == "8b" else []
        steps = ["--steps", "8", "--warmup", "3"]
        common = steps + gc + ["--bs", "8", "--trl-bs", "8", "--pack-rows", "8"]
        arms = [("ftwb", ["--auto-fit", "--fit-budget", "40" if size == "8b" else "15"]), ("hf", []), ("trl", [])]
        if size == "8b":
            arms.append(("ftwb", ["--auto-fit", "--fit-budget", "25", "--mem-cap-gib", "24"]))
    got: dict = {}
    for arm, extra in arms:
        left = budget_left()
        if left < 40:
            record("throughput", size=size, arm=arm, FAILED="skipped: the time budget is spent")
            continue
        label = arm + (" (24 GiB cap)" if "--mem-cap-gib" in extra else "")
        r = bench_arm(arm, "tiny" if smoke else size, common + extra, min(left - 5, 240), smoke)
        row = record("throughput", size=size, label=label, **{k: v for k, v in r.items() if k not in ("arm", "size")})
        if "error" in r:
            print(f"FAILED throughput {size} {label}: {r['error'][:300]}", flush=True)
        else:
            got[label] = row
    if "ftwb" in got:
        for other in ("hf", "trl"):
            if other in got:
                record("throughput", size=size, ratio=f"ftwb/{other}",
                       value=round(got["ftwb"]["tokens_per_s"] / got[other]["tokens_per_s"], 2))


def install_wheels() -> None:
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not wheels:
        return
    site = Path(tempfile.gettempdir()) / "ftwb-gpu-check-site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade",
                        "--target", str(site)] + [str(w) for w in wheels], capture_output=True, text=True)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    record("env", wheels=[w.name for w in wheels], pip_rc=r.returncode, pip_tail=r.stderr[-300:])


def summary() -> None:
    rows = [json.loads(x) for x in (out_dir() / "gpu_check.jsonl").read_text().splitlines()]
    print("\n==== gpu check summary ====")
    for r in rows:
        p = r["part"]
        if p == "throughput" and "label" in r:
            if "error" in r or "FAILED" in r:
                print(f"{r['size']:>4s} {r['label']:18s} FAILED {str(r.get('error') or r.get('FAILED'))[:90]}")
                continue
            extra = ""
            if "estimate_error" in r:
                extra = f"  estimate {r['estimated_peak_gib']} GiB ({r['estimate_error']:+.0%})"
            if "host_syncs_per_step" in r:
                extra += f"  syncs/step {r['host_syncs_per_step']}"
            fit = r.get("auto_fit")
            fit_s = f"  fit {fit['tokens_per_micro_batch']}x{fit['grad_accum']} gc={fit['gradient_checkpointing']}" if fit else ""
            print(f"{r['size']:>4s} {r['label']:18s} {r['tokens_per_s']:>8} tok/s  peak "
                  f"{r.get('peak_alloc_gib', '-'):>6} GiB  attn {r.get('attention', '-')}{fit_s}{extra}")
        elif p == "throughput" and "ratio" in r:
            print(f"{r['size']:>4s} {r['ratio']:18s} {r['value']}x")
        elif p == "isolation" and "route" in r and "what" not in r:
            state = "ok" if r.get("isolated") else ("FAILED" if "error" not in r else "error")
            print(f"isolation {r['route']:18s} {r['tokens']:>6} tokens  rel err {r.get('max_rel_error_vs_alone', '-')}"
                  f"  {state} {r.get('error', '')[:80]}")
        elif p == "isolation" and r.get("what") == "route chosen by auto":
            print(f"isolation: auto picks {r['route']} on {r['device']} ({r['dtype']})")
        elif p == "qlora" and "rc" in r:
            print(f"qlora {r['size']} {r['method']}: rc {r['rc']}, {r.get('trained_tokens_per_s')} trained tok/s, "
                  f"peak {r.get('peak_alloc_gib', '-')} GiB, estimate {r.get('estimated_peak_gib', '-')} GiB "
                  f"({r.get('estimate_error', '-')}), adapters {r.get('adapter_dtypes')}, losses {r.get('losses')}")
        elif p == "part" and r.get("FAILED"):
            print(f"FAILED part {r['name']}: {r['FAILED'][:120]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=list(PARTS), help="run one part in this process (the driver uses it)")
    ap.add_argument("--only", default="", help="comma list of parts: env,isolation,1b,8b,qlora")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET_S", 460)),
                    help="seconds for the whole check; later parts are skipped when it is spent")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny versions of every part (CPU is fine)")
    ap.add_argument("--qlora-size", default="8b", choices=["1b", "8b"])
    ap.add_argument("--qlora-steps", type=int, default=12)
    ap.add_argument("--part-timeout", type=float, default=240)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.part:
        PARTS[a.part](a)
        return 0
    t0 = time.perf_counter()
    (out_dir() / "gpu_check.jsonl").write_text("")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    install_wheels()
    only = set(filter(None, a.only.split(",")))
    # Most important first: the 8B numbers, then the real QLoRA run, then 1B.
    plan = [("env", 60), ("isolation", 90), ("8b", 0), ("qlora", 200), ("1b", 0)]
    left = lambda: a.budget - (time.perf_counter() - t0)  # noqa: E731
    for name, limit in plan:
        if only and name not in only:
            continue
        if left() < 30:
            record("part", name=name, FAILED="skipped: the time budget is spent")
            continue
        print(f"== {name} ({left():.0f}s of the budget left)", flush=True)
        if name in ("1b", "8b"):
            if a.cpu_smoke and name == "8b":
                continue
            try:
                throughput(name, left, a.cpu_smoke)
            except Exception as e:  # noqa: BLE001
                record("part", name=name, FAILED=f"{type(e).__name__}: {e}")
            continue
        qsize = a.qlora_size if left() > 250 else "1b"  # an 8B save + quantised load takes a while
        argv = [sys.executable, __file__, "--part", name, "--qlora-size", qsize,
                "--qlora-steps", str(a.qlora_steps), "--part-timeout", str(max(30, min(limit, left()) - 20))]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=max(30, min(limit, left())), cwd=ROOT)
            if r.returncode != 0:
                record("part", name=name, FAILED=f"exit {r.returncode}: {r.stderr.strip()[-600:]}")
                print(f"FAILED {name}: {r.stderr.strip()[-300:]}", flush=True)
            else:
                print(r.stdout.strip()[-2000:], flush=True)
        except subprocess.TimeoutExpired:
            record("part", name=name, FAILED=f"timed out after {min(limit, left()):.0f}s")
            print(f"FAILED {name}: timed out", flush=True)
    summary()
    print(f"total wall {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
