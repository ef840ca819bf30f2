"""Pre-flight: every problem is one message with its fix, found before a model loads; through
`ftwb train` it exits 2 and leaves no run directory behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import config as C
from engine import preflight
from engine.config_import import import_config
from engine.demo import demo_config, demo_model_dir
from engine_helpers import ROOT, ftwb, write_config

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def _messages(cfg, **kw) -> list[str]:
    return [str(p) for p in preflight.check(cfg, **kw)]


@pytest.fixture(scope="module")
def demo_model() -> Path:
    from engine.demo import ensure_demo_model

    return ensure_demo_model()


def _refused(tmp_path: Path, cfg: C.RunConfig, *args: str, env: dict | None = None) -> str:
    """`ftwb train CONFIG` must exit 2 with a message and create no run directory."""
    runs = tmp_path / "runs"
    cfg_path = write_config(cfg, tmp_path / "run.yaml")
    r = ftwb("train", str(cfg_path), "--runs-dir", str(runs), *args, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("ftwb train: ")
    assert not runs.exists() or not any(runs.iterdir()), "a run directory was left behind"
    assert "run directory:" not in r.stderr  # the engine never started, so no model was loaded
    return r.stderr


# ---------------------------------------------------------------- the cases `ftwb train` must refuse

def test_offline_hub_id_is_refused_in_one_line(tmp_path):
    cfg = demo_config()
    cfg.model.name_or_path = "meta-llama/Llama-3.2-1B"  # not in any cache here
    err = _refused(tmp_path, cfg, env={"HF_ENDPOINT": "http://127.0.0.1:9"})  # a hub that does not answer
    assert "model.name_or_path: meta-llama/Llama-3.2-1B is not a local directory and not in the hub cache" in err
    assert "not reachable" in err and "huggingface-cli download meta-llama/Llama-3.2-1B" in err
    assert len(err.strip().splitlines()) == 1
    cfg_err = _refused(tmp_path, cfg, env=OFFLINE)
    assert "HF_HUB_OFFLINE is set" in cfg_err


def test_missing_data_file_is_refused(tmp_path):
    cfg = demo_config()
    cfg.data.path = str(tmp_path / "nowhere.jsonl")
    err = _refused(tmp_path, cfg)
    assert "nowhere.jsonl: file not found" in err


def test_txt_under_format_chat_names_the_detected_format(tmp_path):
    (tmp_path / "notes.txt").write_text("A first document.\n\nA second one.\n")
    cfg = demo_config()
    cfg.data.path, cfg.data.format = str(tmp_path / "notes.txt"), "chat"
    err = _refused(tmp_path, cfg)
    assert "data.format is chat" in err and "detected format: text" in err and "data.format: auto" in err


def test_unwritable_runs_dir_is_refused(tmp_path):
    cfg = demo_config()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(blocker / "runs"),
             cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "is a file, not a directory" in r.stderr and "--runs-dir" in r.stderr
    # a directory that cannot be written (permission bits; a read-only kernel file system for root)
    if os.geteuid() == 0:
        target = Path("/proc/ftwb-runs")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "runs"
    r = ftwb("train", str(tmp_path / "run.yaml"), "--runs-dir", str(target), cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "not writable" in r.stderr, r.stderr
    assert not target.exists()


def test_one_row_dataset_is_refused(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text((ROOT / "sample_data" / "tickets.jsonl").read_text().splitlines()[0] + "\n")
    cfg = demo_config()
    cfg.data.path = str(one)
    err = _refused(tmp_path, cfg)
    assert "only 1 usable row (of 1)" in err and "data.val_split: 0" in err
    # the same row with no validation or test asked for is used as meant
    cfg.data.val_split = cfg.data.test_split = 0.0
    assert not [m for m in _messages(cfg, deep=False) if "usable row" in m]


def test_several_problems_each_on_its_own_line(tmp_path):
    cfg = demo_config()
    cfg.model.name_or_path = str(tmp_path / "no-model")
    cfg.data.path = str(tmp_path / "no-data.jsonl")
    err = _refused(tmp_path, cfg)
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("ftwb train: ") for ln in lines)
    assert "model.name_or_path" in lines[0] and "no-data.jsonl" in lines[1]


# ---------------------------------------------------------------- the model

def test_local_model_without_tokenizer_or_weights(tmp_path, demo_model):
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(demo_model / "config.json", d)
    cfg = demo_config()
    cfg.model.name_or_path = str(d)
    (msg,) = _messages(cfg)
    assert "no weights" in msg and "no tokenizer files" in msg and "save_pretrained" in msg
    cfg.model.name_or_path = str(demo_model / "config.json")
    assert "is a file, not a model directory" in _messages(cfg)[0]


@pytest.mark.slow
def test_cached_hub_id_passes_with_its_tokenizer(tmp_path, demo_model):
    """A hub id found in the local hub cache is loadable offline: its tokenizer renders the rows."""
    repo = tmp_path / "hub" / "models--acme--tiny"
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(demo_model, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = ("import json; from engine import preflight; from engine.demo import demo_config\n"
            "cfg = demo_config(); cfg.model.name_or_path = 'acme/tiny'\n"
            "print(json.dumps([str(p) for p in preflight.check(cfg, runs_dir=%r)]))" % str(tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp_path / "hub"), **OFFLINE}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    (snap / "tokenizer.json").unlink()
    (snap / "tokenizer_config.json").unlink()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    (msg,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert "acme/tiny is in the hub cache without its tokenizer files" in msg


# ---------------------------------------------------------------- data and template

@pytest.mark.slow
def test_demo_and_imported_configs_pass(demo_model):
    assert _messages(demo_config()) == []
    for name in ("axolotl_chat_template_mapped.yml", "lf_sft_several.yaml", "lf_dpo.yaml", "axolotl_pretrain.yml"):
        cfg = import_config(CONFIGS / name).config
        cfg.model.name_or_path, cfg.model.chat_template, cfg.method = "demo", None, "lora"
        assert _messages(cfg) == [], name  # their columns, roles, splits and formats read as meant


def test_objective_that_does_not_fit_the_data():
    cfg = import_config(CONFIGS / "lf_dpo.yaml").config
    cfg.model.name_or_path, cfg.train.objective = "demo", "sft"
    (msg,) = _messages(cfg, deep=False)
    assert msg.startswith("train.objective") and "train.objective: dpo" in msg


def test_template_that_cannot_render_or_trains_nothing(demo_model):
    cfg = demo_config()
    cfg.model.chat_template = "{{ raise_exception('no system turns here') }}"
    (msg,) = _messages(cfg)
    assert msg.startswith("model.chat_template: the chat template cannot render the first rows")
    cfg.model.chat_template = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}" \
                              "{% endfor %}"
    (msg,) = _messages(cfg)
    assert msg.startswith("data.train_on: none of the first") and "data.train_on: all" in msg
    cfg.model.chat_template = "no-such-template-family"
    (msg,) = _messages(cfg)
    assert msg.startswith("model.chat_template:") and "no-such-template-family" in msg


def test_not_enough_room_for_the_checkpoints(tmp_path, demo_model):
    """A (config-only) 70B model fully fine-tuned needs terabytes for its checkpoints."""
    d = tmp_path / "big"
    shutil.copytree(demo_model, d)
    mc = json.loads((d / "config.json").read_text())
    mc.update(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
              num_key_value_heads=8, vocab_size=128256)
    (d / "config.json").write_text(json.dumps(mc))
    cfg = demo_config()
    cfg.model.name_or_path, cfg.method = str(d), "full"
    need = preflight.expected_bytes(cfg, d)
    from engine.memory import ModelShape

    params = ModelShape.from_config(mc).n_params()
    assert params > 60e9
    assert need >= (cfg.train.keep_checkpoints + 2) * params * 10  # bf16 weights + AdamW moments per checkpoint
    assert need > shutil.disk_usage(tmp_path).free
    msgs = _messages(cfg, runs_dir=str(tmp_path / "runs"), deep=False)
    assert any("free; this run needs about" in m and "train.keep_checkpoints" in m for m in msgs), msgs
    cfg.method = "lora"  # the adapter's checkpoints are small
    assert preflight.expected_bytes(cfg, d) < 20 * 1024 ** 3


def test_cheap_check_imports_no_heavy_library():
    code = ("import sys; from engine import preflight; from engine.demo import demo_config\n"
            "assert preflight.check(demo_config(), deep=False) == []\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_evals_and_saves_per_epoch_become_steps_in_a_real_run(tmp_path):
    """Imported `evals_per_epoch`/`saves_per_epoch` turn into step intervals once the
    engine knows an epoch's steps; the run evaluates and checkpoints at those steps."""
    from engine_helpers import events_of, only_run, small_demo_config

    rows = tmp_path / "tickets40.jsonl"  # a short epoch keeps the run short
    rows.write_text("\n".join((ROOT / "sample_data" / "tickets.jsonl").read_text().splitlines()[:40]) + "\n")
    cfg = small_demo_config(max_steps=0, epochs=1.0, evals_per_epoch=2, saves_per_epoch=1, eval_every=1000,
                            save_every=1000)
    cfg.data.path, cfg.data.packing, cfg.train.micro_batch_size = str(rows), False, 2
    r = ftwb("train", str(write_config(cfg, tmp_path / "run.yaml")), "--runs-dir", str(tmp_path / "runs"),
             timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    events = events_of(only_run(tmp_path / "runs"))
    per_epoch = next(e["total_steps"] for e in events if e["type"] == "progress")
    every = max(1, per_epoch // 2)
    logs = [e["message"] for e in events if e["type"] == "log"]
    assert f"train.eval_every: {every} steps (2 per epoch of {per_epoch} steps)" in logs
    assert f"train.save_every: {per_epoch} steps (1 per epoch of {per_epoch} steps)" in logs
    evals = [e["step"] for e in events if e["type"] == "eval"]
    assert every in evals and all(s % every == 0 or s == per_epoch for s in evals), evals


async def test_tui_start_key_refuses_what_preflight_rejects(tmp_path):
    """The Start key runs the same pre-flight (in a worker): a missing dataset is a notification,
    no session and no run directory."""
    from engine_helpers import small_demo_config
    from pilot_helpers import wait_for as wait_for_pilot, wait_for_screen
    from tui.app import FtwbApp
    from tui.services.open_target import Target

    cfg = small_demo_config()
    cfg.data.path = str(tmp_path / "gone.jsonl")
    app = FtwbApp(Target(config=cfg, mode="train"), theme="ftwb-dark", runs_dir=str(tmp_path / "runs"),
                  sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_screen(pilot, "TrainScreen")
        await pilot.press("s")
        await wait_for_pilot(pilot, lambda: any("Cannot start" in str(n.message) for n in app._notifications), 60)
        msg = next(str(n.message) for n in app._notifications if "Cannot start" in str(n.message))
        assert "gone.jsonl: file not found" in msg
        assert app.session is None
    assert not (tmp_path / "runs").exists()


async def test_tui_config_badge_never_says_valid_for_a_config_preflight_rejects(tmp_path):
    from engine_helpers import small_demo_config
    from pilot_helpers import wait_for as wait_for_pilot
    from textual.widgets import Static
    from tui.app import FtwbApp
    from tui.services.open_target import Target

    cfg = small_demo_config()
    cfg.data.path = str(tmp_path / "gone.jsonl")  # valid by the schema, refused by pre-flight
    app = FtwbApp(Target(config=cfg, mode="config"), theme="ftwb-dark", runs_dir=str(tmp_path / "runs"),
                  sample_devices=False)
    async with app.run_test(size=(120, 40)) as pilot:
        def badge() -> str:
            return str(app.screen.query_one("#config-status", Static).render())

        await wait_for_pilot(pilot, lambda: "✖ pre-flight" in badge(), 30, "the pre-flight badge")
        assert "gone.jsonl: file not found" in badge() and "✔ valid" not in badge()
