"""Preference objectives in the engine's own loop: DPO (sigmoid, IPO, hinge; label
smoothing; the RPO NLL term), ORPO, and KTO (unpaired rows labelled good or bad).

A micro-batch of pairs is collated as SFT collates examples, chosen and rejected as
separate sequences [c0, r0, c1, r1, ...] (packed padding-free with attention kept inside
each sequence, or padded rows), so whatever `pack.collate` builds (a block mask, position
ids, sequence boundaries) isolates them; a KTO row and its mismatched KL sequence take
the two places of a pair. Per-sequence log-probs are sums of per-token
log-probs grouped by a per-token sequence index, which works for packed and padded
batches alike.

The reference: for LoRA/QLoRA the same model with its adapter disabled (no second copy);
for full fine-tuning the reference log-probs are computed once before training and cached
in the run directory (reference_logps.json), so a resumed run reuses them.

On several processes (LoRA/QLoRA, gradients summed by the trainer) each rank computes its
share of a step's micro-batches: the step's pair and chosen-token counts are all-reduced
before any backward pass, so every rank divides by the GLOBAL counts and the summed
gradients are one process's; the loss and reward statistics are reduced as sums after it.
KTO's KL estimate is per micro-batch, and the micro-batches are those of one process
whatever the world size, so it needs no gathering (TRL gathers it because its batch is
per device). Validation splits the micro-batches over the ranks and reduces the sums.
Every rank makes the same collective calls: one before and one after a step's passes.
Full fine-tuning on several processes is sharded (FSDP2, every forward collective): every
rank computes every pair's cached reference log-probs (rank 0 writes the file, and on a
resume reads it and broadcasts it) and runs every validation forward.

Torch is imported inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from engine import distributed
from engine.data import pack
from engine.data.preference import item_length, side_items, trained_count
from engine.train.loss import CHUNK_TOKENS, _decoder_and_head

IGNORE = -100
REFERENCE_FILE = "reference_logps.json"
REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy",
               "logps_chosen", "logps_rejected", "kl")

__all__ = ["collate_pairs", "sequence_logps", "dpo_losses", "orpo_losses", "kto_losses", "PreferenceObjective",
           "item_length"]


# ---------------------------------------------------------------- batches

def collate_pairs(items: list[dict], packing: bool, pad_id: int, attn: str = "sdpa") -> dict:
    """A batch of 2*len(items) sequences, chosen and rejected interleaved, with `seq_index`
    (the sequence each label position belongs to, same shape as labels) and
    `trained_per_seq` (targets of each sequence)."""
    import torch

    seqs = [s for it in items for s in side_items(it)]
    batch = pack.collate(seqs, packing, pad_id)
    lengths = [len(s["input_ids"]) for s in seqs]
    if packing:
        seq_index = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor(lengths))[None]
    else:
        seq_index = torch.arange(len(seqs))[:, None].expand_as(batch["labels"]).clone()
    batch["seq_index"] = seq_index
    batch["num_sequences"] = len(seqs)
    batch["ref_logps"] = ([it["ref_chosen"] for it in items], [it["ref_rejected"] for it in items]) \
        if items and "ref_chosen" in items[0] else None
    if items and "kto_label" in items[0]:
        batch["kto_labels"] = [it["kto_label"] for it in items]
    return batch


def _model_inputs(model, batch: dict) -> dict:
    """What the model's forward takes, as the SFT loss builds it (attention route included)."""
    from engine.train import loss

    if hasattr(loss, "_inputs"):
        return loss._inputs(model, batch)
    return {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}


def _chunk_logp(head, hidden, targets):
    import torch.nn.functional as F

    logits = head(hidden).float()
    return -F.cross_entropy(logits, targets, reduction="none")


def sequence_logps(model, batch: dict):
    """(sum of target log-probs, number of targets) per sequence, as [num_sequences]
    tensors. Only trained positions go through lm_head, in recomputed chunks (loss.py)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    inputs = _model_inputs(model, batch)
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    seq = batch["seq_index"][:, 1:][keep].to(targets.device)
    n_seq = batch["num_sequences"]
    parts = _decoder_and_head(model)
    if parts is None:  # soft-capped or odd heads: full logits
        logits = model(**inputs).logits[:, :-1]
        logp = -torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="none")
    else:
        decoder, head = parts
        hidden = decoder(**inputs).last_hidden_state[:, :-1]
        h, t = hidden[keep], targets[keep]
        chunks = []
        for i in range(0, h.shape[0], CHUNK_TOKENS):
            if torch.is_grad_enabled():
                chunks.append(checkpoint(_chunk_logp, head, h[i:i + CHUNK_TOKENS], t[i:i + CHUNK_TOKENS],
                                         use_reentrant=False))
            else:
                chunks.append(_chunk_logp(head, h[i:i + CHUNK_TOKENS], t[i:i + CHUNK_TOKENS]))
        logp = torch.cat(chunks) if chunks else h.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(n_seq, dtype=torch.float32, device=logp.device).index_add(0, seq, logp)
    counts = torch.zeros(n_seq, dtype=torch.float32, device=logp.device).index_add(
        0, seq, torch.ones_like(logp))
    return sums, counts


def split_pairs(values):
    """[c0, r0, c1, r1, ...] -> (chosen, rejected)."""
    return values[0::2], values[1::2]


# ---------------------------------------------------------------- losses

def dpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, loss: str = "sigmoid",
               label_smoothing: float = 0.0, chosen_tokens=None, rejected_tokens=None):
    """Per-pair DPO losses and the implicit rewards (beta * log-ratio vs the reference).

    sigmoid: -(1-ls) log s(beta*d) - ls log s(-beta*d), d the difference of log-ratios
    (label smoothing = conservative DPO); hinge: relu(1 - beta*d); ipo: (d' - 1/(2 beta))^2
    with d' from per-token averaged log-ratios, as TRL computes IPO."""
    import torch.nn.functional as F

    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    delta = chosen_ratio - rejected_ratio
    if loss == "sigmoid":
        losses = -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing
    elif loss == "hinge":
        losses = F.relu(1 - beta * delta)
    elif loss == "ipo":
        d = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (d - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def kto_losses(policy, ref, policy_kl, ref_kl, good, beta: float, desirable_weight: float = 1.0,
               undesirable_weight: float = 1.0):
    """Per-row KTO losses (Eq. 7 of the KTO paper, as TRL computes it), rewards
    beta * log-ratio, and the KL estimate: the mean log-ratio of the mismatched KL
    sequences, detached and clamped at 0."""
    import torch

    kl = (policy_kl - ref_kl).mean().detach().clamp(min=0)
    ratio = policy - ref
    losses = torch.where(good, desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio))))
    return losses, beta * ratio.detach(), kl


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable at both ends."""
    import torch

    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_losses(chosen_avg, rejected_avg, beta: float):
    """Per-pair ORPO odds-ratio terms (to be subtracted, times beta, from the chosen NLL)
    and the rewards beta * average log-prob, as in the ORPO paper and TRL."""
    import torch.nn.functional as F

    log_odds = (chosen_avg - rejected_avg) - (_log1mexp(chosen_avg) - _log1mexp(rejected_avg))
    return beta * F.logsigmoid(log_odds), beta * chosen_avg.detach(), beta * rejected_avg.detach()


# ---------------------------------------------------------------- the objective

class PreferenceObjective:
    """Computes one optimizer step's preference loss over grad_accum micro-batches
    (calling backward on each) and the reward statistics of the step."""

    def __init__(self, cfg, model, pad_id: int, attn: str, device: str, world: distributed.World | None = None,
                 sharded: bool = False):
        self.cfg, self.model, self.pad_id, self.attn, self.device = cfg, model, pad_id, attn, device
        self.world = world or distributed.world()
        self.sharded = sharded  # FSDP2: every rank runs every forward
        self.p = cfg.preference
        self.objective = cfg.train.objective
        with_reference = self.objective in ("dpo", "kto")  # ORPO needs none
        self.uses_adapter_reference = with_reference and cfg.method != "full"
        self.needs_cached_reference = with_reference and cfg.method == "full"

    # ---- reference
    def reference_logps(self, batch: dict):
        """Reference (chosen, rejected) log-prob sums of a batch."""
        import torch

        if batch["ref_logps"] is not None:
            c, r = batch["ref_logps"]
            dev = batch["labels"].device
            return torch.tensor(c, dtype=torch.float32, device=dev), torch.tensor(r, dtype=torch.float32, device=dev)
        with torch.no_grad(), self.model.disable_adapter():
            sums, _ = sequence_logps(self.model, batch)
        return split_pairs(sums)

    def cache_reference(self, run_dir: Path, splits: dict[str, list[dict]], emit=None) -> None:
        """Full fine-tuning: reference log-probs of every pair, computed once with the
        weights as loaded (before any resume loads trained ones) and kept in the run dir."""
        import torch

        path = Path(run_dir) / REFERENCE_FILE
        key = _items_key(splits)
        saved = None
        if self.world.is_main and path.exists():
            try:
                saved = json.loads(path.read_text())
            except ValueError:
                saved = None
        if not saved or saved.get("key") != key:
            saved = None
        saved = self.world.broadcast_object(saved)  # rank 0's file: one directory, whatever the nodes
        if saved is None:  # computed by every rank (FSDP2: the forwards are collective)
            if emit:
                emit("log", message=f"computing reference log-probs of {sum(map(len, splits.values()))} pairs "
                                    "(once; cached in the run directory)")
            saved = {"key": key}
            was_training = self.model.training
            self.model.eval()
            for name, items in splits.items():
                out = []
                for i in range(0, len(items), self.cfg.train.micro_batch_size):
                    chunk = items[i:i + self.cfg.train.micro_batch_size]
                    b = self._to_device(collate_pairs(chunk, self.cfg.data.packing, self.pad_id, self.attn))
                    with torch.no_grad():
                        sums, _ = sequence_logps(self.model, b)
                    out += sums.view(-1, 2).tolist()
                saved[name] = out
            self.model.train(was_training)
            from engine.config import atomic_write_text

            if self.world.is_main:
                atomic_write_text(path, json.dumps(saved))
        for name, items in splits.items():
            for it, (c, r) in zip(items, saved[name]):
                it["ref_chosen"], it["ref_rejected"] = c, r

    def _to_device(self, batch: dict) -> dict:
        import torch

        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    # ---- loss
    def batch_terms(self, batch: dict) -> dict:
        """Per-pair losses and rewards, and the chosen NLL sum, of one collated batch."""
        sums, counts = sequence_logps(self.model, batch)
        pc, pr = split_pairs(sums)
        nc, nr = split_pairs(counts)
        p = self.p
        if self.objective == "dpo":
            rc, rr = self.reference_logps(batch)
            losses, rew_c, rew_r = dpo_losses(pc, pr, rc, rr, p.beta, p.loss, p.label_smoothing, nc, nr)
            nll_weight = p.rpo_alpha
        elif self.objective == "orpo":
            ratio, rew_c, rew_r = orpo_losses(pc / nc.clamp(min=1), pr / nr.clamp(min=1), p.beta)
            losses = -ratio
            nll_weight = 1.0
        elif self.objective == "kto":
            # pc, pr: each row's answer and its KL sequence (see collate_pairs)
            import torch

            rc, rr = self.reference_logps(batch)
            good = torch.tensor(batch["kto_labels"], dtype=torch.bool, device=pc.device)
            losses, rewards, kl = kto_losses(pc, rc, pr, rr, good, p.beta, p.desirable_weight, p.undesirable_weight)
            good_f = good.float()
            return {"losses": losses, "rewards": rewards, "kto_labels": good, "kl": float(kl),
                    "nll_sum": -(pc * good_f).sum(), "chosen_tokens": float((nc * good_f).sum()), "nll_weight": 0.0,
                    "logps_chosen": pc.detach()[good], "logps_rejected": pc.detach()[~good]}
        else:
            raise ValueError(f"{self.objective} is not a pairwise objective")
        return {"losses": losses, "rewards_chosen": rew_c, "rewards_rejected": rew_r,
                "nll_sum": -pc.sum(), "chosen_tokens": float(nc.sum()), "nll_weight": nll_weight,
                "logps_chosen": pc.detach(), "logps_rejected": pr.detach()}

    def step(self, micro_batches: list[list[dict]], backward: bool = True) -> dict:
        """Loss of one step = mean over its pairs (all ranks') of the pair loss (+ weight *
        the chosen answers' NLL per token). `micro_batches` is this rank's share. Returns
        the step's loss, reward statistics and token counts (global; `my_tokens` this
        rank's)."""
        import torch

        batches = [self._to_device(collate_pairs(items, self.cfg.data.packing, self.pad_id, self.attn))
                   for items in micro_batches]
        n_pairs = sum(len(items) for items in micro_batches)
        chosen_tokens = float(sum(trained_count(it["labels"]) for items in micro_batches for it in items))
        n_pairs, chosen_tokens = self.world.all_reduce([n_pairs, chosen_tokens])  # before any backward
        n_pairs, chosen_tokens = max(int(n_pairs), 1), chosen_tokens or 1.0
        total, stats = 0.0, _Stats()
        nll_total = 0.0
        for b in batches:
            with torch.set_grad_enabled(backward):
                t = self.batch_terms(b)
                loss = t["losses"].sum() / n_pairs + t["nll_weight"] * t["nll_sum"] / chosen_tokens
            if backward:
                loss.backward()
            total += float(loss.detach())
            nll_total += float(t["nll_sum"].detach())
            stats.add(t)
        tokens = sum(b["num_tokens"] for b in batches)
        sums = self.world.all_reduce([total, nll_total, tokens, sum(b["num_trained"] for b in batches),
                                      *stats.sums()])
        total, nll_total, all_tokens, trained = sums[:4]
        out = {"loss": total, "nll": nll_total / chosen_tokens, "tokens": int(all_tokens), "trained": int(trained),
               "my_tokens": tokens, "pairs": n_pairs, "shape": tuple(batches[-1]["input_ids"].shape)}
        out.update(_Stats.summary(sums[4:], kto=self.objective == "kto"))
        return out

    def evaluate(self, items: list[dict]) -> dict | None:
        """Loss, chosen-answer perplexity and reward statistics over a split, in micro-batches."""
        import torch

        if not items:
            return None
        mbs = self.cfg.train.micro_batch_size
        starts = list(range(0, len(items), mbs))
        if not self.sharded:
            starts = starts[self.world.rank::self.world.world_size]  # this rank's share
        was_training = self.model.training
        self.model.eval()
        total, stats, nll, tokens = 0.0, _Stats(), 0.0, 0.0
        with torch.no_grad():
            for i in starts:
                b = self._to_device(collate_pairs(items[i:i + mbs], self.cfg.data.packing, self.pad_id, self.attn))
                t = self.batch_terms(b)
                total += float(t["losses"].sum())
                nll += float(t["nll_sum"])
                tokens += t["chosen_tokens"]
                stats.add(t)
        self.model.train(was_training)
        sums = [total, nll, tokens, *stats.sums()]
        if not self.sharded:  # FSDP2: every rank scored every pair
            sums = self.world.all_reduce(sums)
        total, nll, tokens = sums[:3]
        weight = {"dpo": self.p.rpo_alpha, "orpo": 1.0}.get(self.objective, 0.0)  # of the chosen NLL
        mean_nll = nll / max(tokens, 1.0)
        out = {"loss": total / len(items) + weight * mean_nll, "nll": mean_nll,
               "perplexity": math.exp(min(mean_nll, 50.0))}
        out.update(_Stats.summary(sums[3:], kto=self.objective == "kto"))
        return out


class _Stats:
    """Sums behind the reward statistics, as a flat list so several processes add theirs
    in one all_reduce: per pair, or for KTO per row (chosen = the rows labelled good,
    rejected = those labelled bad; accuracy = the share of rows whose reward has the sign
    of their label; kl = the mean over micro-batches of their KL estimate)."""

    KEYS = ("c", "r", "right", "n", "lc", "n_lc", "lr", "n_lr", "good", "n_good", "bad", "n_bad", "kl", "n_kl")

    def __init__(self):
        self.v = dict.fromkeys(self.KEYS, 0.0)

    def add(self, t: dict) -> None:
        v = self.v
        if "kto_labels" in t:
            for reward, good in zip(t["rewards"].tolist(), t["kto_labels"].tolist()):
                side = "good" if good else "bad"
                v[side] += reward
                v["n_" + side] += 1
                v["right"] += (reward > 0) if good else (reward < 0)
                v["n"] += 1
            v["kl"] += t["kl"]
            v["n_kl"] += 1
        else:
            chosen, rejected = t["rewards_chosen"].tolist(), t["rewards_rejected"].tolist()
            v["c"] += sum(chosen)
            v["r"] += sum(rejected)
            v["right"] += sum(1 for a, b in zip(chosen, rejected) if a > b)
            v["n"] += len(chosen)
        lc, lr = t["logps_chosen"].tolist(), t["logps_rejected"].tolist()
        v["lc"], v["n_lc"] = v["lc"] + sum(lc), v["n_lc"] + len(lc)
        v["lr"], v["n_lr"] = v["lr"] + sum(lr), v["n_lr"] + len(lr)

    def sums(self) -> list[float]:
        return [float(self.v[k]) for k in self.KEYS]

    @classmethod
    def summary(cls, sums: list[float], kto: bool) -> dict[str, float]:
        v = dict(zip(cls.KEYS, sums))

        def mean(key):
            return v[key] / v["n_" + key] if v["n_" + key] else 0.0

        out = {"reward_accuracy": v["right"] / max(v["n"], 1), "logps_chosen": mean("lc"),
               "logps_rejected": mean("lr")}
        if kto:
            out.update(rewards_chosen=mean("good"), rewards_rejected=mean("bad"),
                       reward_margin=mean("good") - mean("bad"), kl=mean("kl"))
        else:
            n = max(v["n"], 1)
            out.update(rewards_chosen=v["c"] / n, rewards_rejected=v["r"] / n, reward_margin=(v["c"] - v["r"]) / n)
        return out


def _items_key(splits: dict[str, list[dict]]) -> str:
    h = hashlib.sha256()
    for name in sorted(splits):
        h.update(name.encode())
        for it in splits[name]:
            h.update(json.dumps([[s["input_ids"], s["labels"]] for s in side_items(it)]).encode())
    return h.hexdigest()[:16]


def metric_fields(m: dict[str, Any]) -> dict[str, float]:
    """The reward statistics of a step or eval result, rounded for an event."""
    return {k: round(float(m[k]), 6) for k in REWARD_KEYS if k in m}
