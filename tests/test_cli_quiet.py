"""The headless CLI is quiet: `ftwb export --merge` and `ftwb eval` print ftwb's own lines
only, no library progress bars or warnings; the model card's snippet loads the real base
model (not the word "demo")."""
from __future__ import annotations

import pytest
from engine_helpers import ftwb

from eval_run import private_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return private_run(tmp_path_factory, "quiet-run")  # this module writes eval results / exports into it


def test_export_and_eval_print_no_library_noise(run_dir, tmp_path):
    from engine.demo import demo_model_dir

    out = tmp_path / "merged"
    res = ftwb("export", str(run_dir), "--merge", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and res.stdout.strip() == f"exported merged model to {out}"
    res = ftwb("export", str(run_dir), "--out", str(tmp_path / "adapter"))
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert f'from_pretrained("{demo_model_dir()}")' in card and 'from_pretrained("demo")' not in card
    res = ftwb("eval", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    for noise in ("Loading weights", "Warning", "warn(", "kernels", "it/s"):
        assert noise not in res.stderr
