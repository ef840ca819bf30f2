"""A few optimizer steps of a tiny Llama under FSDP2, launched by torchrun (gloo on CPU).

    torchrun --nproc-per-node 2 tests/fsdp_worker.py INIT_DIR OUT_DIR [--resume CKPT_DIR]
                                     [--lora INIT] [--tied INIT] [--device cuda]

Full fine-tuning without --resume: steps 1..STEPS from INIT_DIR's weights, a checkpoint
after step SAVE_AT (OUT_DIR/ckpt), the final model exported to OUT_DIR/export. With
--resume: the checkpoint restored, then the steps after it. --tied INIT adds TIED_STEPS
full fine-tuning steps of a model with tied embeddings. --lora INIT (a model with tied
embeddings) adds LoRA_STEPS LoRA steps, a checkpoint restored into a second sharded
model, and the adapter exported to OUT_DIR/lora_export. Rank 0 writes OUT_DIR/result.json
(loss and gradient norm per step). `reference()` and `lora_reference()` run the same steps
in one process without sharding. Every step uses the engine's own collate and loss
(decoder and lm_head called apart).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS, SAVE_AT, WORLD, ACCUM = 4, 2, 2, 2
LR, MAX_NORM = 5e-3, 0.5  # a low clip norm, so clipping acts and must use the global norm
DEVICE = "cpu"  # --device cuda: one GPU per rank (nccl), bf16 compute


def micro_batches(step: int, vocab: int) -> list[dict]:
    """WORLD x ACCUM packed micro-batches of step `step` (ACCUM per rank, accumulated),
    each two examples of different lengths with their first tokens masked, seeded by the step."""
    import torch

    from engine.data import pack

    g = torch.Generator().manual_seed(1000 + step)
    out = []
    for _ in range(WORLD * ACCUM):
        items = []
        for _ in range(2):
            n = int(torch.randint(9, 24, (1,), generator=g))
            ids = torch.randint(3, vocab, (n,), generator=g).tolist()
            skip = int(torch.randint(1, 5, (1,), generator=g))
            items.append({"input_ids": ids, "labels": [-100] * skip + ids[skip:]})
        out.append(pack.collate(items, True, 0))
    return out


def prepare(model):
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def prepare_lora(model):
    from peft import LoraConfig, get_peft_model
    import torch

    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(5)  # the adapter's init (rank 0's is broadcast; the reference draws the same)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                            bias="none", task_type="CAUSAL_LM"))


LORA_STEPS = 3
TIED_STEPS = 2


def make_optimizer(model):
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.1)


def mine(batches: list, rank: int) -> list:
    """This rank's share of the step's micro-batches (all of them on one process)."""
    import torch.distributed as dist

    k = len(batches) // dist.get_world_size()
    return batches[rank * k:(rank + 1) * k]


def step(model, optimizer, batches: list, world: int, clip) -> tuple[float, float]:
    """One optimizer step over `batches` (this rank's micro-batches); returns the global
    loss per trained token and the global gradient norm before clipping."""
    import torch
    import torch.distributed as dist

    from engine.train.loss import batch_loss

    n_local = sum(b["num_trained"] for b in batches)
    n = torch.tensor([float(n_local)], device=DEVICE)
    if world > 1:
        dist.all_reduce(n)
    total = torch.zeros((), device=DEVICE)
    for b in batches:
        b = {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
        loss_sum, _ = batch_loss(model, b)
        # shard() makes FSDP2 sum gradients over ranks: the global token mean needs no more
        (loss_sum / n[0]).backward()
        total = total + loss_sum.detach()
    norm = clip(model.parameters(), MAX_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if world > 1:
        dist.all_reduce(total)
    return float(total / n[0]), float(norm)


PROMPT = [5, 17, 42, 99, 7]


def generate(model) -> list[int]:
    import torch

    model.eval()
    with torch.no_grad():
        ids = torch.tensor([PROMPT], device=DEVICE)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                             do_sample=False, pad_token_id=0)
    model.train()
    return out[0, len(PROMPT):].tolist()


def reference(init_dir: Path, steps: int = STEPS) -> tuple[list[dict], object]:
    """The same steps in one process, unsharded: every rank's micro-batch in turn."""
    import torch
    from transformers import AutoModelForCausalLM

    model = prepare(AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32, attn_implementation="sdpa"))
    opt = make_optimizer(model)

    def clip(params, max_norm):
        return torch.nn.utils.clip_grad_norm_(list(params), max_norm)

    out = []
    for s in range(1, steps + 1):
        loss, norm = step(model, opt, micro_batches(s, model.config.vocab_size), 1, clip)
        out.append({"step": s, "loss": loss, "grad_norm": norm})
    return out, model


def lora_reference(init_dir: Path) -> tuple[list[dict], object]:
    import torch
    from transformers import AutoModelForCausalLM

    model = prepare_lora(AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32,
                                                              attn_implementation="sdpa"))
    opt = make_optimizer(model)

    def clip(params, max_norm):
        return torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], max_norm)

    out = []
    for s in range(1, LORA_STEPS + 1):
        loss, norm = step(model, opt, micro_batches(s, model.config.vocab_size), 1, clip)
        out.append({"step": s, "loss": loss, "grad_norm": norm})
    return out, model


def lora_phase(init_dir: Path, out_dir: Path, rank: int, world: int) -> dict:
    """LoRA on a tied-embedding model: steps, a save_state/load_state round trip into a
    second sharded model at step 2 (which then takes step 3), and the adapter export."""
    import torch

    from engine.train import fsdp

    def load():
        m = fsdp.load_pretrained_sharded(str(init_dir), DEVICE, dtype=torch.float32, prepare=prepare_lora,
                                         attn_implementation="sdpa")
        return m, make_optimizer(m)

    def trainable(m):
        return (p for p in m.parameters() if p.requires_grad)

    model, opt = load()
    vocab = model.config.vocab_size
    out, restored = [], None
    for s in range(1, LORA_STEPS + 1):
        loss, norm = step(model, opt, mine(micro_batches(s, vocab), rank), world,
                          lambda _, mx: fsdp.clip_grad_norm(trainable(model), mx))
        out.append({"step": s, "loss": loss, "grad_norm": norm})
        if s == LORA_STEPS - 1:
            fsdp.save_state(model, opt, None, out_dir / "lora_ckpt")
            other, other_opt = load()
            fsdp.load_state(other, other_opt, out_dir / "lora_ckpt")
            restored = step(other, other_opt, mine(micro_batches(s + 1, vocab), rank), world,
                            lambda _, mx: fsdp.clip_grad_norm(trainable(other), mx))
    fsdp.export_pretrained(model, None, out_dir / "lora_export")
    return {"steps": out, "restored_step": {"loss": restored[0], "grad_norm": restored[1]}}


def main() -> None:
    import torch
    import torch.distributed as dist

    from engine.train import attention, fsdp

    ap = argparse.ArgumentParser()
    ap.add_argument("init_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--lora", type=Path)
    ap.add_argument("--tied", type=Path, help="a tied-embedding model: TIED_STEPS full fine-tuning steps")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = ap.parse_args()
    global DEVICE
    if a.device == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        DEVICE = f"cuda:{local}"
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = fsdp.load_pretrained_sharded(str(a.init_dir), DEVICE, dtype=torch.float32, prepare=prepare,
                                         attn_implementation="sdpa")
    # the start-up attention check runs on the sharded model (embeddings and decoder called apart)
    probe_error = attention.probe(model, "sdpa", "cpu" if DEVICE == "cpu" else "cuda")
    opt = make_optimizer(model)
    first = 1
    errors = None
    if a.resume:
        # a checkpoint rank 0 cannot read fails on every rank (no rank left in a collective)
        try:
            fsdp.load_state(model, opt, a.out_dir / "no-such-checkpoint")
            mine_err = None
        except Exception as e:  # noqa: BLE001 - reported to the test
            mine_err = f"{type(e).__name__}: {e}"
        errors = [None] * world
        dist.all_gather_object(errors, mine_err)
        fsdp.load_state(model, opt, a.resume)
        first = SAVE_AT + 1
    vocab = model.config.vocab_size
    out = []
    for s in range(first, STEPS + 1):
        loss, norm = step(model, opt, mine(micro_batches(s, vocab), rank), world, fsdp.clip_grad_norm)
        out.append({"step": s, "loss": loss, "grad_norm": norm})
        if s == SAVE_AT and not a.resume:
            fsdp.save_state(model, opt, None, a.out_dir / "ckpt")
    fsdp.export_pretrained(model, None, a.out_dir / "export")
    finite = fsdp.weights_finite(model)
    generated = generate(model)  # whole-model forwards through the root, as samples and evals run
    local = sum(p.to_local().numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    shares = [None] * world
    dist.all_gather_object(shares, local)
    lora = lora_phase(a.lora, a.out_dir, rank, world) if a.lora else None
    tied = None
    if a.tied:  # one weight for the embeddings and the lm_head: one FSDP2 unit, both gradients in it
        tm = fsdp.load_pretrained_sharded(str(a.tied), DEVICE, dtype=torch.float32, prepare=prepare,
                                          attn_implementation="sdpa")
        topt = make_optimizer(tm)
        tied = [step(tm, topt, mine(micro_batches(s, vocab), rank), world, fsdp.clip_grad_norm)
                for s in range(1, TIED_STEPS + 1)]
    if rank == 0:
        (a.out_dir / "result.json").write_text(json.dumps(
            {"steps": out, "finite": finite, "world": world, "local_params": shares, "params": total,
             "dtensor": type(next(model.parameters())).__name__, "lora": lora, "generated": generated,
             "errors": errors, "probe_error": probe_error, "tied": tied}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
