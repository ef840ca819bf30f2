"""The demo trained by 2 CPU processes (gloo) through the real torchrun, from the real CLI."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from engine import rundir
from engine_helpers import (events_of, ftwb, last_metric_step, only_run, pid_running, small_demo_config,
                            wait_dead, wait_for, write_config)

pytestmark = pytest.mark.slow

STEPS = 10


def _config(path: Path, **train) -> Path:
    cfg = small_demo_config(**{"max_steps": STEPS, "eval_every": 5, "save_every": 3, "grad_accum": 2, **train})
    cfg.lora.dropout = 0.0  # the 1- and 2-process runs then differ only in summation order
    cfg.eval.sample_prompts = 0
    return write_config(cfg, path)


def _losses(run: Path, after: dict | None = None) -> dict[int, float]:
    evs = events_of(run)
    if after is not None:
        evs = evs[evs.index(after):]
    return {e["step"]: e["loss"] for e in evs if e["type"] == "metric"}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """One uninterrupted 2-process run and the 1-process run of the same global batch."""
    tmp = tmp_path_factory.mktemp("dist")
    res = ftwb("train", str(_config(tmp / "two.yaml")), "--devices", "2", "--runs-dir", str(tmp / "two"))
    one = ftwb("train", str(_config(tmp / "one.yaml", grad_accum=4)), "--runs-dir", str(tmp / "one"))
    return res, only_run(tmp / "two"), one, only_run(tmp / "one")


def _workers(agent: int) -> dict[int, int]:
    """rank -> pid of the torchrun agent's workers."""
    out = {}
    for task in Path(f"/proc/{agent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)
            if rank is not None:
                out[rank] = int(pid)
    return out


def test_two_processes_match_one_process_with_twice_the_accumulation(two):
    res, run, one_res, one = two
    assert res.returncode == 0, res.stderr[-3000:]
    assert one_res.returncode == 0, one_res.stderr[-3000:]
    a, b = _losses(run), _losses(one)
    assert sorted(a) == list(range(1, STEPS + 1)) == sorted(b)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-3), step
    assert a[STEPS] < 0.8 * a[1]
    evs, ref = events_of(run), events_of(one)
    tokens = [e["tokens_seen"] for e in evs if e["type"] == "progress"][-1]
    assert tokens == [e["tokens_seen"] for e in ref if e["type"] == "progress"][-1]  # the same examples


def test_only_rank_zero_writes_events_and_files(two):
    _, run, _, _ = two
    lines = (run / rundir.EVENTS).read_text().splitlines()
    evs = [json.loads(line) for line in lines]
    assert [e["seq"] for e in evs] == list(range(len(evs)))  # one writer: no line twice, none interleaved
    hellos = [e for e in evs if e["type"] == "hello"]
    assert len(hellos) == 1 and hellos[0]["world_size"] == 2 and hellos[0]["strategy"] == "ddp"
    assert [r["rank"] for r in hellos[0]["ranks"]] == [0, 1]
    assert all(r["device"] == "cpu" and r["host"] for r in hellos[0]["ranks"])
    mems = [e for e in evs if e["type"] == "memory"]
    assert mems and all([r["rank"] for r in m["ranks"]] == [0, 1] for m in mems)
    assert all(r["process_rss"] > 0 for r in mems[-1]["ranks"])
    metrics = [e for e in evs if e["type"] == "metric"]
    assert all(len(m["ranks_tokens_per_s"]) == 2 and m["tokens_per_s"] > 0 for m in metrics)
    # the global rate is over the slowest rank's step time, so it never exceeds the ranks' sum
    assert all(m["tokens_per_s"] <= sum(m["ranks_tokens_per_s"]) + 1 for m in metrics)
    assert [e["type"] for e in evs].count("done") == 1 and evs[-1]["status"] == "completed"
    assert not list(run.glob("rank-*.log"))  # no rank failed
    for c in rundir.checkpoints(run):
        assert {"rng.pt", "rng-rank1.pt", "adapter_model.safetensors"} <= {p.name for p in c.iterdir()}
    assert (run / rundir.ADAPTER / "adapter_config.json").exists()
    assert rundir.summarize(run).status == "completed"
    assert not (run / rundir.PID).exists()


def test_sigkill_of_the_group_then_resume_on_two_devices_and_sigterm_stops_every_rank(two, tmp_path):
    _, ref, _, _ = two
    reference = _losses(ref)
    res = ftwb("train", str(_config(tmp_path / "run.yaml")), "--devices", "2", "--runs-dir", str(tmp_path / "runs"),
               "--detach")
    assert res.returncode == 0, res.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    wait_for(lambda: rundir.checkpoints(run))  # checkpoint-3
    agent = rundir.read_pid(run)
    workers = _workers(agent)
    assert sorted(workers) == [0, 1]
    os.kill(agent, signal.SIGKILL)  # the workers go with it (they die with their agent)
    for pid in [agent, *workers.values()]:
        wait_dead(pid, 60)
    wait_for(lambda: not rundir.is_alive(run), 30)
    assert rundir.summarize(run).status == "crashed"

    # Resume (train.devices: 2 from the run's config); SIGTERM once it trains again.
    res = ftwb("train", "--resume", str(run), "--detach")
    assert res.returncode == 0, res.stderr[-3000:]
    hello = wait_for(lambda: [e for e in events_of(run) if e["type"] == "hello"][1:])[0]
    first = hello["resumed_from_step"]
    assert hello["world_size"] == 2 and first >= 3
    wait_for(lambda: last_metric_step(run) > first)
    agent = rundir.read_pid(run)
    os.kill(agent, signal.SIGTERM)
    wait_dead(agent, 120)
    evs = events_of(run)
    done = evs[-1]
    assert done["type"] == "done" and done["status"] == "stopped", done
    stopped_at = done["summary"]["steps"]
    assert stopped_at < STEPS
    assert any(p.name == f"checkpoint-{stopped_at}" for p in rundir.checkpoints(run))  # every rank saved it
    assert not list(run.glob("rank-*.log"))

    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
    hellos = [e for e in evs if e["type"] == "hello"]
    resumed = {}
    for h in hellos[1:]:
        resumed.update(_losses(run, after=h))
    assert sorted(resumed) == list(range(first + 1, STEPS + 1))
    for step, loss in resumed.items():  # exact resume, per rank RNG and data position included
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step


def _read_pipe(fd: int, follower, until, timeout: float = 300) -> list[dict]:
    import select

    got: list[dict] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            got += follower.feed(chunk)
            if until(got):
                return got
    raise TimeoutError(f"pipe events so far: {[e.get('type') for e in got]}")


def test_a_rank_that_dies_ends_the_run_with_an_error_naming_it(tmp_path):
    from engine import config as C
    from engine import events as ev
    from engine import launch

    cfg = C.load(_config(tmp_path / "run.yaml", max_steps=500, save_every=0, eval_every=0))
    launched = launch.start(cfg, runs_dir=str(tmp_path / "runs"), dist=launch.DistOptions(devices=2))
    run = launched.run_dir
    follower = ev.PipeFollower(run / rundir.EVENTS, launched.log_offset)
    try:
        # Rank 0's events reach the launcher's pipe (torchrun does not pass fds to its workers).
        got = _read_pipe(launched.event_fd, follower, lambda g: any(e["type"] == "metric" for e in g))
        assert launched.proc.poll() is None
        assert next(e for e in got if e["type"] == "hello")["world_size"] == 2
        agent = launched.proc.pid
        assert rundir.read_pid(run) == agent  # the pid file names the torchrun agent
        # Save-now reaches both ranks: they agree on the step and save together.
        os.kill(agent, signal.SIGUSR1)
        got += _read_pipe(launched.event_fd, follower, lambda g: any(e["type"] == "checkpoint" for e in g))
        victim = _workers(agent)[1]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        got += _read_pipe(launched.event_fd, follower, lambda g: any(e["type"] == "done" for e in g), 90)
        assert launched.proc.wait(90) == 1  # no hang: the others are torn down
        assert time.monotonic() - t0 < 90
    finally:
        os.close(launched.event_fd)
        if launched.proc.poll() is None:
            launched.proc.kill()
            launched.proc.wait()
    assert not pid_running(victim)
    err = next(e for e in got if e["type"] == "error")  # the agent's words reach the pipe too
    assert err["rank"] == 1 and "rank 1" in err["message"] and "SIGKILL" in err["message"]
    assert isinstance(err["step"], int) and err["step"] >= 1
    assert "log_tail" in err
    evs = events_of(run)
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "failed"
    assert [e["type"] for e in evs].count("done") == 1
    assert rundir.summarize(run).status == "failed"


def test_full_fine_tuning_shards_with_fsdp2_matches_one_process_and_resumes_exactly(tmp_path):
    def full(path: Path, **train) -> Path:
        cfg = small_demo_config(**{"max_steps": 4, "eval_every": 2, "save_every": 2, "grad_accum": 1,
                                   "learning_rate": 1e-4, **train})
        cfg.method = "full"
        cfg.eval.sample_prompts = 0
        return write_config(cfg, path)

    res = ftwb("train", str(full(tmp_path / "two.yaml")), "--devices", "2", "--runs-dir", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr[-3000:]
    one = ftwb("train", str(full(tmp_path / "one.yaml", grad_accum=2)), "--runs-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    run = only_run(tmp_path / "two")
    hello = next(e for e in events_of(run) if e["type"] == "hello")
    assert hello["strategy"] == "fsdp2" and hello["world_size"] == 2
    a, b = _losses(run), _losses(only_run(tmp_path / "one"))
    assert sorted(a) == [1, 2, 3, 4]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), step
    # The export is a plain save_pretrained directory of the whole model.
    import torch
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(run / rundir.ADAPTER)
    assert all(torch.isfinite(p).all() for p in tuned.parameters())
    # Resume from checkpoint-2 (full tensors, loaded back into the shards): steps 3-4 again, exactly.
    assert [p.name for p in rundir.checkpoints(run)] == ["checkpoint-2"]
    res = ftwb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    hellos = [e for e in events_of(run) if e["type"] == "hello"]
    again = _losses(run, after=hellos[1])
    assert sorted(again) == [3, 4]
    for step, loss in again.items():
        assert loss == pytest.approx(a[step], rel=1e-5, abs=1e-6), step


def test_out_of_memory_on_one_rank_is_reported_with_that_rank_and_its_batch_shape(tmp_path):
    cfg = _config(tmp_path / "run.yaml", max_steps=4, save_every=0, eval_every=0)
    res = ftwb("train", str(cfg), "--devices", "2", "--runs-dir", str(tmp_path / "runs"),
               env={"FTWB_INJECT_FAULT": "cpuoom@2:rank1"})
    assert res.returncode == 1, res.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    errors = [e for e in evs if e["type"] == "error"]
    assert len(errors) == 1, errors
    err = errors[0]
    assert err["kind"] == "oom" and err["rank"] == 1 and err["device"] == "cpu"
    assert len(err["batch_shape"]) == 2 and "rank 1" in err["message"]
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "failed"
    assert max(e["step"] for e in evs if e["type"] == "metric") == 1


def test_a_signal_that_reaches_one_rank_after_the_agreement_saves_at_the_next_step_on_every_rank(tmp_path):
    # Rank 1 gets SIGUSR1 right after step 2's agreement: acting on it at once would send that
    # rank alone into the checkpoint's collectives (every rank hangs); it waits for step 3's.
    cfg = _config(tmp_path / "run.yaml", max_steps=4, save_every=0, eval_every=0)
    res = ftwb("train", str(cfg), "--devices", "2", "--runs-dir", str(tmp_path / "runs"),
               env={"FTWB_INJECT_FAULT": "latesave@2:rank1"}, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    evs = events_of(only_run(tmp_path / "runs"))
    assert [e["step"] for e in evs if e["type"] == "checkpoint"] == [3]
    assert evs[-1]["type"] == "done" and evs[-1]["status"] == "completed"
