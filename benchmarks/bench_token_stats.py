"""Token statistics over a whole file (engine.data.token_stats, what `ftwb data stats` and
the Data screen's Stats pane run): a generated JSONL of short chats (1-2 exchanges, some
with a system prompt: 2-5 messages), tokenised with the demo model's tokenizer and (on
--real-rows of them), where the llama.cpp test assets are on this machine already (tests/realworld.py; never fetched
here), a real GGUF tokenizer (qwen2). Each measurement runs in a fresh child process with
its own cache directory: rows/s, total time and peak RSS (VmHWM) of the cold run, the
cached re-open time, and the encode-thread pipeline against one thread on a slice.

    .venv/bin/python benchmarks/bench_token_stats.py [--rows 1000000] [--real-rows 100000] [--threads-rows 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the printer on floor two is offline again", "please reset my password", "where is my refund",
         "the order arrived late and damaged", "thanks, that fixed it", "error 0x80070005 when installing",
         "I cannot log in since the update", "the screen flickers after waking up")


def gen(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as fh:
        for a in range(0, n, 10_000):
            out = []
            for _ in range(a, min(n, a + 10_000)):
                msgs = [{"role": "system", "content": "You are a support agent."}] if rng.random() < 0.3 else []
                for _ in range(rng.randint(1, 2)):
                    msgs += [{"role": "user", "content": " ".join(rng.sample(WORDS, rng.randint(1, 3)))},
                             {"role": "assistant", "content": " ".join(rng.sample(WORDS, rng.randint(1, 5)))}]
                out.append(json.dumps({"messages": msgs}))
            fh.write("\n".join(out) + "\n")


def _vmhwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(path: str, model: str, max_seq_len: int, threads: int, limit: int | None) -> None:
    """One measurement: load the tokenizer, then time file_stats (or compute on the first
    `limit` rows), printing one JSON line."""
    from transformers import AutoTokenizer

    from engine.data import token_stats as T
    from engine.data.template import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(model)
    ensure_chat_template(tok)
    s = T.Settings("chat", max_seq_len)
    t0 = time.perf_counter()
    if limit:
        def head():
            left = limit
            for rows, idx, _b in T.file_batches(path):
                yield rows[:left], idx[:left]
                left -= len(rows[:left])
                if left <= 0:
                    return
        st = T.compute(head(), tok, s, threads=threads, processes=0)
    else:
        st = T.file_stats(path, tok, s, threads=threads)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "rows": st.rows, "usable": st.usable, "cache": st.cache,
                      "rss_mb": _vmhwm_mb(), "overlong": st.overlong, "trained_tokens": st.trained_tokens,
                      "packing": st.packing_efficiency}), flush=True)


def run_child(args: list[str], cache: Path) -> dict:
    env = {**os.environ, "FTWB_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def tokenizers() -> list[tuple[str, str]]:
    from engine.demo import ensure_demo_model

    out = [("demo", str(ensure_demo_model()))]
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from realworld import assets_root

        built = sorted(assets_root().glob("llama-cpp-python-*/tokenizers/qwen2/tokenizer_config.json"))
        if built:
            out.append(("qwen2 (GGUF)", str(built[-1].parent)))
        else:
            print("  real GGUF tokenizer: skipped (no llama.cpp test assets on this machine; "
                  "tests/realworld.py fetches them)")
    except Exception as e:  # the assets helper itself is optional here
        print(f"  real GGUF tokenizer: skipped ({e})")
    return out


def main() -> int:
    from engine.data.token_stats import POOL_AFTER

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--real-rows", type=int, default=100_000, help="rows for the (slower) real GGUF tokenizer")
    ap.add_argument("--threads-rows", type=int, default=20_000, help="rows for the one- vs two-thread comparison")
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--child", nargs=5, metavar=("FILE", "MODEL", "MAX_SEQ_LEN", "THREADS", "LIMIT"))
    a = ap.parse_args()
    if a.child:
        f, model, m, th, lim = a.child
        child(f, model, int(m), int(th), int(lim) or None)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="ftwb-bench-stats-"))
    try:
        path = tmp / "chats.jsonl"
        t0 = time.perf_counter()
        gen(path, a.rows)
        print(f"generated {a.rows:,} chat rows ({path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
        for name, model in tokenizers():
            m = str(a.max_seq_len)
            if name != "demo" and a.real_rows < a.rows:
                path = tmp / "chats-real.jsonl"
                gen(path, a.real_rows)
            one = run_child([str(path), model, m, "1", str(a.threads_rows)], tmp / f"c1-{len(name)}")
            two = run_child([str(path), model, m, "2", str(a.threads_rows)], tmp / f"c2-{len(name)}")
            print(f"  {name}: first {a.threads_rows:,} rows, 1 thread {a.threads_rows / one['seconds']:,.0f} rows/s, "
                  f"plan + encode pipelined on 2 threads {a.threads_rows / two['seconds']:,.0f} rows/s "
                  f"(x{one['seconds'] / two['seconds']:.2f})")
            cache = tmp / f"cache-{len(name)}"
            cold = run_child([str(path), model, m, "2", "0"], cache)
            warm = run_child([str(path), model, m, "2", "0"], cache)
            print(f"  {name}: all {cold['rows']:,} rows in {cold['seconds']:.1f} s "
                  f"({cold['rows'] / cold['seconds']:,.0f} rows/s, "
                  f"x{one['seconds'] / a.threads_rows * cold['rows'] / cold['seconds']:.2f} "
                  f"of one thread; worker processes past {POOL_AFTER:,} rows), peak RSS {cold['rss_mb']:.0f} MB "
                  f"(this process; each worker holds its own tokenizer), "
                  f"{cold['overlong']:,} over max_seq_len {a.max_seq_len}, packing {cold['packing'] * 100:.1f}%")
            print(f"  {name}: cached re-open {warm['seconds'] * 1000:.0f} ms (cache {warm['cache']}), "
                  f"x{cold['seconds'] / max(warm['seconds'], 1e-9):,.0f} faster than the cold run")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
