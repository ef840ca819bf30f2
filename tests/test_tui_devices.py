"""Several processes on the screen: event logs of 2- and 8-rank runs (written here with the
engine's EventWriter, in the schema the engine emits under torchrun) replayed through the
real Train screen, and the Config screen's devices field and effective batch."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine import config as C
from engine.events import EventWriter
from tui.app import FtwbApp
from tui.services.open_target import resolve
from tui.widgets.event_log import EventLog
from tui.widgets.gpu_pane import GpuPane
from pilot_helpers import wait_for  # noqa: E402

T0 = 1_700_000_000.0
GIB = 1 << 30


def write_run(root: Path, name: str, hosts: list[str], per_host: int, strategy: str = "ddp",
              steps: int = 20, cpu: bool = False) -> Path:
    """A finished run on len(hosts) x per_host ranks, one GPU each (or none: cpu)."""
    gpus_per_host = 0 if cpu else per_host
    d = root / name
    d.mkdir(parents=True)
    cfg = C.RunConfig()
    cfg.train.max_steps = steps
    cfg.output.name = name
    C.save(cfg, d / "config.yaml")
    (d / "engine.log").write_text("engine starting\n")
    ranks = []
    for h, host in enumerate(hosts):
        for i in range(per_host):
            ranks.append({"rank": len(ranks), "host": host, "device": f"cuda:{i}" if gpus_per_host else "cpu"})
    world = len(ranks)
    w = EventWriter(d / "events.jsonl")
    t = T0
    w.emit("hello", ts=t, pid=999999, versions={"torch": "2.x"}, config_hash=cfg.hash(), dataset_hash="abc",
           devices=[{"name": r["device"]} for r in ranks if r["host"] == hosts[0]], resumed_from_step=0,
           world_size=world, strategy=strategy, ranks=ranks)
    w.emit("phase", ts=t + 1, phase="training")
    for step in range(1, steps + 1):
        t += 1
        per_rank = [1000.0 + 10 * r + step for r in range(world)]
        w.emit("metric", ts=t, step=step, loss=2.0 * math.exp(-step / 10) + 0.5, lr=1e-4, grad_norm=1.0,
               tokens_per_s=sum(per_rank), ranks_tokens_per_s=per_rank, epoch=step / steps)
        w.emit("progress", ts=t, step=step, total_steps=steps, epoch=step / steps, tokens_seen=step * 4096,
               eta_s=steps - step)
        if step % 5 == 0:
            rank_mem = []
            for r in ranks:
                if gpus_per_host:
                    idx = int(r["device"].split(":")[1])
                    devs = [{"index": idx, "allocated": (10 + r["rank"]) * GIB, "reserved": (12 + r["rank"]) * GIB,
                             "peak": (14 + r["rank"]) * GIB, "total": 80 * GIB}]
                else:
                    devs = []
                rank_mem.append({"rank": r["rank"], "host": r["host"], "devices": devs,
                                 "process_rss": (1 + r["rank"]) * GIB})
            w.emit("memory", ts=t, devices=rank_mem[0]["devices"], process_rss=GIB, ranks=rank_mem)
    w.emit("done", ts=t + 1, status="completed", summary={"steps": steps})
    w.close()
    return d


async def _open(run: Path, size: tuple[int, int]):
    app = FtwbApp(resolve(None, attach=str(run)), theme="ftwb-dark", runs_dir=str(run.parent), sample_devices=False)
    return app


async def _settled(app, pilot) -> GpuPane:
    await wait_for(pilot, lambda: app.session is not None and app.session.state.finished, what="replay done")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "TrainScreen", what="the Train screen")
    app.screen.redraw(force=True)  # draws the whole state now, whatever the refresh timer did
    await wait_for(pilot, lambda: app.screen.query_one(GpuPane).content_region.width > 0, what="the pane laid out")
    return app.screen.query_one(GpuPane)


def _pane_lines(pane: GpuPane) -> list[str]:
    return pane.render().plain.splitlines()


async def test_two_gpu_ranks_show_one_gauge_each_and_per_rank_throughput(tmp_path):
    run = write_run(tmp_path, "ddp2", ["node-a"], 2)
    app = await _open(run, (120, 40))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _settled(app, pilot)
        lines = _pane_lines(pane)
        gauges = [ln for ln in lines if ln.startswith("rank ")]
        assert [g.split(" ", 6)[:6] for g in gauges] == [["rank", "0", "·", "node-a", "·", "cuda:0"],
                                                         ["rank", "1", "·", "node-a", "·", "cuda:1"]]
        # A 38-column pane with lines to spare: each label over its bar, reserved of the GPU's total.
        first = lines.index(gauges[0])
        assert lines[first + 1].rstrip().endswith("12.0/80.0 GiB") and "█" in lines[first + 1]
        assert lines[first + 3].rstrip().endswith("13.0/80.0 GiB")
        # the last step's numbers: 1020 and 1030 per rank, 2050 in all
        assert lines[0].startswith("tok/s 2,050 = r0 1,020 + r1 1,030"), lines[0]
        title = app.screen.query_one("#train-title").render().plain
        assert "2 processes · DDP" in title
        # The log drains on its own timer, not with the redraw.
        await wait_for(pilot, lambda: "2 processes · DDP: rank 0 node-a cuda:0, rank 1 node-a cuda:1" in
                       "\n".join(app.screen.query_one(EventLog).texts), what="the ranks line in the log")


async def test_cpu_ranks_show_one_rss_line_each(tmp_path):
    run = write_run(tmp_path, "gloo2", ["laptop"], 2, cpu=True)
    app = await _open(run, (120, 40))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _settled(app, pilot)
        lines = _pane_lines(pane)
        rss = [ln for ln in lines if ln.startswith("rank ")]
        assert len(rss) == 2
        assert rss[0].startswith("rank 0 · laptop · cpu") and rss[0].rstrip().endswith("RSS 1.0 GiB")
        assert rss[1].rstrip().endswith("RSS 2.0 GiB")


async def test_eight_gpus_on_two_nodes_fold_into_the_pane_at_80x24(tmp_path):
    run = write_run(tmp_path, "fsdp8", ["gpu-node-01", "gpu-node-02"], 4, strategy="fsdp2")
    app = await _open(run, (80, 24))
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _settled(app, pilot)
        lines = _pane_lines(pane)
        region = pane.content_region
        assert len(lines) <= region.height, (lines, region)
        assert all(len(ln) <= region.width for ln in lines), lines
        # every rank is on screen, with its share of its GPU
        text = "\n".join(lines)
        for r in range(8):
            assert f"r{r}:{r % 4} " in text, text
        assert f"{19 / 80:.0%}" in text  # rank 7: 19 GiB reserved of 80
        # 8 x 1020 + 10 x (0 + ... + 7); the per-rank list does not fit 30 columns: the slowest
        assert lines[0] == "tok/s 8,440 · slowest r0 1,020"
        title = app.screen.query_one("#train-title").render().plain
        assert "8 processes · FSDP2" in title


async def test_single_process_run_keeps_the_engine_memory_lines(tmp_path):
    """No world_size in hello, no ranks in memory: the pane is the single-device one."""
    d = tmp_path / "one"
    d.mkdir()
    C.save(C.RunConfig(), d / "config.yaml")
    w = EventWriter(d / "events.jsonl")
    w.emit("hello", ts=T0, pid=1, devices=[{"name": "cpu"}], resumed_from_step=0)
    w.emit("metric", ts=T0 + 1, step=1, loss=1.0, lr=1e-4, grad_norm=1.0, tokens_per_s=500.0)
    w.emit("memory", ts=T0 + 1, devices=[{"index": 0, "allocated": GIB, "reserved": 2 * GIB, "peak": GIB}])
    w.emit("done", ts=T0 + 2, status="completed", summary={})
    w.close()
    app = await _open(d, (120, 40))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _settled(app, pilot)
        assert pane.ranks is None
        text = pane.render().plain
        assert "engine dev0 alloc 1.0 GiB  res 2.0" in text and "rank " not in text and "tok/s" not in text
        assert "processes" not in app.screen.query_one("#train-title").render().plain


# ---------------------------------------------------------------- Config screen

def _config_app(tmp_path, cfg: C.RunConfig) -> FtwbApp:
    from tui.services.open_target import Target

    target = Target(config=cfg)
    target.mode = "config"
    return FtwbApp(target, theme="ftwb-256", runs_dir=str(tmp_path / "runs"), sample_devices=False)


async def _config_ready(pilot, app) -> None:
    await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfigScreen"
                   and getattr(app.screen, "_synced", None) is not None, what="config screen")
    await pilot.pause(0.2)


async def test_config_devices_field_sets_the_effective_batch_and_round_trips_to_yaml(tmp_path):
    from textual.widgets import Input

    from tui.widgets.config.batch_summary import BatchSummary

    data = tmp_path / "d.jsonl"
    data.write_text("".join('{"text": "%s"}\n' % ("x" * 40) for _ in range(1000)))
    cfg = C.from_dict({"data": {"path": str(data), "val_split": 0.1, "packing": False},
                       "train": {"micro_batch_size": 4, "grad_accum": 8, "epochs": 1}})
    app = _config_app(tmp_path, cfg)
    out = tmp_path / "multi.yaml"
    async with app.run_test(size=(120, 40)) as pilot:
        await _config_ready(pilot, app)
        screen = app.screen
        summary = screen.query_one(BatchSummary)
        await wait_for(pilot, lambda: getattr(summary, "steps", None) == 29, what="steps")  # 900 rows / 32
        devices = screen.query_one("#cfg-train--devices", Input)
        devices.value = "2"
        await wait_for(pilot, lambda: app.config.train.devices == 2 and summary.steps == 15, what="two devices")
        text = str(summary.render())
        assert "micro 4 × accum 8 × 2 devices = 64" in text, text
        assert summary.effective_batch == 64 and summary.steps == 15  # 225 micro-batches / 16
        assert "per device" in text and "DDP" in text
        assert app.config.train.devices == 2

        devices.value = "0, 2"  # GPU indices: two devices
        await wait_for(pilot, lambda: app.config.train.devices == [0, 2], what="devices [0, 2]")
        assert app.config.train.devices == [0, 2] and screen.valid
        assert "× 2 devices = 64" in str(summary.render())

        devices.value = "0"
        await wait_for(pilot, lambda: not screen.valid, what="devices 0 refused")
        assert "train.devices: 0 is out of range" in str(screen.row("train.devices").query_one(".field-error").render())

        devices.value = "[1]"  # one GPU, index 1: one device, the single-device line
        await wait_for(pilot, lambda: app.config.train.devices == [1], what="devices [1]")
        assert screen.valid and app.config.train.devices == [1]
        assert "effective batch 32 = 4 micro x 8 accum x 1 device" in str(summary.render())

        devices.value = "all"
        await wait_for(pilot, lambda: app.config.train.devices == "all", what="devices all")
        await app.workers.wait_for_complete()  # the GPU count (what "all" means here) is known
        assert screen.valid and app.config.train.devices == "all"
        if screen.gpu_count is None:  # no NVML GPU here: the engine would start one process
            assert "× all GPUs (none seen here: 1 process) = 32" in str(summary.render())
        elif screen.gpu_count == 1:
            assert "effective batch 32 = 4 micro x 8 accum x 1 device" in str(summary.render())
        else:
            assert f"× {screen.gpu_count} devices = {32 * screen.gpu_count}" in str(summary.render())

        devices.value = "0, 1, 2, 3"
        screen.query_one("#config-file", Input).value = str(out)
        await wait_for(pilot, lambda: app.config.train.devices == [0, 1, 2, 3], what="devices [0, 1, 2, 3]")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: out.exists(), what="saved")
        assert C.load(out).train.devices == [0, 1, 2, 3]

        # Load puts the list back into the field as a list ([1] would otherwise read as "1 device").
        edited = C.load(out)
        edited.train.devices = [3]
        C.save(edited, out)
        await _config_ready(pilot, app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: devices.value == "[3]", what="loaded")
        assert app.config.train.devices == [3] and screen.valid


# ---------------------------------------------------------------- ftwb runs and the lineage

def test_ftwb_runs_shows_the_process_count_of_multi_process_runs(tmp_path, capsys, monkeypatch):
    import json

    from tui.main import main

    write_run(tmp_path, "20260101-000000-ddp2", ["node-a"], 2)
    one = tmp_path / "20260101-000001-one"
    one.mkdir()
    C.save(C.RunConfig(), one / "config.yaml")
    w = EventWriter(one / "events.jsonl")
    w.emit("hello", ts=T0, pid=1, devices=[{"name": "cpu"}], resumed_from_step=0)
    w.emit("done", ts=T0 + 1, status="completed", summary={})
    w.close()
    assert main(["runs", "--json", "--runs-dir", str(tmp_path)]) == 0
    listed = {r["name"]: r["world_size"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {"20260101-000000-ddp2": 2, "20260101-000001-one": 1}
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    header = next(ln for ln in table.splitlines() if "status" in ln and " np " in ln)
    row = next(ln for ln in table.splitlines() if "ddp2" in ln)
    assert row[header.index(" np ") + 1:].split()[0] == "2"  # the count under its header
    assert all(len(ln) <= 80 for ln in table.splitlines())


def test_a_run_resumed_on_another_count_lists_the_new_count(tmp_path, capsys):
    import json

    from engine import rundir
    from tui.main import main

    run = write_run(tmp_path, "grow", ["node-a"], 2, steps=5)
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", ts=T0 + 100, pid=2, devices=[], resumed_from_step=5, world_size=4, strategy="fsdp2")
    w.close()
    assert main(["runs", "--json", "--runs-dir", str(tmp_path)]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["world_size"], listed["strategy"]) == (4, "fsdp2")
    keeper = rundir.SummaryKeeper(run)  # the engine's summary.json carries it too
    keeper.write()
    s = rundir.summarize(run)
    assert (s.world_size, s.strategy) == (4, "fsdp2")


def test_lineage_names_the_processes_of_the_run(tmp_path):
    from engine import rundir
    from tui.services.run_actions import Lineage
    from tui.widgets.runs.lineage_view import lineage_text

    run = write_run(tmp_path, "fsdp8", ["a", "b"], 4, strategy="fsdp2")
    text = lineage_text(Lineage(run=run, summary=rundir.summarize(run))).plain
    assert "8 processes (FSDP2)" in text


async def test_eight_local_gpus_of_a_one_process_run_fit_the_pane_at_80x24(tmp_path):
    """NVML's view of a box with 8 GPUs (the sample the sampler thread posts; NVML itself
    needs a driver): one line per GPU instead of three, within the pane."""
    from tui.services.gpu_probe import GpuSample, ProbeSnapshot

    run = write_run(tmp_path, "one-of-eight", ["box"], 1)
    app = await _open(run, (80, 24))
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await _settled(app, pilot)
        pane.set_ranks(None)  # the one-process view, whatever the log said
        gpus = [GpuSample(index=i, name="H100", mem_used=(i + 1) * 8 * GIB, mem_total=80 * GIB, util=90.0 + i,
                          temp=60.0, power=500.0, power_limit=700.0) for i in range(8)]
        pane.post_message(GpuPane.Sampled(ProbeSnapshot(gpus=gpus, util_history={i: [90.0] for i in range(8)})))
        await wait_for(pilot, lambda: "GPU7 " in pane.render().plain, what="the sample drawn")
        lines = _pane_lines(pane)
        region = pane.content_region
        assert len(lines) <= region.height and all(len(ln) <= region.width for ln in lines), (lines, region)
        # 6 lines for 8 GPUs: two a line with their memory, then the utilisation spread
        text = "\n".join(lines)
        for i in range(8):
            assert f"GPU{i} " in text and f" {(i + 1) * 10}%" in text, text
        assert lines[-1] == "memory used; util 90-97%"


@pytest.mark.gpu
def test_nvml_probe_lists_every_gpu_the_driver_has():
    """On a CUDA box: the sampler's probe sees every GPU (at least those torch sees), each
    with its memory, and the Config screen's count for train.devices: all agrees with torch."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from tui.services import config_estimate as E
    from tui.services.gpu_probe import GpuProbe

    probe = GpuProbe()
    try:
        snap = probe.sample()
    finally:
        probe.close()
    assert snap.no_gpu_reason is None
    assert len(snap.gpus) >= torch.cuda.device_count()
    assert [g.index for g in snap.gpus] == list(range(len(snap.gpus)))
    assert all(g.mem_total and g.mem_total > (1 << 30) and g.name for g in snap.gpus)
    assert E.detect_gpu_count() == torch.cuda.device_count()


def test_a_resume_on_another_number_of_processes_is_titled_and_relabels_the_run(tmp_path):
    from engine.events import read_all
    from tui.services.run_state import RunState

    run = write_run(tmp_path, "grow", ["node-a"], 2, steps=5)
    w = EventWriter(run / "events.jsonl")
    w.emit("hello", ts=T0 + 100, pid=2, devices=[], resumed_from_step=5, world_size=4, strategy="ddp",
           ranks=[{"rank": r, "host": "node-a", "device": f"cuda:{r}"} for r in range(4)])
    w.emit("warning", ts=T0 + 101, kind="world_size_changed", step=5, old=2, new=4,
           message="checkpoint-5 was trained on 2 process(es), this run has 4: the data position is kept")
    w.close()
    st = RunState(run)
    st.apply_many(read_all(run / "events.jsonl"))
    assert st.processes_label == "4 processes · DDP" and st.rank_memory == []  # the old ranks' gauges go
    _, alerts = st.drain()
    assert [a.title for a in alerts if a.kind == "world_size_changed"] == ["Resumed on another number of processes"]


def test_an_error_on_one_rank_names_the_rank_in_its_alert(tmp_path):
    from engine.events import read_all
    from tui.services.run_state import RunState

    run = write_run(tmp_path, "oom1", ["node-a"], 2, steps=3)
    w = EventWriter(run / "events.jsonl")
    w.emit("error", ts=T0 + 50, kind="oom", rank=1, device="cuda:1", batch_shape=[4, 512],
           message="out of memory on rank 1 (cuda:1) at step 4, batch [4, 512]", hint="lower train.micro_batch_size")
    w.close()
    st = RunState(run)
    st.apply_many(read_all(run / "events.jsonl"))
    _, alerts = st.drain()
    oom = [a for a in alerts if a.kind == "oom"]
    assert [a.title for a in oom] == ["Out of GPU memory on rank 1"] and "batch [4, 512]" in oom[0].message
