"""The memory estimator: each term against numbers worked out by hand for a small Llama."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine import config as C
from engine import memory as M

# Round numbers: hidden 1024, 4 layers, 8 query heads of 128, 2 kv heads, vocab 32000.
H, I, L, NH, KV, HD, V = 1024, 4096, 4, 8, 2, 128, 32000
MODEL = {"model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
         "num_attention_heads": NH, "num_key_value_heads": KV, "vocab_size": V, "tie_word_embeddings": False}
QD, KVD = NH * HD, KV * HD  # 1024, 256

# Per layer: q 1024x1024, k 1024x256, v 1024x256, o 1024x1024, gate/up 1024x4096, down 4096x1024.
LINEAR_PER_LAYER = H * QD + 2 * H * KVD + QD * H + 3 * H * I
LINEAR = L * LINEAR_PER_LAYER
EMBED = 2 * V * H              # untied: embedding + lm_head
NORMS = H * (2 * L + 1)
N_PARAMS = LINEAR + EMBED + NORMS


def cfg(**sections) -> C.RunConfig:
    base = {"model": {"name_or_path": "x"}, "data": {"max_seq_len": 512, "packing": False},
            "train": {"micro_batch_size": 2, "gradient_checkpointing": True}}
    for k, v in sections.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            base[k] = v
    return C.from_dict(base)


def test_param_count_matches_hand_count():
    shape = M.ModelShape.from_config(MODEL)
    assert LINEAR_PER_LAYER == 1024 * 1024 * 2 + 2 * 1024 * 256 + 3 * 1024 * 4096
    assert shape.n_params() == N_PARAMS == 4 * 15204352 + 65536000 + 9216


def test_tied_embeddings_count_one_matrix():
    shape = M.ModelShape.from_config({**MODEL, "tie_word_embeddings": True})
    assert shape.n_params() == N_PARAMS - V * H


def test_lora_weights_are_bf16_model_plus_fp32_adapters_with_grads_and_adamw():
    e = M.estimate(cfg(method="lora"), MODEL)
    assert e.term("weights") == N_PARAMS * 2
    # all-linear, r=16: r*(in+out) per linear per layer.
    per_layer = 16 * ((H + QD) + 2 * (H + KVD) + (QD + H) + 2 * (H + I) + (I + H))
    assert e.trainable_params == L * per_layer
    # The engine keeps LoRA adapters fp32 (PEFT autocast): params, grads 4 B; AdamW states 2 x 4 B.
    assert e.term("lora_params") == e.trainable_params * 4
    assert e.term("gradients") == e.trainable_params * 4
    assert e.term("optimizer_states") == e.trainable_params * 8
    assert e.term("master_weights") == 0


def test_lora_target_list_counts_only_named_linears():
    e = M.estimate(cfg(lora={"r": 8, "target_modules": ["q_proj", "v_proj"]}), MODEL)
    assert e.trainable_params == L * 8 * ((H + QD) + (H + KVD))


def test_unknown_targets_are_noted_not_counted():
    e = M.estimate(cfg(lora={"target_modules": ["q_proj", "lm_head"]}), MODEL)
    assert e.trainable_params == L * 16 * (H + QD)
    assert any("lm_head" in n for n in e.notes)


def test_qlora_nf4_double_quant_weights():
    e = M.estimate(cfg(method="qlora"), MODEL)
    per = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit + 8-bit absmax/64 + fp32 scale per 256 blocks
    assert e.term("weights") == int(LINEAR * per) + (EMBED + NORMS) * 2
    # QLoRA adapters are fp32 master weights too, with fp32 AdamW states; autocast keeps a
    # bf16 copy of each for the step.
    assert e.term("lora_params") == e.trainable_params * 4
    assert e.term("optimizer_states") == e.trainable_params * 8
    assert e.term("autocast_copies") == e.trainable_params * 2
    assert e.term("dequant_buffer") == H * I * 2


def test_qlora_without_double_quant_stores_fp32_absmax():
    e = M.estimate(cfg(method="qlora", quant={"double_quant": False}), MODEL)
    assert e.term("weights") == int(LINEAR * (0.5 + 4 / 64)) + (EMBED + NORMS) * 2


def test_int8_weights_one_byte_plus_row_scales():
    e = M.estimate(cfg(method="qlora", quant={"bits": 8}), MODEL)
    rows = L * (QD + 2 * KVD + H + 2 * I + H)
    assert e.term("weights") == LINEAR + 4 * rows + (EMBED + NORMS) * 2


def test_full_finetuning_grads_and_adamw_for_every_param():
    e = M.estimate(cfg(method="full"), MODEL)
    assert e.trainable_params == N_PARAMS
    assert e.term("gradients") == N_PARAMS * 2
    assert e.term("optimizer_states") == N_PARAMS * 2 * 2  # torch AdamW: states take the param dtype
    fp32_states = M.estimate(cfg(method="full"), MODEL, assumptions=M.Assumptions(
        optimizer_state_dtype="float32", master_weights=True))
    assert fp32_states.term("optimizer_states") == N_PARAMS * 8
    assert fp32_states.term("master_weights") == N_PARAMS * 4


def test_adamw_8bit_states():
    e = M.estimate(cfg(train={"optimizer": "adamw_8bit"}), MODEL)
    assert e.term("optimizer_states") == int(e.trainable_params * 2 * (1 + 4 / 256))


def _hand_layer_bytes(b=2, r=16):
    """One block, LoRA on all seven linears, no dropout, adapters in the compute dtype."""
    norms = 2 * 4 * H                      # fp32 upcast kept by both RMSNorms
    inputs = b * (H + QD + H + I)          # shared inputs of qkv, o, gate/up, down
    lora_a = 7 * b * r                     # lora_A outputs
    attn = b * (QD + 2 * QD + QD) + 4 * NH  # q, k/v expanded to all heads, out, logsumexp
    swiglu = 3 * b * I
    return norms + inputs + lora_a + attn + swiglu


BF16_ADAPTERS = M.Assumptions(adapter_dtype="bfloat16")


def test_autocast_saves_adapter_activations_in_the_compute_dtype():
    """fp32 adapters under autocast save what bf16 adapters would; without autocast each
    LoRA layer keeps its own fp32 copy of its input."""
    c = cfg(lora={"dropout": 0.0})
    assert M.estimate(c, MODEL).term("activations") == M.estimate(c, MODEL, assumptions=BF16_ADAPTERS).term("activations")
    no_amp = M.estimate(c, MODEL, assumptions=M.Assumptions(autocast=False))
    widths = [H, H, H, QD, H, H, I]
    extra = sum(4 * w + 4 * 16 for w in widths) - 7 * 2 * 16 - 2 * (H + QD + H + I)  # one layer (checkpointing)
    assert no_amp.term("activations") - M.estimate(c, MODEL).term("activations") == 1024 * extra


def test_activations_with_checkpointing_keep_layer_inputs_plus_one_layer():
    c = cfg(lora={"dropout": 0.0})
    e = M.estimate(c, MODEL, assumptions=BF16_ADAPTERS)
    tokens = 2 * 512
    per_token = L * 2 * H + _hand_layer_bytes() + 2 * (2 * I + 2 * H) + 4 * H
    assert e.term("activations") == tokens * per_token


def test_activations_without_checkpointing_keep_every_layer():
    c = cfg(lora={"dropout": 0.0}, train={"gradient_checkpointing": False})
    e = M.estimate(c, MODEL, assumptions=BF16_ADAPTERS)
    per_token = L * _hand_layer_bytes() + 2 * (2 * I + 2 * H) + 4 * H
    assert e.term("activations") == 1024 * per_token
    assert e.term("activations") > M.estimate(cfg(lora={"dropout": 0.0}), MODEL,
                                              assumptions=BF16_ADAPTERS).term("activations")


def test_dropout_and_fp32_adapters_keep_a_copy_of_each_lora_input():
    no_drop = M.estimate(cfg(lora={"dropout": 0.0}), MODEL, assumptions=BF16_ADAPTERS)
    drop = M.estimate(cfg(lora={"dropout": 0.1}), MODEL, assumptions=BF16_ADAPTERS)
    # With dropout each of the 7 LoRA layers keeps its own input (b B) + a bool mask (1 B),
    # instead of the 4 shared inputs.
    widths = [H, H, H, QD, H, H, I]
    extra = sum(3 * w for w in widths) - 2 * (H + QD + H + I)
    assert drop.term("activations") - no_drop.term("activations") == 1024 * extra


def test_logits_chunked_bounded_by_chunk_unchunked_by_tokens():
    c = cfg(data={"max_seq_len": 4096}, train={"micro_batch_size": 2})
    chunked = M.estimate(c, MODEL)
    assert chunked.term("logits") == 2048 * V * (2 + 3 * 4) + 8192 * 2 * 2 * H
    full = M.estimate(c, MODEL, assumptions=M.Assumptions(chunked_logits=False))
    assert full.term("logits") == 8192 * V * (2 + 3 * 4)
    bf16_loss = M.estimate(c, MODEL, assumptions=M.Assumptions(chunked_logits=False, loss_upcast_fp32=False))
    assert bf16_loss.term("logits") == 8192 * V * (2 + 3 * 2)


def test_chunk_size_follows_the_engine():
    loss = pytest.importorskip("engine.train.loss")
    assert M.Assumptions().logits_chunk_tokens == loss.CHUNK_TOKENS
    assert M.Assumptions().logits_no_recompute_bytes == loss.NO_RECOMPUTE_BYTES


def test_small_logits_are_counted_whole():
    # 1024 tokens x 32000 x 4 B = 125 MiB of fp32 logits: one plain pass, no chunks
    small = M.estimate(cfg(lora={"dropout": 0.0}), MODEL)
    assert small.term("logits") == 1024 * V * (2 + 3 * 4) + 1024 * 2 * 2 * H


def test_attention_mask_only_where_a_route_builds_one():
    # Packed rows carry no mask; auto (torch's varlen kernel) and flash need none, and keep
    # k/v at their own head count.
    auto = M.estimate(cfg(data={"packing": True}), MODEL)
    assert auto.term("attention_mask") == 0
    # sdpa pinned: transformers builds one row of 2 x 512 = 1024 tokens' 1024^2 bool mask,
    # plus its bf16 bias kept by the one recomputed layer (checkpointing) or every layer.
    sdpa = {"attn_implementation": "sdpa"}
    packed = M.estimate(cfg(data={"packing": True}, model=sdpa), MODEL)
    assert packed.term("attention_mask") == 1024 * 1024 * (1 + 2)
    assert packed.term("activations") - auto.term("activations") == 1024 * 2 * 2 * (QD - KVD)  # k/v expanded
    no_ckpt = M.estimate(cfg(data={"packing": True}, train={"gradient_checkpointing": False}, model=sdpa), MODEL)
    assert no_ckpt.term("attention_mask") == 1024 * 1024 * (1 + 2 * L)
    rows = M.estimate(cfg(data={"packing": True}, train={"tokens_per_micro_batch": 4096}, model=sdpa), MODEL)
    assert rows.tokens_per_micro_batch == 4096 and rows.term("attention_mask") == 4096 * 4096 * 3
    padded = M.estimate(cfg(data={"packing": False}), MODEL)
    assert padded.term("attention_mask") == 2 * 512 * 512 * (1 + 2)
    flash = M.estimate(cfg(model={"attn_implementation": "flash_attention_2"}), MODEL)
    assert flash.term("attention_mask") == 0


def test_overheads_are_not_in_peak_allocated():
    e = M.estimate(cfg(data={"packing": True}), MODEL)
    assert e.term("cuda_context") == 500 * M.MiB
    assert e.total - e.peak_allocated == e.term("cuda_context") + e.term("fragmentation")
    assert e.term("fragmentation") == int(e.peak_allocated * 0.05)
    assert sum(b for _, b, _ in e.breakdown) == e.total
    assert all(note for _, _, note in e.breakdown)


def test_fits_uses_headroom():
    e = M.estimate(cfg(), MODEL)
    assert e.fits(int(e.total / 0.9) + 1)
    assert not e.fits(int(e.total / 0.9) - 1)
    assert e.fits(e.total, headroom=1.0)


def test_largest_fitting_batch_and_grad_accum_rebalance():
    c = cfg(train={"micro_batch_size": 2, "grad_accum": 8})
    gpu = 3 * M.GiB
    best = M.largest_fitting_batch(c, MODEL, gpu, 0.9)
    assert best and best >= 1

    def est(mbs):
        x = c.copy()
        x.train.micro_batch_size = mbs
        return M.estimate(x, MODEL)

    assert est(best).fits(gpu) and not est(best + 1).fits(gpu)
    assert M.largest_fitting_batch(c, MODEL, 100 * M.MiB) is None
    assert M.rebalance_grad_accum(2, 8, 4) == 4
    assert M.rebalance_grad_accum(2, 8, 32) == 1


def test_model_config_from_local_dir_and_clear_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(MODEL))
    assert M.load_model_config(str(tmp_path))["hidden_size"] == H
    assert M.load_model_config(str(tmp_path / "config.json"))["vocab_size"] == V
    with pytest.raises(M.ModelConfigError, match="no such directory"):
        M.load_model_config(str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(M.ModelConfigError, match="cannot read it as JSON"):
        M.load_model_config(str(bad))
    with pytest.raises(M.ModelConfigError, match="Llama-shaped"):
        M.estimate(cfg(), {"model_type": "gpt2", "n_embd": 768})


def test_hub_id_offline_says_so_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(M.ModelConfigError, match="no network"):
        M.load_model_config("some-org/some-model")


def test_importing_the_estimator_loads_no_torch():
    code = "import sys, engine.memory, engine.config_import, engine.memory_probe; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_detect_gpu_total_is_none_or_positive():
    total = M.detect_gpu_total()
    assert total is None or total > 0
