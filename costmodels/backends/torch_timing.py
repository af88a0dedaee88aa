"""The measured backend: each workload timed on this machine's CPU or a CUDA GPU with PyTorch.

``--backend torch --device cpu|cuda[:N] [--dtype ...] [--threads N] [--clock wall|cpu]``. The target is not a spec
but a ``DeviceTarget``: the device, the dtype, the thread count and what identifies the machine
(CPU model or GPU name, torch and cuDNN versions). It plays the spec's part in the pipeline: its
``name`` names the LUT, its ``content_hash`` (the device fingerprint) enters every cache key, so a
measurement from one machine or setting is never served for another.

What is timed is what the compressed model runs: the sub-convolution as an ``nn.Conv2d`` (no bias)
in the chosen dtype and PyTorch's default (contiguous) memory format, in inference mode, on an input
of the layer's size with its padding. A Timeloop problem has no padding (the input halo stands for
it); CNNs pad for "same" output, so the conv gets input ``P * stride`` and the padding that gives
``P`` outputs, and a problem that no such padding explains runs unpadded on its halo input.

How (``measure``): a warm-up, then ``torch.utils.benchmark.Timer`` times a fixed number of equal
blocks of runs (``benchmark_timer``); the median of the blocks' per-run times is the latency and
their inter-quartile range (IQR) the spread; ``--clock cpu`` reads the timing thread's CPU time
instead of the wall clock (one CPU thread only), which a shared machine disturbs far less. A try whose IQR exceeds ``max_spread`` of the median is repeated, at most ``max_tries`` times; past
that the steadiest try is kept and the workload is flagged ``noisy`` in the LUT, not hidden. Threads
are pinned (``torch.set_num_threads``) and recorded. On CUDA cuDNN autotuning is on and the timer
synchronises the device around every block.

Latency is kept in the pipeline's integer ``cycles`` as nanoseconds: the target's ``clock_hz`` is a
nominal 1 GHz timebase, so ``latency_s = cycles / clock_hz`` is the measured time. Energy is not
measured (0; left blank in the LUT). The timing state (threads, cuDNN, the warm device) belongs to
one process, so the backend says ``parallel = False`` and a sweep runs it serially in-process.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from costmodels.backends.base import BackendError, BackendUnavailable
from costmodels.errors import CostModelError
from costmodels.problems.workloads import Workload
from costmodels.timeloop.evaluation import Evaluation
from costmodels.timeloop.mapping import Mapping

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")
CLOCKS = {"wall": "wall-clock time (synchronised on CUDA)",
          "cpu": "CPU time of the timing thread (one thread: the latency, minus time the thread waited for a core)"}
TIMEBASE_HZ = 1e9            # cycles of a measured target are nanoseconds
MEMORY_FORMAT = "contiguous"
TIMING_METHOD = "torch.utils.benchmark Timer, 30 equal blocks; median of the blocks' means, IQR spread"

# (callable to time, minimum run time in s) -> per-run times in seconds, one per block
Timer = Callable[[Callable[[], Any], float], Sequence[float]]


# --- the target -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceTarget:
    """A local device as the pipeline's target. ``name``, ``clock_hz`` and ``content_hash`` are what
    sweeps, the cache, the LUT and the heat map read of a target."""

    device: str              # "cpu" or "cuda:N"
    dtype: str               # one of DTYPES
    threads: int             # torch intra-op threads, pinned while timing
    device_name: str         # CPU model or GPU name
    torch_version: str
    cudnn_version: str       # "none" on the CPU
    memory_format: str = MEMORY_FORMAT
    clock: str = "wall"      # one of CLOCKS: what the timer reads
    clock_hz: float = TIMEBASE_HZ
    description: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        device = self.device.replace(":", "")
        name = f"{device}-{self.dtype}-{self.threads}t" if device == "cpu" else f"{device}-{self.dtype}"
        return name if self.clock == "wall" else f"{name}-{self.clock}time"

    @property
    def fingerprint(self) -> str:
        """Everything that makes a measurement this machine's, as one line."""
        return (f"device={self.device};name={self.device_name};torch={self.torch_version};"
                f"cudnn={self.cudnn_version};threads={self.threads};dtype={self.dtype};"
                f"memory_format={self.memory_format}" + ("" if self.clock == "wall" else f";clock={self.clock}"))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.fingerprint.encode()).hexdigest()[:16]

    def provenance(self) -> tuple[tuple[str, str], ...]:
        """The LUT header's lines about the device."""
        return (("measured", "true"), ("device", self.device), ("device_name", self.device_name),
                ("dtype", self.dtype), ("threads", str(self.threads)), ("memory_format", self.memory_format),
                ("clock", CLOCKS[self.clock]),
                ("torch_version", self.torch_version), ("cudnn_version", self.cudnn_version),
                ("device_fingerprint", self.content_hash),
                ("cycles", "nanoseconds (a nominal 1 GHz timebase); latency_s is the measured median, or the "
                           "estimate in rows whose source is predicted"),
                ("timing", TIMING_METHOD))


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def device_target(device: str = "cpu", dtype: str = "float32", threads: int | None = None,
                  clock: str = "wall") -> DeviceTarget:
    """The target for ``--device``/``--dtype``/``--threads``/``--clock``; ``BackendUnavailable`` when
    the device is not here, ``CostModelError`` for a value that is not allowed."""
    if dtype not in DTYPES:
        raise CostModelError(f"--dtype '{dtype}' is not supported; allowed: {', '.join(DTYPES)}")
    if threads is not None and threads < 1:
        raise CostModelError(f"--threads must be >= 1, got {threads}")
    if clock not in CLOCKS:
        raise CostModelError(f"--clock '{clock}' is not supported; allowed: {', '.join(CLOCKS)}")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise CostModelError("--clock cpu reads the timing thread's CPU time, which is the latency only on the "
                             "CPU with --threads 1")
    import torch

    threads = threads or usable_cores()
    if device == "cpu":
        if dtype == "float16":
            raise CostModelError("--dtype float16 has no fast convolution on the CPU; use float32 or bfloat16")
        return DeviceTarget("cpu", dtype, threads, cpu_model(), torch.__version__, "none", clock=clock,
                            description=f"{cpu_model()}, {threads} threads, {dtype}, measured with torch "
                                        f"({clock} clock)")
    index = _cuda_index(device)
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device}: no CUDA GPU is usable here (torch {torch.__version__}, "
                                 f"CUDA build: {torch.version.cuda or 'none'})")
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    name = torch.cuda.get_device_name(index)
    cudnn = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"
    return DeviceTarget(f"cuda:{index}", dtype, threads, name, torch.__version__, cudnn,
                        description=f"{name}, {dtype}, measured with torch (cuDNN {cudnn})")


def _cuda_index(device: str) -> int:
    if device == "cuda":
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise CostModelError(f"--device '{device}' is not one of: cpu, cuda, cuda:N")
    return int(index)


# --- timing -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimingSettings:
    """How hard to try for a steady number; part of the cache key."""

    min_run_time_s: float = 0.1    # of one try, all its blocks together
    max_tries: int = 3
    max_spread: float = 0.05       # IQR / median above which a try counts as noisy
    warmup_runs: int = 5           # at least this many untimed runs first ...
    warmup_s: float = 0.02         # ... and at least this long (first runs pick kernels, fault pages in)

    @property
    def key(self) -> str:
        return (f"min_run_time={self.min_run_time_s:g};max_tries={self.max_tries};max_spread={self.max_spread:g};"
                f"warmup={self.warmup_runs}/{self.warmup_s:g}s")


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    samples: int     # blocks timed in the kept try
    tries: int       # tries made
    noisy: bool      # the spread stayed above max_spread in every try

    @property
    def spread(self) -> float:
        return self.iqr_s / self.median_s if self.median_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "iqr_s": self.iqr_s, "spread": self.spread, "samples": self.samples,
                "tries": self.tries, "noisy": self.noisy}


def median_iqr(times: Sequence[float]) -> tuple[float, float]:
    if not times:
        raise BackendError("the timer returned no samples")
    if len(times) == 1:
        return float(times[0]), 0.0
    quartiles = statistics.quantiles(times, n=4, method="inclusive")
    return float(statistics.median(times)), float(quartiles[2] - quartiles[0])


def measure(run: Callable[[], Any], settings: TimingSettings, timer: Timer) -> Timing:
    """Time ``run`` (already warm) with ``timer``: retry while the spread is above the bound, keep
    the steadiest try, flag it noisy when none was steady enough."""
    best: Timing | None = None
    for attempt in range(1, settings.max_tries + 1):
        times = list(timer(run, settings.min_run_time_s))
        median, iqr = median_iqr(times)
        if median <= 0:
            raise BackendError(f"the timer returned a non-positive median ({median:g} s)")
        current = Timing(median, iqr, len(times), attempt, noisy=iqr / median > settings.max_spread)
        if best is None or current.spread < best.spread:
            best = current
        if not current.noisy:
            break
    assert best is not None
    return Timing(best.median_s, best.iqr_s, best.samples, attempt, best.noisy)


def benchmark_timer(threads: int, clock: str = "wall", blocks: int = 30) -> Timer:
    """``torch.utils.benchmark.Timer`` with ``threads`` pinned (its default clock synchronises an
    accelerator around each block): ``blocks`` blocks of equal run counts, sized so they take about
    ``min_run_time_s`` together, each giving the mean time of its runs. A fixed number of blocks,
    unlike ``blocked_autorange`` (which ends after one block when a stall outlasts its run time),
    keeps the median and IQR meaningful on a busy machine. ``clock="cpu"``: the thread's CPU time
    (``time.thread_time``) instead of the wall clock."""
    def timer(run: Callable[[], Any], min_run_time_s: float) -> Sequence[float]:
        from torch.utils.benchmark import Timer as TorchTimer

        from torch.utils.benchmark.utils.timer import timer as synchronised_wall_clock

        read = time.thread_time if clock == "cpu" else synchronised_wall_clock
        clock_timer = TorchTimer(stmt="run()", globals={"run": run}, num_threads=threads, timer=read)
        probe = min(clock_timer.timeit(1).median for _ in range(3))
        number = max(1, int(min_run_time_s / blocks / max(probe, 1e-9)))
        deadline = time.monotonic() + 10 * min_run_time_s   # a stalled machine: stop early, with what there is
        times = []
        while len(times) < blocks and (len(times) < 5 or time.monotonic() < deadline):
            times.append(clock_timer.timeit(number).median)
        return times
    return timer


# --- what is timed ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvGeometry:
    """The ``nn.Conv2d`` that runs a workload: input size (H, W) and padding (H, W)."""

    input_size: tuple[int, int]
    padding: tuple[int, int]


def conv_geometry(workload: Workload) -> ConvGeometry:
    """"Same"-style padding for the workload's output (see the module doc); unpadded on the halo
    input when no such padding gives the workload's output size."""
    def axis(out: int, kernel: int, stride: int, dilation: int, halo: int) -> tuple[int, int]:
        size = out * stride
        pad = max(0, math.ceil((halo - size) / 2))
        if (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1 == out:
            return size, pad
        return halo, 0
    (h, ph), (w, pw) = (axis(workload.Q, workload.S, workload.Hstride, workload.Hdilation, workload.input_height),
                        axis(workload.P, workload.R, workload.Wstride, workload.Wdilation, workload.input_width))
    return ConvGeometry((h, w), (ph, pw))


def torch_dtype(name: str) -> "torch.dtype":
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def workload_conv(workload: Workload, target: DeviceTarget) -> tuple["torch.nn.Module", "torch.Tensor"]:
    """The module and input that run ``workload`` on the target."""
    import torch

    geometry = conv_geometry(workload)
    conv = torch.nn.Conv2d(workload.C, workload.M, (workload.S, workload.R), (workload.Hstride, workload.Wstride),
                           geometry.padding, (workload.Hdilation, workload.Wdilation), bias=False)
    dtype = torch_dtype(target.dtype)
    conv = conv.to(device=target.device, dtype=dtype).eval()
    x = torch.randn(workload.N, workload.C, *geometry.input_size, device=target.device, dtype=dtype)
    return conv, x


def _prepare_process(device: str, threads: int) -> None:
    """Pin threads and switch cuDNN autotuning on (cheap: done before every timing)."""
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def time_module(module: Callable[[Any], Any], x: Any, target: DeviceTarget, settings: TimingSettings,
                timer: Timer | None = None) -> Timing:
    """Warm up, then ``measure`` ``module(x)`` under ``torch.inference_mode``."""
    import torch

    _prepare_process(target.device, target.threads)
    timer = timer or benchmark_timer(target.threads, target.clock)
    with torch.inference_mode():   # thread-local; the timer runs in this thread
        start, runs = time.perf_counter(), 0
        while runs < settings.warmup_runs or time.perf_counter() - start < settings.warmup_s:
            module(x)   # first runs autotune (cuDNN), pick kernels and fault pages in
            runs += 1
        if target.device.startswith("cuda"):
            torch.cuda.synchronize(target.device)
        return measure(lambda: module(x), settings, timer)


# --- the backend --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeasuredEvaluation(Evaluation):
    """An evaluation whose latency was measured: cycles are nanoseconds, no levels, no mapping."""

    timing: Timing

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "timing": self.timing.to_dict()}


class TorchTimingBackend:
    """``--backend torch``: times each workload on ``target``; runs in the sweep's own process."""

    name = "torch"
    parallel = False

    def __init__(self, target: DeviceTarget, settings: TimingSettings = TimingSettings(), timer: Timer | None = None):
        self.target = target
        self.settings = settings
        self.timer = timer

    @property
    def version(self) -> str:
        return f"torch {self.target.torch_version}"

    @property
    def settings_key(self) -> str:
        return f"{self.settings.key};memory_format={self.target.memory_format}"

    def evaluate(self, workload: Workload, target: DeviceTarget) -> MeasuredEvaluation:
        if not isinstance(target, DeviceTarget):
            raise CostModelError(f"backend 'torch' measures a device, not the spec '{target.name}'; "
                                 f"drop --arch and give --device")
        try:
            conv, x = workload_conv(workload, target)
            timing = time_module(conv, x, target, self.settings, self.timer)
        except RuntimeError as exc:   # e.g. out of memory, or a dtype the device cannot run
            raise BackendError(f"torch on {target.device} failed on {workload.name}: {exc}") from None
        cycles = max(1, round(timing.median_s * target.clock_hz))
        return MeasuredEvaluation(workload_key=workload.key, cycles=cycles, energy_pj=0.0, macs=workload.macs,
                                  mac_energy_pj=0.0, utilization=0.0, levels=(), mapping=Mapping(()),
                                  backend=self.name, backend_version=self.version, timing=timing)

    def __repr__(self) -> str:
        return f"TorchTimingBackend({self.target.name!r})"


def busy_warning(target: DeviceTarget) -> str | None:
    """A warning when other processes already use the cores a wall-clock CPU timing needs: its
    threads then wait for each other and the timings inflate and scatter (often beyond what the
    noisy flag catches, since a steady stall has a small IQR)."""
    if not target.device == "cpu" or target.clock == "cpu" or not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    cores = usable_cores()
    if load + target.threads <= cores + 0.5:
        return None
    return (f"this machine is busy (load average {load:.1f} on {cores} cores): wall-clock timings with "
            f"{target.threads} thread(s) will be inflated and scattered; measure on an idle machine, or use "
            f"--threads 1 --clock cpu")


def device_lines() -> list[tuple[str, bool, str]]:
    """For ``costmodel doctor``: (name, usable, detail) of each device ``--backend torch`` can time."""
    try:
        import torch
    except ImportError as exc:
        return [("torch", False, f"torch is not importable ({exc}): --backend torch cannot run")]
    lines = [("cpu", True, f"{cpu_model()}; {usable_cores()} usable cores, torch uses "
                           f"{torch.get_num_threads()} threads by default (--threads N)")]
    if not torch.cuda.is_available():
        lines.append(("cuda", False, f"no CUDA GPU usable (torch {torch.__version__}, CUDA build: "
                                     f"{torch.version.cuda or 'none'})"))
        return lines
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        lines.append((f"cuda:{index}", True, f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute "
                                             f"capability {props.major}.{props.minor}, cuDNN {cudnn}"))
    return lines
