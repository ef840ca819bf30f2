"""Preference objectives on the tiny demo model: DPO and ORPO losses against TRL's own
trainers and against a direct computation, packed == unpacked log-probs, the reference
with the adapter disabled == the base model, and the data/objective refusals."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from engine import config as C
from engine.data import preference as DP
from engine.data.errors import DataError
from engine.data.template import IGNORE

torch = pytest.importorskip("torch")

PAIRS = 6


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def demo():
    """The demo model with a LoRA adapter whose B matrices are random (so the policy differs
    from the reference), its tokenizer, and a few real demo pairs tokenised by ftwb."""
    from engine.demo import demo_config
    from engine.data.load import load_rows
    from engine.data.normalize import normalize_rows
    from engine.data.template import ensure_chat_template
    from engine.train.model import load_model

    cfg = demo_config("dpo")
    cfg.lora.dropout = 0.0
    torch.manual_seed(0)
    model, tok = load_model(cfg, "cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    model.eval()
    ensure_chat_template(tok)
    loaded = load_rows(cfg.data.path)
    loaded.rows = loaded.rows[:PAIRS]
    examples, rows, _ = normalize_rows(loaded, "preference")
    items, stats = DP.tokenize_pairs(tok, examples, "assistant", 256, "truncate", rows=rows, cache=False)
    assert len(items) == PAIRS
    return SimpleNamespace(cfg=cfg, model=model, tok=tok, items=items, stats=stats)


def _objective(demo, objective="dpo", packing=True, **pref):
    from engine.train.preference import PreferenceObjective

    cfg = demo.cfg.copy()
    cfg.train.objective = objective
    cfg.data.packing = packing
    cfg.preference.rpo_alpha = 0.0  # plain DPO unless a test asks for the NLL term
    for k, v in pref.items():
        setattr(cfg.preference, k, v)
    return PreferenceObjective(cfg, demo.model, demo.tok.pad_token_id, "sdpa", "cpu")


def _direct_logps(model, ids, labels):
    """Sum of target log-probs of one sequence, run alone through the plain HF forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1)
    total = 0.0
    for t in range(len(ids) - 1):
        if labels[t + 1] != IGNORE:
            total += float(logp[t, labels[t + 1]])
    return total


def _trl_inputs(items):
    """TRL's DPO batch layout: all chosen rows, then all rejected rows, right-padded."""
    seqs = [(it["input_ids"], it["labels"]) for it in items] + \
           [(it["rejected_ids"], it["rejected_labels"]) for it in items]
    L = max(len(s) for s, _ in seqs)
    ids = torch.zeros(len(seqs), L, dtype=torch.long)
    att = torch.zeros(len(seqs), L, dtype=torch.long)
    comp = torch.zeros(len(seqs), L, dtype=torch.long)
    for b, (s, lab) in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        att[b, :len(s)] = 1
        comp[b, :len(s)] = torch.tensor([int(x != IGNORE) for x in lab])
    return {"input_ids": ids, "attention_mask": att, "completion_mask": comp}


@pytest.fixture(scope="module")
def trl_dpo(demo, tmp_path_factory):
    """A real TRL DPOTrainer around the same model; its _compute_loss is the reference."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from engine.train.model import load_model

    def make(loss_types, weights, beta=0.1):
        # Its own copy of the model with a fresh (zero) adapter, so TRL's reference is the
        # base model; then the same adapter weights as the model ftwb computes with.
        model, _ = load_model(demo.cfg, "cpu")
        args = DPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), beta=beta, loss_type=loss_types,
                         loss_weights=weights, report_to=[], use_cpu=True, per_device_train_batch_size=2)
        ds = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}] * 2)
        trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=demo.tok)
        adapter = {k: v for k, v in demo.model.state_dict().items() if "lora_" in k}
        missing = model.load_state_dict(adapter, strict=False)
        assert not missing.unexpected_keys
        model.eval()
        return trainer

    return make


# ---------------------------------------------------------------- data

def test_pairs_share_the_prompt_and_train_only_the_answers(demo):
    for it in demo.items:
        c, r = it["input_ids"], it["rejected_ids"]
        first_c = next(i for i, x in enumerate(it["labels"]) if x != IGNORE)
        first_r = next(i for i, x in enumerate(it["rejected_labels"]) if x != IGNORE)
        assert first_c == first_r and c[:first_c] == r[:first_r]  # the same prompt tokens, untrained
        answer = demo.tok.decode([x for x in it["labels"] if x != IGNORE])
        assert answer.lstrip().startswith("{") and "category" in answer


@pytest.mark.parametrize("objective,fmt,sft_on_chosen,expect", [
    ("dpo", "chat", False, ["chat data", "needs preference pairs", "train.objective: sft"]),
    ("orpo", "completion", False, ["completion data", "needs preference pairs"]),
    ("sft", "preference", False, ["preference pairs", "train.objective: dpo", "data.sft_on_chosen: true"]),
    ("sft", "kto", False, ["KTO rows", "labelled false", "train.objective: kto"]),
    ("dpo", "kto", False, ["KTO rows", "needs chosen/rejected pairs"]),
    ("kto", "chat", False, ["chat data", "labelled true/false", "train.objective: sft"]),
])
def test_objective_and_data_mismatches_are_refused_with_what_to_set(objective, fmt, sft_on_chosen, expect):
    msg = DP.objective_problem(objective, fmt, sft_on_chosen)
    assert msg is not None
    for part in expect:
        assert part in msg, (part, msg)


def test_matching_objectives_pass():
    assert DP.objective_problem("dpo", "preference") is None
    assert DP.objective_problem("orpo", "preference") is None
    assert DP.objective_problem("sft", "chat") is None
    assert DP.objective_problem("sft", "preference", sft_on_chosen=True) is None
    assert DP.objective_problem("kto", "kto") is None
    assert DP.objective_problem("kto", "preference") is None  # each pair: a good and a bad row


def test_prepare_refuses_sft_on_preference_data_and_says_so_when_asked_for(demo):
    from engine.data.prepare import prepare

    cfg = demo.cfg.copy()
    cfg.train.objective = "sft"
    with pytest.raises(DataError, match="data.sft_on_chosen: true"):
        prepare(cfg, demo.tok)
    cfg.data.sft_on_chosen = True
    events = []
    prepared = prepare(cfg, demo.tok, emit=lambda t, **f: events.append((t, f)))
    warn = [f for t, f in events if t == "warning" and f.get("kind") == "sft_on_chosen"]
    assert warn and "rejected answers are not used" in warn[0]["message"]
    assert "rejected_ids" not in prepared.train[0]


def test_prepare_tokenises_pairs_for_dpo(demo):
    from engine.data.prepare import prepare

    prepared = prepare(demo.cfg, demo.tok)
    assert prepared.fmt == "preference"
    it = prepared.train[0]
    assert {"input_ids", "labels", "rejected_ids", "rejected_labels", "row"} <= it.keys()
    assert it["input_ids"] != it["rejected_ids"]


# ---------------------------------------------------------------- log-probs

@pytest.mark.parametrize("route", ["sdpa", "eager"])
def test_packed_per_sequence_logps_equal_unpacked_and_each_sequence_alone(demo, route):
    from engine.train.preference import collate_pairs, sequence_logps

    demo.model.set_attn_implementation(route) if hasattr(demo.model, "set_attn_implementation") else None
    try:
        with torch.no_grad():
            packed, n_p = sequence_logps(demo.model, collate_pairs(demo.items, True, demo.tok.pad_token_id))
            padded, n_u = sequence_logps(demo.model, collate_pairs(demo.items, False, demo.tok.pad_token_id))
    finally:
        demo.model.set_attn_implementation("sdpa") if hasattr(demo.model, "set_attn_implementation") else None
    assert packed.shape == (2 * PAIRS,)
    assert torch.equal(n_p, n_u)
    assert torch.allclose(packed, padded, atol=1e-4, rtol=1e-5)
    alone = []
    for it in demo.items:
        alone += [_direct_logps(demo.model, it["input_ids"], it["labels"]),
                  _direct_logps(demo.model, it["rejected_ids"], it["rejected_labels"])]
    assert torch.allclose(packed, torch.tensor(alone), atol=1e-4, rtol=1e-5)


def test_reference_with_the_adapter_disabled_is_the_base_model_exactly(demo):
    from transformers import AutoModelForCausalLM

    from engine.demo import ensure_demo_model
    from engine.train.preference import collate_pairs, sequence_logps, split_pairs

    obj = _objective(demo)
    batch = collate_pairs(demo.items, True, demo.tok.pad_token_id)
    rc, rr = obj.reference_logps(batch)
    base = AutoModelForCausalLM.from_pretrained(ensure_demo_model(), attn_implementation="sdpa").eval()
    with torch.no_grad():
        bc, br = split_pairs(sequence_logps(base, batch)[0])
        pc, _ = split_pairs(sequence_logps(demo.model, batch)[0])
    assert torch.equal(rc, bc) and torch.equal(rr, br)
    assert (pc - bc).abs().max() > 1e-3  # and the adapter does change the policy


# ---------------------------------------------------------------- losses vs TRL and a direct computation

@pytest.mark.slow
@pytest.mark.parametrize("loss,trl_types,weights,rpo", [
    ("sigmoid", ["sigmoid"], None, 0.0),
    ("hinge", ["hinge"], None, 0.0),
    ("ipo", ["ipo"], None, 0.0),
    ("sigmoid", ["sigmoid", "sft"], [1.0, 0.5], 0.5),  # RPO: DPO + alpha * NLL of the chosen answers
])
def test_dpo_loss_equals_trl_dpotrainer_on_the_same_batch(demo, trl_dpo, loss, trl_types, weights, rpo):
    trainer = trl_dpo(trl_types, weights, beta=0.1)
    with torch.no_grad():
        expected = float(trainer._compute_loss(trainer.model, _trl_inputs(demo.items), False))
    metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    obj = _objective(demo, loss=loss, rpo_alpha=rpo, beta=0.1)
    with torch.no_grad():
        got = obj.step([demo.items[:3], demo.items[3:]], backward=False)  # two micro-batches
    assert got["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got["rewards_chosen"] == pytest.approx(metrics["rewards/chosen"], rel=1e-4, abs=1e-5)
    assert got["rewards_rejected"] == pytest.approx(metrics["rewards/rejected"], rel=1e-4, abs=1e-5)
    assert got["reward_margin"] == pytest.approx(metrics["rewards/margins"], rel=1e-4, abs=1e-5)
    assert got["reward_accuracy"] == pytest.approx(metrics["rewards/accuracies"])


def test_dpo_label_smoothing_matches_a_direct_computation(demo):
    beta, ls = 0.2, 0.1
    obj = _objective(demo, beta=beta, label_smoothing=ls)
    with torch.no_grad():
        got = obj.step([demo.items], backward=False)["loss"]
    base_logps, policy = [], []
    with torch.no_grad(), demo.model.disable_adapter():
        for it in demo.items:
            base_logps.append((_direct_logps(demo.model, it["input_ids"], it["labels"]),
                               _direct_logps(demo.model, it["rejected_ids"], it["rejected_labels"])))
    for it in demo.items:
        policy.append((_direct_logps(demo.model, it["input_ids"], it["labels"]),
                       _direct_logps(demo.model, it["rejected_ids"], it["rejected_labels"])))

    def logsig(x):
        return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))

    losses = []
    for (pc, pr), (rc, rr) in zip(policy, base_logps):
        d = (pc - rc) - (pr - rr)
        losses.append(-(1 - ls) * logsig(beta * d) - ls * logsig(-beta * d))
    assert got == pytest.approx(sum(losses) / len(losses), rel=1e-4, abs=1e-5)


def test_orpo_loss_equals_trl_odds_ratio_loss_plus_the_chosen_nll(demo):
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    beta = 0.25
    obj = _objective(demo, objective="orpo", beta=beta)
    with torch.no_grad():
        got = obj.step([demo.items], backward=False)
    avg_c, avg_r, nll_sum, n_tok = [], [], 0.0, 0
    for it in demo.items:
        k_c = DP.trained_count(it["labels"])
        k_r = DP.trained_count(it["rejected_labels"])
        lc = _direct_logps(demo.model, it["input_ids"], it["labels"])
        avg_c.append(lc / k_c)
        avg_r.append(_direct_logps(demo.model, it["rejected_ids"], it["rejected_labels"]) / k_r)
        nll_sum -= lc
        n_tok += k_c
    fake = SimpleNamespace(beta=beta, accelerator=SimpleNamespace(device="cpu"))
    losses, rew_c, rew_r, _, _ = ORPOTrainer.odds_ratio_loss(fake, torch.tensor(avg_c), torch.tensor(avg_r))
    expected = nll_sum / n_tok - float(losses.mean())
    assert got["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got["rewards_chosen"] == pytest.approx(float(rew_c.mean()), rel=1e-4, abs=1e-6)
    assert got["reward_margin"] == pytest.approx(float((rew_c - rew_r).mean()), rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_backward_reaches_only_the_adapter_and_a_step_raises_the_margin(demo):
    import copy

    model = copy.deepcopy(demo.model)
    model.train()
    from engine.train.preference import PreferenceObjective

    cfg = demo.cfg.copy()
    obj = PreferenceObjective(cfg, model, demo.tok.pad_token_id, "sdpa", "cpu")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = obj.evaluate(demo.items)
    for _ in range(5):
        obj.step([demo.items])
        opt.step()
        opt.zero_grad()
    after = obj.evaluate(demo.items)
    assert after["reward_margin"] > first["reward_margin"]
    assert after["loss"] < first["loss"]
    assert all(p.grad is None for n, p in model.named_parameters() if "lora" not in n)


def test_full_fine_tuning_caches_reference_logps_in_the_run_directory(demo, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.demo import ensure_demo_model
    from engine.train.preference import REFERENCE_FILE, PreferenceObjective, collate_pairs, sequence_logps

    cfg = demo.cfg.copy()
    cfg.method = "full"
    base = AutoModelForCausalLM.from_pretrained(ensure_demo_model(), attn_implementation="sdpa")
    obj = PreferenceObjective(cfg, base, demo.tok.pad_token_id, "sdpa", "cpu")
    assert obj.needs_cached_reference
    items = [dict(it) for it in demo.items]
    obj.cache_reference(tmp_path, {"train": items[:4], "val": items[4:]})
    saved = json.loads((tmp_path / REFERENCE_FILE).read_text())
    assert len(saved["train"]) == 4 and len(saved["val"]) == 2
    with torch.no_grad():
        direct = sequence_logps(base.eval(), collate_pairs(items, True, demo.tok.pad_token_id))[0].view(-1, 2)
    got = torch.tensor([[it["ref_chosen"], it["ref_rejected"]] for it in items])
    assert torch.allclose(got, direct, atol=1e-5)
    # A resumed run (weights already moved) reads the cache instead of recomputing.
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01)
    again = [dict(it) for it in demo.items]
    obj.cache_reference(tmp_path, {"train": again[:4], "val": again[4:]})
    assert [it["ref_chosen"] for it in again] == [it["ref_chosen"] for it in items]
    batch = collate_pairs(again[:2], True, demo.tok.pad_token_id)
    rc, _ = obj.reference_logps(batch)
    assert rc.tolist() == pytest.approx([items[0]["ref_chosen"], items[1]["ref_chosen"]])


def test_config_validates_preference_fields():
    with pytest.raises(C.ConfigError, match="train.objective"):
        C.from_dict({"train": {"objective": "ppo"}})
    with pytest.raises(C.ConfigError, match="preference.loss"):
        C.from_dict({"preference": {"loss": "kto_pair"}})
    with pytest.raises(C.ConfigError, match="preference.beta"):
        C.from_dict({"preference": {"beta": 0}})
    cfg = C.from_dict({"train": {"objective": "dpo"}, "preference": {"beta": 0.05, "rpo_alpha": 1}})
    assert cfg.preference.rpo_alpha == 1.0 and "preference.label_smoothing" in C.field_help()


def test_multi_turn_prompts_compare_only_the_final_answers(demo):
    ex = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
                       {"role": "user", "content": "and the ticket?"},
                       {"role": "assistant", "content": '{"category":"billing"}'}],
          "rejected": {"role": "assistant", "content": "Thanks for reaching out."}}
    items, _ = DP.tokenize_pairs(demo.tok, [ex], "assistant", 256, "truncate", cache=False)
    it = items[0]
    chosen = demo.tok.decode([x for x in it["labels"] if x != IGNORE])
    rejected = demo.tok.decode([x for x in it["rejected_labels"] if x != IGNORE])
    assert "hello there" not in chosen and chosen.startswith('{"category":"billing"}')
    assert "hello there" not in rejected and rejected.startswith("Thanks for reaching out.")
    assert DP.last_answer_only([IGNORE, 5, 6, IGNORE, 7, 8, IGNORE]) == [IGNORE] * 4 + [7, 8, IGNORE]


def test_kto_loss_matches_a_direct_computation_with_the_mismatched_kl_term(demo):
    beta, wd, wu = 0.2, 1.0, 1.5
    examples = [{"messages": [{"role": "user", "content": f"ticket {i}: my order is late"},
                              {"role": "assistant", "content": ans}], "label": good}
                for i, (ans, good) in enumerate([('{"category":"shipping"}', True), ("Thanks!", False),
                                                  ('{"category":"billing"}', True), ("We are sorry.", False)])]
    items, stats = DP.tokenize_labelled(demo.tok, examples, "assistant", 256, "truncate", cache=False)
    assert [it["kto_label"] for it in items] == [True, False, True, False] and stats["rows_out"] == 4
    # the KL sequence of row i is row i's prompt with row i-1's answer
    kl_answer = demo.tok.decode([x for x in items[1]["kl_labels"] if x != IGNORE])
    assert kl_answer.startswith('{"category":"shipping"}')
    obj = _objective(demo, objective="kto", beta=beta, desirable_weight=wd, undesirable_weight=wu)
    with torch.no_grad():
        got = obj.step([items], backward=False)
    pol, ref = [], []
    for it in items:
        pol.append((_direct_logps(demo.model, it["input_ids"], it["labels"]),
                    _direct_logps(demo.model, it["kl_ids"], it["kl_labels"])))
        with torch.no_grad(), demo.model.disable_adapter():
            ref.append((_direct_logps(demo.model, it["input_ids"], it["labels"]),
                        _direct_logps(demo.model, it["kl_ids"], it["kl_labels"])))
    kl = max(0.0, sum(p[1] - r[1] for p, r in zip(pol, ref)) / len(items))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    losses, rewards = [], []
    for it, p, r in zip(items, pol, ref):
        ratio = p[0] - r[0]
        rewards.append(beta * ratio)
        losses.append(wd * (1 - sig(beta * (ratio - kl))) if it["kto_label"] else wu * (1 - sig(beta * (kl - ratio))))
    assert got["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-4, abs=1e-5)
    assert got["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-5)
    assert got["rewards_chosen"] == pytest.approx((rewards[0] + rewards[2]) / 2, rel=1e-4, abs=1e-5)
    assert got["rewards_rejected"] == pytest.approx((rewards[1] + rewards[3]) / 2, rel=1e-4, abs=1e-5)
    right = (rewards[0] > 0) + (rewards[2] > 0) + (rewards[1] < 0) + (rewards[3] < 0)
    assert got["reward_accuracy"] == pytest.approx(right / 4)


def test_kto_on_preference_pairs_trains_each_pair_as_a_good_and_a_bad_row(demo):
    from engine.data.load import load_rows
    from engine.data.normalize import normalize_rows

    loaded = load_rows(demo.cfg.data.path)
    loaded.rows = loaded.rows[:3]
    examples, rows, _ = normalize_rows(loaded, "preference")
    items, _ = DP.tokenize_labelled(demo.tok, examples, "assistant", 256, "truncate", rows=rows, cache=False)
    assert [(it["row"], it["kto_label"]) for it in items] == [(0, True), (0, False), (1, True), (1, False),
                                                              (2, True), (2, False)]
    assert items[0]["input_ids"] == demo.items[0]["input_ids"]
    assert items[1]["input_ids"] == demo.items[0]["rejected_ids"]


@pytest.mark.parametrize("name", ["pref_strings.jsonl", "pref_shared_prompt.jsonl", "pref_sharegpt_ranking.json",
                                  "pref_hh.jsonl", "pref_implicit.jsonl", "dpo_en_demo.json"])
def test_every_preference_layout_tokenises_into_pairs_of_differing_answers(name):
    """Strings, message lists with a shared prompt, LLaMA-Factory ranking, HH full
    conversations (common prefix found), implicit prompts: all become the same pairs."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from engine.data.detect import detect_format
    from engine.data.load import load_rows
    from engine.data.normalize import normalize_rows
    from engine.data.template import ensure_chat_template
    from engine.demo import ensure_demo_model

    tok = AutoTokenizer.from_pretrained(ensure_demo_model())
    ensure_chat_template(tok)
    loaded = load_rows(str(Path(__file__).parent / "fixtures" / "formats" / name))
    fmt = detect_format(loaded.rows)[0]
    assert fmt == "preference"
    examples, rows, problems = normalize_rows(loaded, fmt)
    items, _ = DP.tokenize_pairs(tok, examples, "assistant", 4096, "truncate", rows=rows, cache=False)
    assert items and not problems
    for it in items:
        c = tok.decode([x for x in it["labels"] if x != IGNORE])
        r = tok.decode([x for x in it["rejected_labels"] if x != IGNORE])
        assert c.strip() and r.strip() and c != r
        n = next(i for i, x in enumerate(it["labels"]) if x != IGNORE)
        assert it["input_ids"][:n] == it["rejected_ids"][:n]  # the shared prompt
