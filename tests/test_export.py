"""Export of a real trained demo run: adapter for plain peft, merged model for plain
transformers (same logits), model card lineage, never overwriting a target."""
from __future__ import annotations

import json

import pytest

from engine import config as C
from engine import rundir
from engine_helpers import ftwb
from eval_run import private_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return private_run(tmp_path_factory, "export-run")  # this module writes exports into it


@pytest.fixture(scope="module")
def reference(run_dir):
    """Logits of base + the run's adapter in fp32, on a fixed prompt."""
    import torch

    from engine.evaluate.generate import encode_prompt, load_for_inference

    model, tok, cfg = load_for_inference(run_dir, device="cpu", dtype="float32")
    ids = torch.tensor([encode_prompt(tok, [{"role": "user", "content": "My Pulse Earbuds crackle. Order #B12345"}])])
    with torch.no_grad():
        return ids, model(input_ids=ids).logits, cfg


def test_adapter_export_loads_with_plain_peft_and_carries_a_model_card(run_dir, reference, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.export import export_run, read_exports
    from engine.train.model import resolve_model_path

    out = export_run(run_dir, tmp_path / "adapter")
    ids, want, cfg = reference
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.name_or_path), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(out)).eval()
    with torch.no_grad():
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert AutoTokenizer.from_pretrained(str(out)).chat_template
    card = (out / "README.md").read_text()
    data = json.loads((run_dir / rundir.DATA).read_text())
    assert data["content_hash"] in card and "Base model: `demo`" in card
    assert "```yaml" in card and f"learning_rate: {cfg.train.learning_rate}" in card
    assert "Status: completed" in card and f"Steps: {cfg.train.max_steps}" in card
    assert any(r["path"] == str(out) and r["merged"] is False for r in read_exports(run_dir))


def test_merged_export_gives_the_same_logits_with_plain_transformers(run_dir, reference, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.export import export_run, read_exports

    out = export_run(run_dir, tmp_path / "merged", merge=True)
    assert list(out.glob("*.safetensors")) and not (out / "adapter_config.json").exists()
    ids, want, _ = reference
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert "merged model" in (out / "README.md").read_text()
    assert any(r["path"] == str(out) and r["merged"] is True for r in read_exports(run_dir))


def test_export_into_an_existing_directory_refuses_unless_forced(run_dir, tmp_path):
    from engine.export import ExportError, export_run

    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_run(run_dir, target)
    assert (target / "keep.txt").read_text() == "mine"
    cli = ftwb("export", str(run_dir), "--out", str(target))
    assert cli.returncode == 1 and "already exists" in cli.stderr and "Traceback" not in cli.stderr
    assert (target / "keep.txt").exists()
    forced = ftwb("export", str(run_dir), "--out", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (target / "keep.txt").exists() and (target / "adapter_model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_default_export_goes_under_the_run_and_refuses_a_second_time(run_dir):
    out = ftwb("export", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert (run_dir / "export" / "adapter" / "adapter_config.json").exists()
    again = ftwb("export", str(run_dir))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_export_of_a_run_without_adapter_is_refused(tmp_path):
    from engine.export import ExportError, export_run

    C.save(C.RunConfig(), tmp_path / rundir.CONFIG)
    with pytest.raises(ExportError, match="no trained adapter"):
        export_run(tmp_path)
    cli = ftwb("export", str(tmp_path / "missing"))
    assert cli.returncode == 1 and "not a run directory" in cli.stderr


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="QLoRA needs a CUDA GPU")
def test_qlora_run_evaluates_on_4bit_and_merges_into_a_bf16_base(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.evaluate.evaluate import evaluate_run
    from engine.export import export_run
    from engine_helpers import only_run, write_config
    from eval_run import eval_test_config

    cfg = eval_test_config()
    cfg.method, cfg.train.max_steps = "qlora", 10
    res = ftwb("train", str(write_config(cfg, tmp_path / "q.yaml")), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-2000:]
    run = only_run(tmp_path / "runs")
    out = evaluate_run(run, max_samples=2, max_new_tokens=8)
    assert out["tuned"]["loss"] is not None and out["generated"] == 2
    merged = export_run(run, tmp_path / "merged", merge=True)
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    assert model.dtype == torch.bfloat16
    assert not any("4bit" in type(m).__name__.lower() for m in model.modules())
