"""Estimate vs measured peak GPU memory for Llama-shaped models of about 1B and 8B params.

Random weights built from a config (nothing is downloaded), LoRA and QLoRA, two sequence
lengths; each case runs 3 real optimizer steps on the longest batch through the engine's
own model loading and loss (engine.memory_probe) and prints the error of the estimate.
Without CUDA it prints the estimates and says measuring needs a GPU.

    .venv/bin/python benchmarks/bench_memory_accuracy.py [--sizes 1b,8b] [--seq 2048,8192]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import config as C  # noqa: E402
from engine import memory as M  # noqa: E402

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}


def build_model(name: str, root: Path) -> dict:
    """Save a random-weight Llama of the named shape and a small tokenizer under root/name."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = root / name
    cfg = LlamaConfig(**SHAPES[name], rope_theta=500000.0)
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16)
        model.save_pretrained(path)
        del model
        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 200)}}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                pad_token="</s>").save_pretrained(path)
    return json.loads((path / "config.json").read_text())


def run_config(model_path: str, method: str, seq: int, mbs: int) -> C.RunConfig:
    return C.from_dict({"model": {"name_or_path": model_path}, "method": method,
                        "data": {"max_seq_len": seq, "packing": True},
                        "train": {"micro_batch_size": mbs, "gradient_checkpointing": True}})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1b,8b")
    ap.add_argument("--seq", default="2048,8192")
    ap.add_argument("--methods", default="lora,qlora")
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--models-dir", default=None, help="where to keep the random models (default: a temp dir)")
    args = ap.parse_args()

    from engine.memory_probe import cuda_available, measure

    cuda = cuda_available()
    root = Path(args.models_dir or tempfile.mkdtemp(prefix="ftwb-bench-mem-"))
    print(f"{'model':5} {'method':6} {'seq':>6} {'estimate GiB':>13} {'measured GiB':>13} {'error':>7}")
    worst = 0.0
    for size in args.sizes.split(","):
        model_config = build_model(size, root) if cuda else {"model_type": "llama", **SHAPES[size]}
        for method in args.methods.split(","):
            for seq in (int(s) for s in args.seq.split(",")):
                cfg = run_config(str(root / size), method, seq, args.micro_batch)
                est = M.estimate(cfg, model_config)
                meas, err = "-", "-"
                if cuda:
                    r = measure(cfg, steps=3)[0]
                    if r.oom:
                        meas = "OOM"
                    else:
                        e = (est.peak_allocated - r.peak_allocated) / r.peak_allocated
                        worst = max(worst, abs(e))
                        meas, err = f"{r.peak_allocated / M.GiB:.2f}", f"{e:+.1%}"
                print(f"{size:5} {method:6} {seq:>6} {est.peak_allocated / M.GiB:>13.2f} {meas:>13} {err:>7}",
                      flush=True)
    if not cuda:
        print("measured peaks need a CUDA GPU; none is visible here, so only the estimates are shown")
    else:
        print(f"worst error {worst:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
