"""The Config screen's auto-fit line: what auto-fit will do, and the last run's choice."""
import json

from engine import config as C
from tui.services.config_estimate import auto_fit_line


def test_auto_fit_line_says_the_setting_and_the_newest_matching_runs_choice(tmp_path):
    cfg = C.RunConfig()
    assert "on a CUDA GPU the engine measures" in auto_fit_line(cfg, tmp_path)
    for name, model, tokens in (("20260101-000000-a", cfg.model.name_or_path, 8192),
                                ("20260102-000000-b", "other-model", 4096)):
        run = tmp_path / name
        run.mkdir()
        other = cfg.copy()
        other.model.name_or_path = model
        (run / "config.yaml").write_text(other.to_yaml())
        (run / "auto_fit.json").write_text(json.dumps({"tokens_per_micro_batch": tokens, "grad_accum": 2,
                                                       "gradient_checkpointing": False}))
    line = auto_fit_line(cfg, tmp_path)
    assert "last choice (20260101-000000-a): 8192 tokens/micro-batch, checkpointing off, grad_accum 2" in line
    cfg.train.auto_fit = "off"
    assert auto_fit_line(cfg, tmp_path).startswith("off: tokens per micro-batch and checkpointing as set")
