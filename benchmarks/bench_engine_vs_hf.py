"""Trained tokens/s and peak memory: ftwb's engine vs a plain HF Trainer + PEFT script vs
TRL's SFTTrainer with packing and padding-free attention.

tokens_per_s counts real (non-padding) tokens in every arm, the peers' own measure.

All arms train the same random-weight Llama-shaped model on the same synthetic token
data (log-normal lengths, median 300 tokens, the first third of each example masked, so
the loss is completion-only) with the same LoRA config (r 16, all linear layers). One
process per arm, so memory numbers do not mix, one after the other in the same run, so
the ratios hold even when the machine's speed drifts. Prints one JSON line per arm and,
with --arm all, ftwb/HF and ftwb/TRL.

  python benchmarks/bench_engine_vs_hf.py --size tiny --steps 12            # CPU
  python benchmarks/bench_engine_vs_hf.py --size 8b --steps 25 --gc         # one GPU
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
sys.path.insert(0, str(ROOT))

# hidden, layers, heads, kv heads, intermediate, vocab
SIZES = {"tiny": (256, 4, 4, 2, 688, 32000), "1b": (2048, 16, 32, 8, 8192, 32000),
         "8b": (4096, 32, 32, 8, 14336, 32000)}


def synth(n: int, vocab: int, max_len: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        L = int(min(max_len, max(16, rng.lognormvariate(math.log(300), 0.8))))
        ids = [rng.randrange(3, vocab) for _ in range(L)]
        p = L // 3
        rows.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return rows


def build_model(size: str, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    h, L, H, KV, I, V = SIZES[size]
    cfg = LlamaConfig(vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=H,
                      num_key_value_heads=KV, intermediate_size=I, max_position_embeddings=4096,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    return model


def tiny_tokenizer(vocab: int = 1000):
    """A word-level tokenizer (w0 ... w{vocab-1}) built in process: the data is already
    token ids, so only its pad id matters to the trainers, and no model hub is needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(vocab - 3)}}
    t = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def peak(device: str) -> dict:
    import torch

    if device == "cuda":
        return {"peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}
    import psutil

    return {"rss_gib": round(psutil.Process().memory_info().rss / 2**30, 2)}


def arm_hf(a, device: str) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = build_model(a.size, device)
    if a.gc:
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config())
    rows = synth(4000, SIZES[a.size][-1], a.max_len)
    ds = [{"input_ids": r["input_ids"], "attention_mask": [1] * len(r["input_ids"]), "labels": r["labels"]}
          for r in rows]

    def collate(batch):
        m = max(len(b["input_ids"]) for b in batch)
        out = {k: [] for k in ("input_ids", "attention_mask", "labels")}
        for b in batch:
            pad = m - len(b["input_ids"])
            out["input_ids"].append(b["input_ids"] + [0] * pad)
            out["attention_mask"].append(b["attention_mask"] + [0] * pad)
            out["labels"].append(b["labels"] + [-100] * pad)
        return {k: torch.tensor(v) for k, v in out.items()}

    marks: dict[int, tuple[float, int]] = {}

    class Meter(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.bs, max_steps=a.steps,
                             learning_rate=2e-4, bf16=device == "cuda", logging_steps=1000, report_to=[],
                             save_strategy="no", disable_tqdm=True, gradient_checkpointing=a.gc,
                             include_num_input_tokens_seen="non_padding", use_cpu=device == "cpu",
                             dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Meter()]).train()
    (ta, na), (tb, nb) = marks[a.warmup], marks[a.steps]
    return {"tokens_per_s": round((nb - na) / (tb - ta)), "tokens_per_step": round((nb - na) / (a.steps - a.warmup))}


def arm_trl(a, device: str) -> dict:
    """TRL SFTTrainer: BFD packing + padding-free (position_ids), --trl-bs rows of max_len
    tokens, completion-only loss, as TRL's docs recommend for speed."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    model = build_model(a.size, device)
    rows = synth(4000, SIZES[a.size][-1], a.max_len)
    ds = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": [int(x != -100) for x in r["labels"]]}
                            for r in rows])
    marks: dict[int, tuple[float, int]] = {}

    class Meter(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)

    cfg = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.trl_bs, max_steps=a.steps,
                    learning_rate=2e-4, bf16=device == "cuda", logging_steps=1000, report_to=[],
                    save_strategy="no", disable_tqdm=True, gradient_checkpointing=a.gc, packing=True,
                    padding_free=True, max_length=a.max_len, completion_only_loss=True,
                    include_num_input_tokens_seen="non_padding", use_cpu=device == "cpu",
                    dataloader_num_workers=0, dataset_num_proc=1, use_liger_kernel=a.liger)
    tr = SFTTrainer(model=model, args=cfg, train_dataset=ds, peft_config=lora_config(),
                    processing_class=tiny_tokenizer())
    tr.add_callback(Meter())
    tr.train()
    (ta, na), (tb, nb) = marks[a.warmup], marks[a.steps]
    return {"tokens_per_s": round((nb - na) / (tb - ta)), "tokens_per_step": round((nb - na) / (a.steps - a.warmup))}


def arm_ftwb(a, device: str) -> dict:
    """The engine's own Trainer with the engine's choices: the attention route checked at
    start-up, bf16 autocast on GPU, and auto-fit on CUDA when --auto-fit is given."""
    import torch
    from peft import get_peft_model

    from engine import config as C
    from engine.train import attention
    from engine.train.control import Control
    from engine.train.loop import Trainer
    from engine.train.model import compute_dtype

    model = build_model(a.size, device)
    model.config.use_cache = False
    if a.gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config())
    cfg = C.RunConfig()
    cfg.data.max_seq_len = a.max_len
    cfg.data.packing = True
    # Same tokens per step as the HF arm: bs examples of ~median length vs one packed row.
    cfg.train.micro_batch_size = max(1, round(a.bs * 380 / a.max_len)) if a.pack_rows == 0 else a.pack_rows
    cfg.train.max_steps = a.steps
    cfg.train.learning_rate = 2e-4
    cfg.train.eval_every = cfg.train.save_every = 0
    cfg.train.gradient_checkpointing = a.gc
    rows = synth(4000, SIZES[a.size][-1], a.max_len)
    dtype = next(model.parameters()).dtype
    events: list = []
    route = attention.choose(model, cfg, device, dtype, emit=lambda t, **f: events.append((t, f)),
                             autocast_dtype=compute_dtype(cfg, device))
    fit = {}
    gpu_total = None
    if device == "cuda" and a.mem_cap_gib:
        gpu_total = int(a.mem_cap_gib * 2**30)
        torch.cuda.set_per_process_memory_fraction(gpu_total / torch.cuda.get_device_properties(0).total_memory)
    if a.auto_fit and device == "cuda":
        from engine.memory_probe import auto_fit

        fit = auto_fit(model, cfg, device, emit=lambda t, **f: events.append((t, f)), budget_s=a.fit_budget,
                       gpu_total=gpu_total)
        torch.cuda.reset_peak_memory_stats()

    class Tok:
        pad_token_id = 0

    marks: dict[int, tuple[float, int]] = {}
    trainer = Trainer(cfg, Path(tempfile.mkdtemp()), model, Tok(), rows, [], device, lambda *x, **k: None, Control())

    def on_step(m):
        if device == "cuda":
            torch.cuda.synchronize()
        marks[trainer.state.step] = (time.perf_counter(), trainer.state.tokens_seen)

    trainer.run(on_step=on_step)
    (ta, na), (tb, nb) = marks[a.warmup], marks[a.steps]
    est = {}
    if device == "cuda":
        import warnings

        from engine import memory

        torch.cuda.set_sync_debug_mode("warn")  # one more step, counting the waits on the GPU
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step()
        torch.cuda.set_sync_debug_mode("default")
        est["host_syncs_per_step"] = sum("synchroniz" in str(w.message).lower() for w in caught)

        e = memory.estimate(cfg, model.get_base_model().config.to_dict(),
                            assumptions=memory.Assumptions(attention_route=route))
        measured = torch.cuda.max_memory_allocated()
        est = {"estimated_peak_gib": round(e.peak_allocated / 2**30, 2),
               "estimate_error": round(e.peak_allocated / measured - 1, 3)}
    return {**est, "tokens_per_s": round((nb - na) / (tb - ta)), "tokens_per_step": round((nb - na) / (a.steps - a.warmup)),
            "packed_row_tokens": trainer._plan_shape()[0] * trainer._plan_shape()[1], "attention": route,
            "grad_accum": cfg.train.grad_accum, "gc": cfg.train.gradient_checkpointing,
            **({"auto_fit": {k: fit[k] for k in ("tokens_per_micro_batch", "grad_accum", "gradient_checkpointing")}}
               if fit else {})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="all", choices=["hf", "trl", "ftwb", "all", "both"],
                    help="all: the three arms one after the other (both: hf and ftwb only)")
    ap.add_argument("--size", default="tiny", choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bs", type=int, default=4)
    ap.add_argument("--pack-rows", type=int, default=0, help="ftwb: max_seq_len slots per packed row (0 = match bs)")
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--gc", action="store_true")
    ap.add_argument("--trl-bs", type=int, default=1, help="TRL arm: packed rows of max_len per step")
    ap.add_argument("--liger", action="store_true", help="TRL arm: use_liger_kernel (CUDA, needs liger-kernel)")
    ap.add_argument("--auto-fit", action="store_true", help="ftwb arm on CUDA: auto-fit the micro-batch first")
    ap.add_argument("--fit-budget", type=float, default=60.0, help="seconds auto-fit may spend measuring")
    ap.add_argument("--mem-cap-gib", type=float, default=0.0, help="ftwb arm on CUDA: act as if the GPU had this much")
    a = ap.parse_args()
    if a.arm in ("all", "both"):
        results = {}
        arms = ("hf", "trl", "ftwb") if a.arm == "all" else ("hf", "ftwb")
        for arm in arms:
            argv = [sys.executable, __file__, "--arm", arm] + [x for x in sys.argv[1:] if x not in ("--arm", "all", "both")]
            out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = next((ln for ln in reversed(out.stdout.splitlines()) if ln.startswith('{"arm"')), None)
            if line is None:
                print(f"{arm} arm failed:\n{out.stderr[-2000:]}")
                continue
            print(line, flush=True)
            results[arm] = json.loads(line)
        for other in arms[:-1]:
            if "ftwb" in results and other in results:
                print(f"ftwb / {other} trained tokens/s: "
                      f"{results['ftwb']['tokens_per_s'] / results[other]['tokens_per_s']:.2f}x")
        return 0 if len(results) == len(arms) else 1
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res = {"hf": arm_hf, "trl": arm_trl, "ftwb": arm_ftwb}[a.arm](a, device)
    res = {"arm": a.arm, **res}
    res.setdefault("gc", a.gc)
    res.update({"size": a.size, "bs": a.bs, "device": device,
                "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None, **peak(device)})
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
