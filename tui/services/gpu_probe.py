"""GPU and process sampling for the gauges, on its own thread.

NVML (pynvml, from nvidia-ml-py) is imported lazily; every field that fails is None
(shown as N/A). Without a driver the probe says why and samples the engine process's
CPU and RAM with psutil instead. Never raises out of the sampler.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

HISTORY = 120


@dataclass
class GpuSample:
    index: int
    name: str | None = None
    mem_used: int | None = None
    mem_total: int | None = None
    util: float | None = None      # percent
    temp: float | None = None      # degrees C
    power: float | None = None     # watts
    power_limit: float | None = None


@dataclass
class ProcSample:
    pid: int | None
    cpu: float | None = None       # percent of one core, summed over the engine's tree
    rss: int | None = None         # bytes
    ram_total: int | None = None


@dataclass
class ProbeSnapshot:
    gpus: list[GpuSample] = field(default_factory=list)
    no_gpu_reason: str | None = None
    proc: ProcSample | None = None
    util_history: dict[int, list[float]] = field(default_factory=dict)
    mem_history: dict[int, list[float]] = field(default_factory=dict)
    t: float = 0.0


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


class GpuProbe:
    def __init__(self) -> None:
        self._nvml = None
        self._handles: list = []
        self.no_gpu_reason: str | None = None
        self._util_hist: dict[int, deque] = {}
        self._mem_hist: dict[int, deque] = {}
        self._procs: dict[int, object] = {}
        self._init()

    def _init(self) -> None:
        try:
            import pynvml
        except Exception:
            self.no_gpu_reason = "No GPU monitoring: the nvidia-ml-py package (pynvml) is not installed."
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            # Every GPU the driver lists, also those of other jobs: one that cannot be
            # opened (lost, or held in a mode NVML refuses) is shown with N/A fields.
            self._handles = [_safe(pynvml.nvmlDeviceGetHandleByIndex, i) for i in range(count)]
        except Exception as e:
            name = type(e).__name__
            msg = str(e) or name
            self.no_gpu_reason = f"No GPU found (no NVIDIA driver: {msg})."
            return
        if not self._handles:
            self.no_gpu_reason = "No GPU found (NVML sees no devices)."
            return
        self._nvml = pynvml

    @property
    def has_gpu(self) -> bool:
        return self._nvml is not None

    def _gpu(self, i: int, h) -> GpuSample:
        n = self._nvml
        s = GpuSample(index=i)
        if h is None:
            return s
        name = _safe(n.nvmlDeviceGetName, h)
        s.name = name.decode() if isinstance(name, bytes) else name
        mem = _safe(n.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            s.mem_used, s.mem_total = int(mem.used), int(mem.total)
        util = _safe(n.nvmlDeviceGetUtilizationRates, h)
        s.util = float(util.gpu) if util is not None else None
        s.temp = _safe(n.nvmlDeviceGetTemperature, h, 0)  # NVML_TEMPERATURE_GPU
        p = _safe(n.nvmlDeviceGetPowerUsage, h)
        s.power = p / 1000.0 if p is not None else None
        lim = _safe(n.nvmlDeviceGetEnforcedPowerLimit, h)
        s.power_limit = lim / 1000.0 if lim is not None else None
        return s

    def _proc(self, pid: int | None) -> ProcSample:
        out = ProcSample(pid=pid)
        try:
            import psutil

            out.ram_total = psutil.virtual_memory().total
            if pid is None:
                return out
            root = self._procs.get(pid)
            if root is None:
                root = self._procs[pid] = psutil.Process(pid)
            tree = [root] + root.children(recursive=True)
            cpu = rss = 0.0
            for p in tree:
                known = self._procs.setdefault(p.pid, p)  # cpu_percent needs the same object twice
                cpu += _safe(known.cpu_percent) or 0.0
                mi = _safe(known.memory_info)
                rss += mi.rss if mi is not None else 0
            out.cpu, out.rss = cpu, int(rss)
        except Exception:
            pass
        return out

    def sample(self, pid: int | None = None) -> ProbeSnapshot:
        snap = ProbeSnapshot(no_gpu_reason=self.no_gpu_reason, t=time.time())
        if self._nvml is not None:
            for i, h in enumerate(self._handles):
                g = self._gpu(i, h)
                snap.gpus.append(g)
                uh = self._util_hist.setdefault(i, deque(maxlen=HISTORY))
                mh = self._mem_hist.setdefault(i, deque(maxlen=HISTORY))
                uh.append(g.util if g.util is not None else float("nan"))
                mh.append(100.0 * g.mem_used / g.mem_total if g.mem_used is not None and g.mem_total else float("nan"))
            snap.util_history = {i: list(d) for i, d in self._util_hist.items()}
            snap.mem_history = {i: list(d) for i, d in self._mem_hist.items()}
        snap.proc = self._proc(pid)
        return snap

    def close(self) -> None:
        if self._nvml is not None:
            _safe(self._nvml.nvmlShutdown)
            self._nvml = None


class Sampler:
    """Calls `on_sample(snapshot)` from its own thread about once a second.
    `pid_source()` names the engine process to watch (or None)."""

    def __init__(self, on_sample: Callable[[ProbeSnapshot], None],
                 pid_source: Callable[[], int | None] = lambda: None, interval: float = 1.0):
        self.on_sample = on_sample
        self.pid_source = pid_source
        self.interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ftwb-gpu-sampler", daemon=True)

    def start(self) -> "Sampler":
        self.thread.start()
        return self

    def _run(self) -> None:
        probe = GpuProbe()
        try:
            while not self._stop.is_set():
                try:
                    pid = self.pid_source()
                except Exception:
                    pid = None
                try:
                    self.on_sample(probe.sample(pid))
                except Exception:
                    pass
                self._stop.wait(self.interval)
        finally:
            probe.close()

    def stop(self) -> None:
        self._stop.set()
