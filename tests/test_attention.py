"""The attention route check at engine start: a route that raises or lets packed examples
leak is refused with a warning naming it, the next one is tried, and the winner is the
route the model trains with. Kernels that are broken on purpose stand in for a GPU nobody
has tested; the reference they are held against is real sdpa on each example alone."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine import config as C  # noqa: E402
from engine.data.pack import collate, model_inputs  # noqa: E402
from engine.train import attention as A  # noqa: E402


def _model():
    from data_fixtures import tiny_llama

    m = tiny_llama(vocab_size=64)
    m.config.use_cache = False
    return m


def _leaky(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
    """Causal attention over the whole packed row: examples see each other."""
    gqa = key.shape[1] != query.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling,
                                                           enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def _broken(module, query, *a, **kw):
    raise RuntimeError("no kernel image is available for execution on the device")


@pytest.fixture
def routes():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    for name, fn in (("test_leaky", _leaky), ("test_broken", _broken)):
        AttentionInterface.register(name, fn)
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, lambda *a, **k: None)
    return ["test_broken", "test_leaky"]


def _events():
    evs = []
    return evs, lambda t, **f: evs.append((t, f))


def test_cpu_auto_picks_sdpa_after_checking_it():
    model, cfg = _model(), C.RunConfig()
    evs, emit = _events()
    assert A.choose(model, cfg, "cpu", torch.float32, emit=emit) == "sdpa"
    assert model.config._attn_implementation == "sdpa"
    (kind, ev), (log, line) = evs
    assert kind == "attention" and ev["route"] == "sdpa" and ev["probe_error"] < 1e-4
    assert log == "log" and line["message"].startswith("attention: sdpa")


def test_failing_and_leaking_routes_fall_back_with_a_warning(routes, monkeypatch):
    monkeypatch.setattr(A, "candidates", lambda device, dtype: (routes + ["sdpa"], ["ftwb_varlen: needs CUDA"]))
    model, cfg = _model(), C.RunConfig()
    evs, emit = _events()
    assert A.choose(model, cfg, "cpu", torch.float32, emit=emit) == "sdpa"
    warnings = [f for t, f in evs if t == "warning"]
    assert [w["route"] for w in warnings] == ["test_broken", "test_leaky"]
    assert all(w["kind"] == "attention_fallback" for w in warnings)
    assert "no kernel image" in warnings[0]["message"] and "trying 'test_leaky'" in warnings[0]["message"]
    assert "differ from the same examples run alone" in warnings[1]["message"]
    done = next(f for t, f in evs if t == "attention")
    assert len(done["rejected"]) == 2 and done["not_tried"]
    # the model really trains with the chosen route, and is otherwise left as it was
    assert model.config._attn_implementation == "sdpa"
    assert all(p.grad is None for p in model.parameters())


def test_the_probe_measures_a_leak_large_and_a_good_route_small(routes):
    model = _model()
    assert A.probe(model, "test_leaky", "cpu") > 0.05
    assert A.probe(model, "eager", "cpu") < 1e-4
    assert model.config._attn_implementation == "sdpa"


def test_a_pinned_route_that_fails_is_refused(routes):
    model, cfg = _model(), C.RunConfig()
    cfg.model.attn_implementation = "sdpa"
    import transformers.integrations.sdpa_attention as S
    from transformers import AttentionInterface

    real = S.sdpa_attention_forward
    AttentionInterface.register("sdpa", _leaky)  # what a bad kernel behind the pinned name would do
    try:
        with pytest.raises(A.AttentionError, match="set model.attn_implementation: auto"):
            A.choose(model, cfg, "cpu", torch.float32)
    finally:
        AttentionInterface.register("sdpa", real)


def test_unpacked_runs_skip_the_probe():
    model, cfg = _model(), C.RunConfig()
    cfg.data.packing = False
    evs, emit = _events()
    assert A.choose(model, cfg, "cpu", torch.float32, emit=emit) == "sdpa"
    assert evs[0][1]["reason"] == "data.packing is off"


def test_varlen_route_derives_boundaries_from_position_ids_when_not_given():
    """Callers that pass no cu_seq_lens (pack.model_inputs without a route) still isolate."""
    model = _model()
    A.register_varlen()
    model.set_attn_implementation(A.VARLEN)
    items = [{"input_ids": list(range(3, 3 + n)), "labels": list(range(3, 3 + n))} for n in (6, 9, 4)]
    b = collate(items, True, 0)
    with torch.no_grad():
        packed = model(**model_inputs(b)).logits[0]
        model.set_attn_implementation("sdpa")
        alone = torch.cat([model(input_ids=torch.tensor([it["input_ids"]])).logits[0] for it in items])
    assert torch.allclose(packed, alone, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_picks_torch_varlen_and_packed_rows_match_examples_alone():
    from data_fixtures import tiny_llama

    if A.varlen_available("cuda", torch.bfloat16):
        pytest.skip(A.varlen_available("cuda", torch.bfloat16))
    model = tiny_llama(vocab_size=64).to("cuda", torch.bfloat16)
    model.config.use_cache = False
    cfg = C.RunConfig()
    assert A.choose(model, cfg, "cuda", torch.bfloat16) == A.VARLEN
    rng = torch.Generator().manual_seed(0)
    items = []
    for n in (37, 120, 5, 64, 211):
        ids = torch.randint(3, 64, (n,), generator=rng).tolist()
        items.append({"input_ids": ids, "labels": ids})
    b = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in collate(items, True, 0, pin=True).items()}
    x = model.get_input_embeddings()(b["input_ids"]).detach().requires_grad_(True)
    kw = {k: v for k, v in model_inputs(b, A.VARLEN).items() if k not in ("input_ids", "labels")}
    h = model.model(inputs_embeds=x, **kw).last_hidden_state
    h.float().sum().backward()
    model.set_attn_implementation("sdpa")
    s = 0
    for it in items:
        n = len(it["input_ids"])
        xa = model.get_input_embeddings()(torch.tensor([it["input_ids"]], device="cuda")).detach().requires_grad_(True)
        ha = model.model(inputs_embeds=xa).last_hidden_state
        ha.float().sum().backward()
        assert A._rel(h[0, s:s + n].detach(), ha[0].detach()) < 2e-2
        assert A._rel(x.grad[0, s:s + n], xa.grad[0]) < 4e-2
        s += n
