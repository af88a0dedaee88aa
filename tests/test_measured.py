"""The measured backend (``--backend torch``): timing statistics and noisy flags with an injected
timer, the convs it times, the device fingerprint in the cache key, serial sweeps, measured LUTs
(CSV header, noisy column, ``load_lut``), the additivity check, the CLI, and the CUDA path where a
GPU is present. Timing values themselves are never asserted, only structure and bookkeeping."""

import csv
import io
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from costmodels.backends import BACKEND_NAMES, Backend, BackendError, BackendUnavailable, get_backend
from costmodels.backends import torch_timing
from costmodels.backends.torch_timing import (
    MeasuredEvaluation,
    TimingSettings,
    TorchTimingBackend,
    conv_geometry,
    device_target,
    measure,
    median_iqr,
    workload_conv,
)
from costmodels.cli.main import main
from costmodels.errors import CostModelError
from costmodels.lut.additivity import additivity_check, candidate_module
from costmodels.lut.build import build_lut, lut_csv, lut_summary
from costmodels.lut.export import load_lut
from costmodels.network.layers import ConvLayer
from costmodels.network.zoo import zoo_layers
from costmodels.problems.candidates import Form, RankGrid, Tucker2Candidate, network_candidates
from costmodels.problems.workloads import Workload, network_workloads
from costmodels.sweep.cache import ResultsCache, cache_key
from costmodels.sweep.records import WorkloadCost
from costmodels.sweep.runner import run_sweep

FAST = TimingSettings(min_run_time_s=0.002, max_tries=3, max_spread=0.05, warmup_runs=1, warmup_s=0.0)
SMALL = Workload(C=4, M=8, R=3, S=3, N=1, P=8, Q=8)
POINTWISE = Workload(C=8, M=4, R=1, S=1, N=1, P=8, Q=8)


class ScriptedTimer:
    """A fake timer: runs the callable once (so the module really executes) and returns the next
    scripted list of per-block times; counts its calls."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.calls = 0

    def __call__(self, run, min_run_time_s):
        run()
        self.calls += 1
        return self.scripts[min(self.calls, len(self.scripts)) - 1]


STEADY = [1.0e-4] * 10 + [1.01e-4] * 10 + [0.99e-4] * 10
NOISY = [1.0e-4, 2.0e-4, 0.5e-4, 3.0e-4] * 5


def steady_timer(*_):
    return ScriptedTimer(STEADY)


@pytest.fixture(scope="module")
def cpu():
    return device_target("cpu", "float32", 1)


# --- timing statistics ---------------------------------------------------------------------------

def test_median_and_iqr():
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)
    assert median_iqr([2.0]) == (2.0, 0.0)
    with pytest.raises(BackendError, match="no samples"):
        median_iqr([])


def test_a_steady_timing_takes_one_try():
    timer = ScriptedTimer(STEADY)
    timing = measure(lambda: None, FAST, timer)
    assert timer.calls == 1 and timing.tries == 1 and not timing.noisy
    assert timing.median_s == pytest.approx(1.0e-4) and timing.samples == len(STEADY)
    assert timing.spread == pytest.approx(timing.iqr_s / timing.median_s)


def test_a_noisy_try_is_retried_and_the_steady_one_kept():
    timer = ScriptedTimer(NOISY, STEADY)
    timing = measure(lambda: None, FAST, timer)
    assert timer.calls == 2 and timing.tries == 2 and not timing.noisy
    assert timing.median_s == pytest.approx(1.0e-4)


def test_noise_that_persists_is_flagged_after_a_bounded_number_of_tries():
    steadier = [1.0e-4, 1.2e-4, 0.9e-4, 1.1e-4] * 5       # 20 % spread: still above 5 %
    timer = ScriptedTimer(NOISY, steadier, NOISY, NOISY)
    timing = measure(lambda: None, FAST, timer)
    assert timer.calls == FAST.max_tries and timing.tries == FAST.max_tries and timing.noisy
    median, iqr = median_iqr(steadier)
    assert (timing.median_s, timing.iqr_s) == (median, iqr)     # the steadiest try is kept, not the last


def test_a_non_positive_median_is_an_error():
    with pytest.raises(BackendError, match="non-positive"):
        measure(lambda: None, FAST, ScriptedTimer([0.0, 0.0]))


# --- what is timed ---------------------------------------------------------------------------------

@pytest.mark.parametrize("workload,size,padding", [
    (Workload(C=16, M=16, R=3, S=3, N=1, P=32, Q=32), (32, 32), (1, 1)),                  # 3x3, same
    (Workload(C=16, M=32, R=3, S=3, N=1, P=16, Q=16, Wstride=2, Hstride=2), (32, 32), (1, 1)),
    (Workload(C=16, M=32, R=1, S=1, N=1, P=16, Q=16, Wstride=2, Hstride=2), (32, 32), (0, 0)),
    (Workload(C=3, M=64, R=7, S=7, N=1, P=112, Q=112, Wstride=2, Hstride=2), (224, 224), (3, 3)),
    (Workload(C=3, M=6, R=5, S=5, N=1, P=28, Q=24), (24, 28), (2, 2)),                    # H != W
])
def test_conv_geometry_reproduces_the_output(workload, size, padding):
    geometry = conv_geometry(workload)
    assert (geometry.input_size, geometry.padding) == (size, padding)
    conv, x = workload_conv(workload, device_target("cpu", "float32", 1))
    assert tuple(conv(x).shape) == (workload.N, workload.M, workload.Q, workload.P)
    assert conv.bias is None and x.dtype == torch.float32


def test_cpu_backend_structure_and_bookkeeping(cpu):
    timer = ScriptedTimer(STEADY)
    backend = TorchTimingBackend(cpu, FAST, timer)
    assert isinstance(backend, Backend) and backend.parallel is False and "torch" in BACKEND_NAMES
    evaluation = backend.evaluate(SMALL, cpu)
    assert isinstance(evaluation, MeasuredEvaluation)
    assert evaluation.cycles == round(evaluation.timing.median_s * 1e9)     # nanoseconds at the 1 GHz timebase
    assert evaluation.latency_s(cpu.clock_hz) == pytest.approx(evaluation.timing.median_s, rel=1e-4)
    assert (evaluation.workload_key, evaluation.macs, evaluation.energy_pj) == (SMALL.key, SMALL.macs, 0.0)
    assert evaluation.backend == "torch" and evaluation.backend_version == f"torch {torch.__version__}"
    assert evaluation.to_dict()["timing"]["noisy"] is False and timer.calls == 1
    assert torch.get_num_threads() == cpu.threads                            # pinned


def test_cpu_backend_with_the_real_timer(cpu):
    evaluation = TorchTimingBackend(cpu, FAST).evaluate(POINTWISE, cpu)
    assert evaluation.cycles >= 1 and evaluation.timing.samples >= 5 and 1 <= evaluation.timing.tries <= 3
    assert evaluation.timing.iqr_s >= 0 and evaluation.timing.median_s > 0


def test_a_spec_is_refused(cpu):
    from costmodels.timeloop.spec import load_spec

    with pytest.raises(CostModelError, match="measures a device"):
        TorchTimingBackend(cpu, FAST, steady_timer()).evaluate(SMALL, load_spec("eyeriss"))


def test_device_and_dtype_are_checked():
    with pytest.raises(CostModelError, match="--dtype 'int8'.*float32, float16, bfloat16"):
        device_target("cpu", "int8")
    with pytest.raises(CostModelError, match="float16 has no fast convolution"):
        device_target("cpu", "float16")
    with pytest.raises(CostModelError, match="not one of: cpu, cuda, cuda:N"):
        device_target("tpu:0")


def test_bfloat16_on_the_cpu(cpu):
    target = device_target("cpu", "bfloat16", 1)
    evaluation = TorchTimingBackend(target, FAST, steady_timer()).evaluate(SMALL, target)
    assert evaluation.cycles > 0 and target.name == "cpu-bfloat16-1t"


# --- the device fingerprint in the cache key -------------------------------------------------------

def test_fingerprint_names_the_machine_and_settings(cpu):
    assert cpu.device_name and cpu.device_name in cpu.fingerprint and f"torch={torch.__version__}" in cpu.fingerprint
    assert "threads=1" in cpu.fingerprint and "dtype=float32" in cpu.fingerprint and "cudnn=none" in cpu.fingerprint
    header = dict(cpu.provenance())
    assert header["device_fingerprint"] == cpu.content_hash and header["device_name"] == cpu.device_name


def test_the_cache_key_changes_with_every_part_of_the_fingerprint(cpu):
    backend = TorchTimingBackend(cpu, FAST)
    others = [replace(cpu, device_name="Another CPU"), replace(cpu, threads=cpu.threads + 1),
              replace(cpu, dtype="bfloat16"), replace(cpu, torch_version="0.0.1"),
              replace(cpu, device="cuda:0", cudnn_version="90100")]
    keys = {cache_key(SMALL, target, backend) for target in [cpu, *others]}
    assert len(keys) == 1 + len(others)
    assert cache_key(SMALL, cpu, TorchTimingBackend(cpu, replace(FAST, max_spread=0.1))) != cache_key(SMALL, cpu, backend)
    assert cache_key(SMALL, replace(cpu, description="other words"), backend) == cache_key(SMALL, cpu, backend)


def test_simulated_backends_keep_their_cache_keys():
    # Recorded before the measured backend existed: the key of a spec-based evaluation must not move.
    key = cache_key(Workload(C=16, M=16, R=3, S=3, N=1, P=32, Q=32), SimpleNamespace(content_hash="abc123"),
                    SimpleNamespace(name="builtin", version="1.0 model x", settings_key="objective=spec-metrics;padding=no"))
    assert key == "3b85617003ee728b946bbdd76ff33ea999f28ff7cf971b69391e369f3143b5d8"


def test_a_measurement_is_served_from_the_cache_only_for_the_same_device(cpu, tmp_path):
    cache = ResultsCache(tmp_path / "cache.sqlite")
    timer = ScriptedTimer(STEADY)
    first = run_sweep([SMALL], cpu, TorchTimingBackend(cpu, FAST, timer), cache=cache)
    again = run_sweep([SMALL], cpu, TorchTimingBackend(cpu, FAST, timer), cache=cache)
    assert timer.calls == 1 and first == again
    other = replace(cpu, device_name="Another CPU")
    run_sweep([SMALL], other, TorchTimingBackend(other, FAST, timer), cache=cache)
    assert timer.calls == 2 and len(cache) == 2


# --- sweeps ----------------------------------------------------------------------------------------

def test_a_measuring_backend_runs_serially_in_this_process(cpu):
    timer = ScriptedTimer(STEADY)   # counts in this process only: a worker's calls would not show here
    backend = TorchTimingBackend(cpu, FAST, timer)
    results = run_sweep([SMALL, POINTWISE], cpu, backend, jobs=2)
    assert timer.calls == 2 and all(isinstance(r, WorkloadCost) for r in results.values())


def test_a_measuring_backend_refuses_a_dask_scheduler(cpu):
    with pytest.raises(CostModelError, match="cannot run on a Dask cluster"):
        run_sweep([SMALL], cpu, TorchTimingBackend(cpu, FAST, steady_timer()), scheduler="tcp://nowhere:1")


def test_noisy_flags_reach_the_sweep_result(cpu):
    results = run_sweep([SMALL], cpu, TorchTimingBackend(cpu, FAST, ScriptedTimer(NOISY)))
    cost = results[SMALL.key]
    assert cost.noisy and cost.spread > FAST.max_spread


# --- measured LUTs ---------------------------------------------------------------------------------

class NoisyFor:
    """A fake timer that is noisy for one workload (the one whose conv was built last)."""

    def __init__(self, workload):
        self.workload = workload
        self.current = None

    def __call__(self, run, min_run_time_s):
        return NOISY if self.current == self.workload else STEADY


@pytest.fixture
def measured_lut(cpu, monkeypatch):
    layers = [ConvLayer.from_input("conv", 8, 16, 3, 8, padding=1), ConvLayer.from_input("conv2", 16, 16, 3, 8,
                                                                                           padding=1)]
    workloads = network_workloads(network_candidates(layers, RankGrid(exclude_first=False)))
    timer = NoisyFor(Workload.from_layer(layers[0]))
    original = torch_timing.workload_conv

    def conv_seen(workload, target):
        timer.current = workload
        return original(workload, target)
    monkeypatch.setattr(torch_timing, "workload_conv", conv_seen)
    lut = build_lut("tiny", workloads, cpu, TorchTimingBackend(cpu, FAST, timer))
    return lut, workloads


def test_measured_lut_rows_flag_noise(measured_lut):
    lut, _ = measured_lut
    assert lut.measured and not lut.failures
    assert [(r.layer, r.form) for r in lut.rows if r.noisy] == [("conv", "original")]
    assert len(lut.rows) > 4
    assert lut.rows[0].latency_s == pytest.approx(lut.rows[0].cycles / 1e9)


def test_measured_lut_csv_and_load_lut(measured_lut, tmp_path, cpu):
    lut, _ = measured_lut
    text = lut_csv(lut)
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    assert header["measured"] == "true" and header["device_name"] == cpu.device_name
    assert header["device_fingerprint"] == cpu.content_hash and header["threads"] == "1"
    assert header["noisy_rows"] == str(sum(r.noisy for r in lut.rows))
    body = list(csv.DictReader(io.StringIO("\n".join(l for l in text.splitlines() if not l.startswith("#")))))
    assert all(r["energy_pj"] == "" and r["sub1_energy_pj"] == "" for r in body)
    assert [r["noisy"] for r in body] == [str(int(r.noisy)) for r in lut.rows]
    path = tmp_path / "lut.csv"
    path.write_text(text)
    loaded = load_lut(path)
    assert loaded.provenance["device"] == "cpu" and len(loaded.entries) == len(lut.rows)
    assert [e.noisy for e in loaded.entries] == [r.noisy for r in lut.rows]
    assert all(math.isnan(e.energy_pj) for e in loaded.entries)
    assert [e.latency_s for e in loaded.entries] == [float(f"{r.latency_s:.9g}") for r in lut.rows]
    summary = lut_summary(lut)
    assert summary["device"]["device_name"] == cpu.device_name and summary["original"]["energy_pj"] is None


def test_a_simulated_lut_has_no_measured_columns():
    from costmodels.lut.build import assemble_lut
    from costmodels.timeloop.spec import load_spec

    lut = assemble_lut("none", (), load_spec("eyeriss"), {})
    assert not lut.measured and "noisy" not in lut_csv(lut) and not lut_csv(lut).startswith("#")


# --- additivity --------------------------------------------------------------------------------------

def test_candidate_module_runs_the_subconvs():
    layer = ConvLayer.from_input("l", 16, 32, 3, 8, stride=2, padding=1)
    module = candidate_module(Tucker2Candidate(layer, Form.TUCKER2, 8, 4))
    convs = list(module)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == \
        [(16, 4, (1, 1), (1, 1)), (4, 8, (3, 3), (2, 2)), (8, 32, (1, 1), (1, 1))]
    assert tuple(module(torch.randn(1, 16, 8, 8)).shape) == (1, 32, *layer.output_size)


def test_additivity_report_structure(cpu):
    layers = zoo_layers("resnet20")
    workloads = network_workloads(network_candidates(layers, RankGrid()))
    results = {key: WorkloadCost(key, 1000, 0.0, 0.0, "") for key in workloads.unique}
    from costmodels.lut.build import assemble_lut

    lut = assemble_lut("resnet20", workloads.layers, cpu, results, "torch")
    report = additivity_check(lut, workloads.layers, cpu, "resnet20", FAST, sample=3, timer=ScriptedTimer(STEADY))
    assert len(report.layers) == 3 and [c.what for c in report.networks] == \
        ["original network", "compressed network (middle candidate per layer)"]
    original = report.networks[0]
    assert original.lut_sum_s == pytest.approx(len(layers) * 1000 / 1e9)
    assert original.measured_s == pytest.approx(1.0e-4) and original.error == pytest.approx(original.lut_sum_s / 1e-4 - 1)
    assert report.to_dict()["networks"][0]["what"] == "original network" and len(report.lines()) == 4
    assert original.overhead_s == pytest.approx(1.0e-4) and original.error_with_overhead > original.error
    no_model = additivity_check(lut, workloads.layers, cpu, None, FAST, sample=2, timer=ScriptedTimer(STEADY))
    assert no_model.networks == () and "built-in model" in no_model.note


# --- the CLI -----------------------------------------------------------------------------------------

@pytest.fixture
def fake_clock(monkeypatch):
    monkeypatch.setattr(torch_timing, "benchmark_timer", lambda threads, clock="wall": ScriptedTimer(STEADY))


def test_cli_build_with_a_device(tmp_path, fake_clock, capsys):
    out = tmp_path / "lut"
    assert main(["build", "--backend", "torch", "--device", "cpu", "--threads", "1", "--model", "resnet20",
                 "--out", str(out), "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "resnet20 on cpu-float32-1t (measured:" in printed and "additivity, original network" in printed
    loaded = load_lut(out / "lut.csv")
    assert loaded.provenance["measured"] == "true" and loaded.provenance["threads"] == "1"
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"] == "cpu-float32-1t" and len(summary["additivity"]["networks"]) == 2


def test_cli_heatmap_with_a_device(tmp_path, fake_clock, capsys):
    assert main(["heatmap", "--backend", "torch", "--threads", "1", "--model", "resnet20", "--layer",
                 "layer3.0.conv2", "--step", "32", "--out", str(tmp_path), "--no-cache"]) == 0
    assert (tmp_path / "layer3_0_conv2-cpu-float32-1t.png").is_file()
    rows = list(csv.DictReader((tmp_path / "layer3_0_conv2-cpu-float32-1t.csv").open()))
    assert [(r["r1"], r["r2"]) for r in rows] == [("32", "32"), ("32", "64"), ("64", "32"), ("64", "64")]


@pytest.mark.parametrize("argv,message", [
    (["build", "--model", "resnet20"], "--arch is required"),
    (["build", "--backend", "torch", "--arch", "eyeriss", "--model", "resnet20"], "drop --arch"),
    (["build", "--backend", "torch", "--device", "gpu", "--model", "resnet20"], "not one of: cpu, cuda"),
    (["heatmap", "--backend", "torch", "--scheduler", "tcp://x:1", "--model", "resnet20", "--layer", "conv1"],
     "--scheduler is not allowed"),
])
def test_cli_refuses_bad_combinations(argv, message, capsys):
    assert main([*argv, "--no-cache"]) == 2
    assert message in capsys.readouterr().err


def test_doctor_lists_the_devices():
    lines = {name: (ok, detail) for name, ok, detail in torch_timing.device_lines()}
    assert lines["cpu"][0] and torch_timing.cpu_model() in lines["cpu"][1]
    if not torch.cuda.is_available():
        assert lines["cuda"] == (False, lines["cuda"][1]) and "no CUDA GPU" in lines["cuda"][1]


# --- CUDA ------------------------------------------------------------------------------------------

NO_GPU = (f"no CUDA GPU on this machine (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): "
          f"the CUDA path runs where one is present")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the refusal applies only without one")
def test_cuda_is_refused_clearly_without_a_gpu():
    with pytest.raises(BackendUnavailable, match="no CUDA GPU is usable here"):
        get_backend("torch", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_cuda_path_times_on_the_gpu():
    target = device_target("cuda:0", "float16", 1)
    assert target.device == "cuda:0" and target.device_name == torch.cuda.get_device_name(0)
    assert target.cudnn_version != "none" and "cudnn=" in target.fingerprint and target.name == "cuda0-float16"
    evaluation = TorchTimingBackend(target, FAST).evaluate(SMALL, target)
    assert torch.backends.cudnn.benchmark is True
    assert evaluation.cycles >= 1 and evaluation.timing.samples >= 5
    conv, x = workload_conv(SMALL, target)
    assert x.is_cuda and x.dtype == torch.float16 and next(conv.parameters()).is_cuda
    with pytest.raises(BackendUnavailable, match="CUDA GPU"):
        device_target(f"cuda:{torch.cuda.device_count()}")


def test_the_cpu_clock_is_for_one_cpu_thread_only():
    target = device_target("cpu", "float32", 1, clock="cpu")
    assert target.name == "cpu-float32-1t-cputime" and "clock=cpu" in target.fingerprint
    assert target.content_hash != device_target("cpu", "float32", 1).content_hash
    assert "CPU time" in dict(target.provenance())["clock"]
    evaluation = TorchTimingBackend(target, FAST).evaluate(POINTWISE, target)
    assert evaluation.cycles >= 1 and evaluation.timing.samples >= 5
    with pytest.raises(CostModelError, match="--threads 1"):
        device_target("cpu", "float32", 2, clock="cpu")
    with pytest.raises(CostModelError, match="--clock 'gpu'"):
        device_target("cpu", "float32", 1, clock="gpu")


def test_a_busy_machine_is_named_for_wall_clock_cpu_timings(monkeypatch):
    monkeypatch.setattr(torch_timing.os, "getloadavg", lambda: (torch_timing.usable_cores() + 1.0, 0.0, 0.0))
    wall = device_target("cpu", "float32", 1)
    assert "busy" in torch_timing.busy_warning(wall) and "--clock cpu" in torch_timing.busy_warning(wall)
    assert torch_timing.busy_warning(device_target("cpu", "float32", 1, clock="cpu")) is None
    monkeypatch.setattr(torch_timing.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert torch_timing.busy_warning(wall) is None
