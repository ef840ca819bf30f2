"""The Config screen: bad values explain themselves under their field and block a launch,
presets change the right fields, save/load round-trips atomically, an Axolotl config
imports with its mapped and ignored keys, the memory bar says "will not fit" for an
8B model on a 24 GB target, and the effective batch and steps follow the form."""
from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select, Switch

from engine import config as C
from tui.app import FtwbApp
from tui.services import config_estimate as E
from tui.services import presets as P
from tui.services.open_target import Target, resolve
from tui.widgets.config.batch_summary import BatchSummary
from tui.widgets.config.memory_bar import MemoryBar
from pilot_helpers import wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
LLAMA_8B = FIX / "models" / "llama-8b"
AXOLOTL = FIX / "axolotl" / "llama-3-lora-1b.yml"



async def open_config(pilot, app) -> None:
    await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfigScreen"
                   and getattr(app.screen, "_synced", None) is not None)
    await pilot.pause(0.2)  # the editors' own mount-time messages


def _app(tmp_path, cfg: C.RunConfig | None = None) -> FtwbApp:
    target = Target(config=cfg) if cfg is not None else resolve(None)
    target.mode = "config"
    return FtwbApp(target, theme="ftwb-256", runs_dir=str(tmp_path / "runs"), sample_devices=False)


def _text(widget) -> str:
    return str(widget.render())


def _error_under(screen, path: str) -> str:
    return _text(screen.row(path).query_one(".field-error"))


BAD = [("lora.r", "0", "lora.r: 0 is out of range; it must be between 1 and 1024", "8"),
       ("train.learning_rate", "abc", "train.learning_rate: 'abc' is not allowed; expected a number", "1e-4"),
       ("lora.target_modules", "", "lora.target_modules: [] is not allowed", "q_proj, v_proj")]


async def test_bad_values_are_explained_under_the_field_and_block_the_launch(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        for path, value, expect, good in BAD:
            editor = screen.query_one("#cfg-" + path.replace(".", "--"), Input)
            editor.value = value
            await wait_for(pilot, lambda: expect in _error_under(screen, path), what=f"the error under {path}")
            assert not screen.valid and expect in app.config_problem
            assert "a run cannot start" in _text(screen.query_one("#config-status"))
            refusals = sum("Cannot start" in n.message for n in app._notifications)
            app.action_start_run()
            # The refusal is the sign the start was handled; only then is "no run" meaningful.
            await wait_for(pilot, lambda: sum("Cannot start" in n.message for n in app._notifications) > refusals,
                           what="the refusal to start")
            await pilot.pause(0.1)
            assert app.session is None and type(app.screen).__name__ == "ConfigScreen"
            assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
            # Fixing it clears the message and the block.
            editor.value = good
            await wait_for(pilot, lambda: _error_under(screen, path) == "" and screen.valid
                           and app.config_problem is None, what=f"{path} fixed")


async def test_unknown_choice_is_refused_with_the_allowed_ones(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        # A Select cannot hold an unknown choice; a loaded or typed dict can, so feed one through the form.
        row = screen.row("train.scheduler")
        row.value = lambda: "cosine_with_restarts"
        screen.validate_form("train.scheduler")
        msg = _error_under(screen, "train.scheduler")
        assert "'cosine_with_restarts' is not allowed" in msg and "'cosine', 'linear', 'constant'" in msg
        assert not screen.valid


async def test_cross_field_problem_shows_under_the_field_just_edited(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        screen.query_one("#cfg-data--val_split", Input).value = "0.5"
        screen.query_one("#cfg-data--test_split", Input).value = "0.45"
        await wait_for(pilot, lambda: "leaves almost nothing to train on" in _error_under(screen, "data.test_split"),
                       what="the cross-field error")
        assert not screen.valid
        screen.query_one("#cfg-data--test_split", Input).value = "0.1"
        await wait_for(pilot, lambda: screen.valid and app.config.data.test_split == 0.1, what="the split fixed")


@pytest.mark.parametrize("key", [p.key for p in P.PRESETS])
def test_presets_set_their_fields_and_keep_model_and_data(key):
    before = C.from_dict({"model": {"name_or_path": "/models/x"}, "data": {"path": "/data/y.jsonl"},
                          "train": {"max_steps": 7}})
    after = P.apply(before, key)
    assert after.model.name_or_path == "/models/x" and after.data.path == "/data/y.jsonl"
    d = after.to_dict()
    for path, value in P.BY_KEY[key].values.items():
        node = d
        for part in path.split("."):
            node = node[part]
        assert node == value, path


async def test_preset_picker_applies_qlora_then_smoke_in_the_form(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PresetPicker")
        await pilot.press("2")  # QLoRA
        await wait_for(pilot, lambda: app.config.method == "qlora")
        assert screen.query_one("#cfg-method", Select).value == "qlora"
        assert screen.query_one("#cfg-quant--bits", Select).value == 4
        await pilot.press("f2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "PresetPicker")
        await pilot.press("4")  # smoke test
        await wait_for(pilot, lambda: app.config.train.max_steps == 5)
        assert screen.query_one("#cfg-train--max_steps", Input).value == "5"
        assert screen.query_one("#cfg-eval--at_end", Switch).value is False
        assert app.config.method == "qlora" and app.config.model.name_or_path == "demo"


async def test_save_load_round_trip_is_atomic_and_asks_before_overwriting(tmp_path):
    app = _app(tmp_path)
    out = tmp_path / "cfgs" / "mine.yaml"
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        screen.query_one("#cfg-lora--r", Input).value = "32"
        screen.query_one("#config-file", Input).value = str(out)
        await wait_for(pilot, lambda: app.config.lora.r == 32, what="lora.r in the config")
        await pilot.press("ctrl+s")
        # The form came from the bundled demo, not from this file: saving there asks first.
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: out.exists())
        assert C.load(out).lora.r == 32
        assert [p.name for p in out.parent.iterdir()] == ["mine.yaml"]  # no temp file left

        # Another file that exists: a confirmation first; "n" leaves it alone.
        other = tmp_path / "cfgs" / "other.yaml"
        other.write_text("precious: true\n")
        screen.query_one("#config-file", Input).value = str(other)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("n")
        await open_config(pilot, app)
        assert other.read_text() == "precious: true\n"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: other.read_text() != "precious: true\n")
        assert C.load(other).lora.r == 32

        # Load brings the saved file back into the form.
        screen.query_one("#cfg-lora--r", Input).value = "4"
        screen.query_one("#config-file", Input).value = str(out)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: screen.query_one("#cfg-lora--r", Input).value == "32")
        assert app.config.lora.r == 32 and screen.valid


async def test_import_of_a_real_axolotl_config_shows_mapped_and_ignored_then_loads(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        await pilot.press("f3")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ImportDialog")
        dialog = app.screen
        dialog.query_one("#import-path", Input).value = str(AXOLOTL)
        dialog.query_one("#import-path", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.result is not None)
        report = dialog.report  # the table the dialog shows
        from rich.console import Console

        con = Console(width=200, record=True)
        con.print(report)
        shown = con.export_text()
        assert "Axolotl config" in shown and "mapped" in shown and "ignored" in shown
        assert "lora_r" in shown and "lora.r" in shown and "sequence_len" in shown
        assert "hub_model_id" not in shown or "ignored" in shown
        assert any(k == "sequence_len" for k, *_ in dialog.result.mapped)
        assert dialog.result.ignored  # e.g. output_dir, eval_sample_packing
        await pilot.press("enter")
        await open_config(pilot, app)
        assert screen.query_one("#cfg-model--name_or_path", Input).value == "NousResearch/Llama-3.2-1B"
        assert screen.query_one("#cfg-data--max_seq_len", Input).value == "2048"
        assert app.config.data.max_seq_len == 2048


async def test_import_of_a_missing_file_says_so_in_one_line(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        await pilot.press("f3")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ImportDialog")
        app.screen.read(str(tmp_path / "nope.yml"))
        msg = str(app.screen.query_one("#import-report").render())
        assert "file not found" in msg and "\n" not in msg.strip()


def _cfg_8b(**train) -> C.RunConfig:
    return C.from_dict({"model": {"name_or_path": str(LLAMA_8B)}, "method": "full",
                        "data": {"max_seq_len": 4096}, "train": {"micro_batch_size": 4, **train}})


async def test_memory_bar_says_will_not_fit_for_8b_on_a_24gb_target(tmp_path):
    app = _app(tmp_path, _cfg_8b())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        bar = screen.query_one(MemoryBar)
        await wait_for(pilot, lambda: bar.view is not None and bar.view.gpu_total == 80 * E.GB)
        screen.query_one("#gpu-target", Select).value = 24
        await wait_for(pilot, lambda: bar.view.gpu_total == 24 * E.GB)
        assert bar.verdict == "will not fit"
        assert "WILL NOT FIT" in str(bar.render()) and "24 GiB" in str(bar.render())
        labels = [label for _, label, _ in bar.view.segments]
        assert labels[0] == "weights" and "activations" in labels and "logits" in labels and "CUDA ctx" in labels
        # QLoRA with a short sequence fits the same card; the bar follows the form.
        screen.query_one("#cfg-method", Select).value = "qlora"
        screen.query_one("#cfg-data--max_seq_len", Input).value = "512"
        screen.query_one("#cfg-train--micro_batch_size", Input).value = "1"
        await wait_for(pilot, lambda: bar.verdict == "fits")
        assert "fits" in str(bar.render())


async def test_auto_fit_proposes_a_batch_that_fits_and_keeps_the_effective_batch(tmp_path):
    cfg = C.from_dict({"model": {"name_or_path": str(LLAMA_8B)}, "method": "qlora",
                       "data": {"max_seq_len": 2048}, "train": {"micro_batch_size": 32, "grad_accum": 2}})
    app = _app(tmp_path, cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        screen.query_one("#gpu-target", Select).value = 24
        await wait_for(pilot, lambda: screen.gpu_total == 24 * E.GB, what="the 24 GB target")
        await pilot.press("f6")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DiffView", timeout=20)
        rows = {p: (a, b) for p, a, b in app.screen.rows}
        new_mbs = rows["train.micro_batch_size"][1]
        assert new_mbs < 32
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.config.train.micro_batch_size == new_mbs)
        t = app.config.train
        assert abs(t.micro_batch_size * t.grad_accum - 64) <= new_mbs  # effective batch kept (rounded)
        from engine import memory as M

        assert M.estimate(app.config, E.ModelConfigs().get(str(LLAMA_8B))[0]).fits(24 * E.GB)


async def test_effective_batch_and_steps_update_as_you_type(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join('{"text": "%s"}\n' % ("x" * 40) for _ in range(1000)))
    cfg = C.from_dict({"data": {"path": str(data), "val_split": 0.1, "packing": False},
                       "train": {"micro_batch_size": 4, "grad_accum": 1, "epochs": 1}})
    app = _app(tmp_path, cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        summary = screen.query_one(BatchSummary)
        await wait_for(pilot, lambda: getattr(summary, "steps", None) == 225)  # 900 rows / 4
        screen.query_one("#cfg-train--grad_accum", Input).value = "5"
        await wait_for(pilot, lambda: summary.effective_batch == 20 and summary.steps == 45, what="batch 20, 45 steps")
        text = str(summary.render())
        assert "effective batch 20 = 4 micro x 5 accum x 1 device" in text and "≈ 45" in text
        assert "approximate" in text
        screen.query_one("#cfg-train--max_steps", Input).value = "12"
        await wait_for(pilot, lambda: summary.steps == 12, what="12 steps")
        assert "≈" not in str(summary.render())


async def test_diff_against_the_last_run_lists_the_changed_fields(tmp_path):
    run = tmp_path / "runs" / "20250101-000000-prev"
    run.mkdir(parents=True)
    C.save(C.from_dict({"lora": {"r": 8}}), run / "config.yaml")
    app = _app(tmp_path, C.RunConfig())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        app.screen.query_one("#cfg-train--learning_rate", Input).value = "0.0001"
        await wait_for(pilot, lambda: app.config.train.learning_rate == 1e-4, what="the new learning rate")
        await pilot.press("f4")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DiffView")
        rows = {p: (a, b) for p, a, b in app.screen.rows}
        assert rows == {"lora.r": (8, 16), "train.learning_rate": (2e-4, 1e-4)}


async def test_target_module_checkboxes_and_text_follow_each_other(tmp_path):
    app = _app(tmp_path, C.RunConfig())
    async with app.run_test(size=(160, 50)) as pilot:
        await open_config(pilot, app)
        screen = app.screen
        box = screen.query_one("#mod-gate_proj")
        assert box.value is True  # all-linear: every box ticked
        box.value = False
        await wait_for(pilot, lambda: app.config.lora.target_modules != "all-linear")
        assert "gate_proj" not in app.config.lora.target_modules and "q_proj" in app.config.lora.target_modules
        screen.query_one("#cfg-lora--target_modules", Input).value = "q_proj, v_proj"
        await wait_for(pilot, lambda: app.config.lora.target_modules == ["q_proj", "v_proj"]
                       and screen.query_one("#mod-v_proj").value and not screen.query_one("#mod-k_proj").value,
                       what="the boxes following the text")


@pytest.mark.slow  # the child process loads torch to look for CUDA
async def test_measure_without_cuda_says_it_needs_a_cuda_gpu(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the real measurement is covered by the estimate CLI tests")
    app = _app(tmp_path, C.RunConfig())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        bar = app.screen.query_one(MemoryBar)
        await pilot.press("f5")
        await wait_for(pilot, lambda: bar.measured is not None and not bar.measuring, timeout=60)
        assert "needs a CUDA GPU" in bar.measured.error


async def test_opening_the_form_validates_it_once_not_once_per_field(tmp_path, monkeypatch):
    # Every editor posts Changed as it mounts with its value; a whole-form validation for each
    # of them made the first visit to the Config screen take seconds.
    from tui.screens.config import ConfigScreen

    calls: list[str | None] = []
    real = ConfigScreen.validate_form

    def counted(self, changed=None):
        calls.append(changed)
        return real(self, changed)

    monkeypatch.setattr(ConfigScreen, "validate_form", counted)
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_config(pilot, app)
        await pilot.pause(0.5)
        n_rows = len(app.screen.query("FieldRow"))
        assert n_rows > 30 and len(calls) <= 2, (n_rows, calls)
        field = app.screen.query_one("#cfg-train--learning_rate", Input)
        field.value = "5e-4"  # a real change is still validated, and reaches the config
        await wait_for(pilot, lambda: app.config.train.learning_rate == 5e-4, what="the new rate in the config")
        assert "train.learning_rate" in calls
