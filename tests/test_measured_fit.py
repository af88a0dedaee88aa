"""Predictors on a measured device (``--backend torch``): workload-shape features, ``costmodel fit``
and ``costmodel lut --source predict`` without ``--arch``, the repeat-measurement noise beside the
prediction error, and predictor files that refuse another device. Timings come from a fake timer
(deterministic, from the workload's shape), so nothing here asserts a real timing."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from costmodels.backends import torch_timing
from costmodels.backends.torch_timing import device_target
from costmodels.cli.main import main
from costmodels.lut.export import load_lut
from costmodels.network.zoo import zoo_layers
from costmodels.predictors.accuracy import REPEAT_SAMPLE, repeat_noise, repeat_sample
from costmodels.predictors.device_features import BLOCK_WIDTHS, DeviceFeatureSet, device_feature_set
from costmodels.predictors.estimators import CostPredictor, PredictorError, fit_predictors, target_features
from costmodels.predictors.features import FeatureSet
from costmodels.predictors.persistence import PredictorFileError, load_predictors, read_metadata, save_predictors
from costmodels.predictors.sampling import active_sampling, space_filling
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import Workload, network_workloads
from costmodels.sweep.records import WorkloadCost
from costmodels.timeloop.spec import load_spec

REPEAT_DRIFT = 0.02     # the fake timer's second timing of a workload is this much slower


def fake_seconds(workload: Workload) -> float:
    """A made-up latency with a step in it: channels padded to blocks of 8, plus a call overhead."""
    blocks = math.ceil(workload.C / 8) * math.ceil(workload.M / 8) * 64
    return 5e-6 + 2e-11 * blocks * workload.R * workload.S * workload.P * workload.Q


class ShapeTimer:
    """Per-block times from the workload being timed; its k-th timing is (1 + REPEAT_DRIFT)^(k-1)
    times the first."""

    def __init__(self):
        self.current: Workload | None = None
        self.timed: dict[str, int] = {}

    def __call__(self, run, min_run_time_s):
        run()
        key = self.current.key
        self.timed[key] = self.timed.get(key, 0) + 1
        return [fake_seconds(self.current) * (1 + REPEAT_DRIFT) ** (self.timed[key] - 1)] * 30


@pytest.fixture
def shape_clock(monkeypatch):
    timer = ShapeTimer()
    original = torch_timing.workload_conv

    def conv_seen(workload, target):
        timer.current = workload
        return original(workload, target)
    monkeypatch.setattr(torch_timing, "workload_conv", conv_seen)
    monkeypatch.setattr(torch_timing, "benchmark_timer", lambda threads, clock="wall": timer)
    return timer


@pytest.fixture(scope="module")
def cpu():
    return device_target("cpu", "float32", 1)


@pytest.fixture(scope="module")
def resnet20():
    layers = network_candidates(zoo_layers("resnet20"), RankGrid(step=32, narrow_steps=((32, 8), (64, 16))))
    return layers, network_workloads(layers).unique


def fake_costs(unique):
    return {k: WorkloadCost(k, round(fake_seconds(w) * 1e9), 0.0, 0.0, "", noisy=False) for k, w in unique.items()}


# --- features ----------------------------------------------------------------------------------------

def test_device_features_are_workload_shape_features(cpu, resnet20):
    _, unique = resnet20
    features = target_features(cpu)
    assert isinstance(features, DeviceFeatureSet) and features.spec_hash == cpu.content_hash
    assert isinstance(target_features(load_spec("eyeriss")), FeatureSet)
    x = features.transform(unique.values())
    assert x.shape == (len(unique), len(features.names)) and np.all(np.isfinite(x))
    w = Workload(C=12, M=40, R=3, S=3, N=1, P=8, Q=8)
    row = dict(zip(features.names, features.row(w)))
    assert row["log2_macs"] == pytest.approx(math.log2(w.macs))
    assert row["log2_weights_bytes"] == pytest.approx(math.log2(12 * 40 * 9 * 4))
    assert row["log2_arithmetic_intensity"] == pytest.approx(math.log2(w.macs / 2 ** row["log2_bytes"]))
    assert (row["blocks_C_8"], row["fill_C_8"]) == (2.0, 12 / 16)
    assert (row["blocks_M_32"], row["fill_M_32"]) == (2.0, 40 / 64)
    assert {f"fill_M_{b}" for b in BLOCK_WIDTHS} <= set(features.names)
    # The dtype's width is in the bytes, and another device is another feature set.
    half = device_feature_set(replace(cpu, dtype="bfloat16"))
    assert dict(zip(half.names, half.row(w)))["log2_weights_bytes"] == pytest.approx(row["log2_weights_bytes"] - 1)
    assert half.spec_hash != features.spec_hash and half.digest == features.digest


def test_a_device_predicts_latency_only(cpu, resnet20):
    _, unique = resnet20
    with pytest.raises(PredictorError, match="only cycles"):
        CostPredictor(cpu, "energy")
    costs = fake_costs(unique)
    predictors = fit_predictors(list(unique.values()), list(costs.values()), cpu, "gbt")
    assert predictors.targets == ("cycles",) and predictors.energy is None
    with pytest.raises(KeyError):
        predictors["energy"]
    predicted = predictors.predict_costs(list(unique.values())[:5])
    assert all(c.energy_pj == 0.0 and c.utilization == 0.0 and c.cycles >= 1 for c in predicted.values())


def test_space_filling_spreads_over_device_features(cpu, resnet20):
    layers, unique = resnet20
    sample = space_filling(layers, 0.3, cpu)
    assert len(sample.chosen) >= math.ceil(0.3 * len(unique)) and len(sample.chosen) + len(sample.rest) == len(unique)


def test_active_sampling_on_a_device(cpu, resnet20):
    layers, unique = resnet20
    costs = fake_costs(unique)
    asked = []

    def evaluate(workloads):
        asked.extend(w.key for w in workloads)
        return {w.key: costs[w.key] for w in workloads}
    result = active_sampling(layers, cpu, evaluate, start=0.2, budget=0.4, batch=0.05, target_mape=0.01,
                             estimator="rf")
    assert len(asked) == len(set(asked)) == len(result.costs) <= int(0.4 * len(unique))
    assert result.rounds and all(set(r.batch_mape) == {"cycles"} for r in result.rounds)


# --- repeat noise --------------------------------------------------------------------------------------

def test_repeat_noise_statistics():
    first = {f"w{i}": WorkloadCost(f"w{i}", 1000 * (i + 1), 0.0, 0.0, "", noisy=i < 2) for i in range(10)}
    second = {k: replace(c, cycles=round(c.cycles * (1.1 if k == "w9" else 0.98))) for k, c in first.items()}
    noise = repeat_noise(first, second)
    assert (noise.n, noise.entries, noise.noisy_share) == (10, 10, 0.2)
    assert noise.median == pytest.approx(2.0) and noise.p90 == pytest.approx(2.8)
    assert "median 2.00%" in noise.line() and "20.0% of 10 entries flagged noisy" in noise.line()
    many = {f"w{i}": WorkloadCost(f"w{i}", 10 * i + 1, 0.0, 0.0, "") for i in range(100)}
    picked = repeat_sample(many)
    assert len(picked) == REPEAT_SAMPLE == len(set(picked)) and {"w0", "w99"} <= set(picked)
    assert repeat_sample(first) == sorted(first, key=lambda k: first[k].cycles)
    assert math.isnan(repeat_noise(first, {}).median)


# --- the CLI and persistence ------------------------------------------------------------------------

def test_cli_fit_on_a_device_reports_noise_and_refuses_other_devices(tmp_path, shape_clock, capsys, cpu):
    out = tmp_path / "fit"
    assert main(["fit", "--backend", "torch", "--device", "cpu", "--threads", "1", "--model", "resnet20",
                 "--budget", "0.3", "--step", "32", "--no-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resnet20 on cpu-float32-1t" in printed and "estimators: cycles " in printed and "energy" not in printed
    assert "repeat noise median %" in printed and "not meaningful" in printed
    report = json.loads((out / "accuracy.json").read_text())
    noise = report["provenance"]["repeat_noise"]
    # Every workload was timed once for the LUT; REPEAT_SAMPLE of them a second time, 2 % slower.
    assert noise["n"] == REPEAT_SAMPLE and noise["noisy_share"] == 0.0
    assert noise["median"] == pytest.approx(100 * REPEAT_DRIFT, abs=0.01)
    assert sum(n == 2 for n in shape_clock.timed.values()) == REPEAT_SAMPLE
    assert sorted(set(shape_clock.timed.values())) == [1, 2]
    assert {r["target"] for r in report["provenance"]["accuracy_rows"]} == {"cycles"}
    assert "repeat-measurement noise" in report["provenance"]["accuracy"]
    assert "## Prediction error beside repeat-measurement noise" in (out / "accuracy.md").read_text()

    path = out / "predictor.zip"
    metadata = read_metadata(path)
    assert metadata["device"]["fingerprint"] == cpu.fingerprint and list(metadata["targets"]) == ["cycles"]
    loaded = load_predictors(path, cpu)
    assert loaded.predictors.energy is None and loaded.predictors.cycles.n_train_ > 0
    with pytest.raises(PredictorFileError, match="measured device 'cpu-float32-1t'.*not device 'cpu-float32-2t'"):
        load_predictors(path, replace(cpu, threads=2))
    with pytest.raises(PredictorFileError, match="not spec 'eyeriss'"):
        load_predictors(path, load_spec("eyeriss"))


def test_cli_fit_on_a_device_with_a_held_out_network(tmp_path, shape_clock, resnet20):
    out = tmp_path / "fit"
    assert main(["fit", "--backend", "torch", "--threads", "1", "--model", "resnet20", "--budget", "0.3", "--step",
                 "32", "--no-check", "--test-model", "digits-cnn", "--no-cache", "--out", str(out)]) == 0
    provenance = json.loads((out / "accuracy.json").read_text())["provenance"]
    assert {r["scope"] for r in provenance["accuracy_rows"]} == {"held-out network digits-cnn"}
    # The repeat timings are drawn from the fitted network's evaluated workloads, not the held-out one's.
    trained = provenance["trained_on"]
    assert provenance["repeat_noise"]["n"] == min(REPEAT_SAMPLE, trained)
    assert provenance["repeat_noise"]["entries"] == trained
    assert sum(n == 2 for k, n in shape_clock.timed.items() if k in resnet20[1]) == min(REPEAT_SAMPLE, trained)


@pytest.mark.parametrize("argv,message", [
    (["fit", "--backend", "torch", "--arch", "eyeriss"], "drop --arch"),
    (["lut", "--backend", "torch", "--arch", "eyeriss"], "drop --arch"),
    (["fit"], "--arch is required"),
    (["lut", "--source", "predict"], "--arch is required"),
])
def test_cli_target_flags(argv, message, capsys):
    assert main([*argv, "--model", "resnet20", "--no-cache"]) == 2
    assert message in capsys.readouterr().err


def test_a_spec_predictor_is_refused_for_a_device(tmp_path, cpu):
    eyeriss = load_spec("eyeriss")
    layers = network_candidates(zoo_layers("resnet20"), RankGrid(step=64, narrow_steps=((64, 32),)))
    unique = list(network_workloads(layers).unique.values())[:8]
    costs = [WorkloadCost(w.key, w.macs // 100 + 1, float(w.macs), 0.5, "") for w in unique]
    path = save_predictors(tmp_path / "p.zip", fit_predictors(unique, costs, eyeriss, "roofline"))
    assert "device" not in read_metadata(path)
    with pytest.raises(PredictorFileError, match="fitted on spec 'eyeriss', not device 'cpu-float32-1t'"):
        load_predictors(path, cpu)


def test_cli_lut_predicted_on_a_device(tmp_path, shape_clock, cpu, resnet20):
    out = tmp_path / "lut.csv"
    assert main(["lut", "--backend", "torch", "--threads", "1", "--model", "resnet20", "--source", "predict",
                 "--budget", "0.3", "--step", "32", "--no-cache", "--out", str(out)]) == 0
    lut = load_lut(out)
    assert lut.provenance["measured"] == "true" and lut.provenance["device_fingerprint"] == cpu.content_hash
    assert lut.provenance["predictor"].startswith("fitted on") and "energy" not in lut.provenance["predictor"]
    sources = {e.source for e in lut.entries}
    assert sources == {"evaluated", "predicted"}
    assert all(math.isnan(e.energy_pj) and e.cycles > 0 for e in lut.entries)
    # Only the sample was timed; the rest was predicted.
    assert 0 < len(shape_clock.timed) < len(resnet20[1])

    fit_out = tmp_path / "fit"
    assert main(["fit", "--backend", "torch", "--threads", "1", "--model", "resnet20", "--budget", "0.3", "--step",
                 "32", "--no-cache", "--no-check", "--out", str(fit_out)]) == 0
    timed = sum(shape_clock.timed.values())
    assert main(["lut", "--backend", "torch", "--threads", "1", "--model", "resnet20", "--source", "predict",
                 "--predictor", str(fit_out / "predictor.zip"), "--step", "32", "--no-cache",
                 "--out", str(tmp_path / "all.csv")]) == 0
    assert sum(shape_clock.timed.values()) == timed   # every workload predicted, none timed
    assert {e.source for e in load_lut(tmp_path / "all.csv").entries} == {"predicted"}
