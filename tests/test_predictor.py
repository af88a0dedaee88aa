"""Regression predictors: features from a spec, the fit/predict contract, accuracy on held-out ranks
that a FLOPs-only model misses, sampling, and persistence that refuses foreign files."""

import collections
import json
import shutil
import zipfile

import numpy as np
import pytest

from costmodels.backends import get_backend
from costmodels.network.zoo import zoo_layers
from costmodels.predictors.accuracy import (
    assess,
    candidate_costs,
    candidate_metrics,
    error_metrics,
    mean_kendall_tau,
    workload_values,
)
from costmodels.predictors.estimators import (
    CostPredictor,
    PredictorError,
    Predictors,
    compare_estimators,
    fit_predictors,
)
from costmodels.predictors.features import feature_set, touched_sizes
from costmodels.predictors.persistence import (
    FORMAT_VERSION,
    PredictorFileError,
    load_predictors,
    read_metadata,
    save_predictors,
)
from costmodels.predictors.sampling import SamplingError, active_sampling, candidate_order, space_filling
from costmodels.problems.candidates import RankGrid, network_candidates
from costmodels.problems.workloads import Workload, layer_workloads, network_workloads, subconv_workloads
from costmodels.sweep.records import WorkloadCost
from costmodels.sweep.runner import run_sweep
from costmodels.timeloop.spec import SPECS_ROOT, load_spec


@pytest.fixture(scope="module")
def eyeriss():
    return load_spec("eyeriss")


@pytest.fixture(scope="module")
def resnet20(eyeriss):
    """ResNet-20's candidates (every rank a multiple of 8) and every unique workload evaluated by
    the built-in backend (about a second)."""
    layers = network_candidates(zoo_layers("resnet20"), RankGrid(step=8, narrow_steps=((64, 8),)))
    unique = network_workloads(layers).unique
    results = run_sweep(unique.values(), eyeriss, get_backend("builtin"))
    costs = {k: v for k, v in results.items() if isinstance(v, WorkloadCost)}
    assert len(costs) == len(unique)
    return layers, unique, costs


def synthetic_costs(workloads):
    """Costs with a step structure: PE passes over a 14 x 12 array."""
    return [WorkloadCost(w.key, -(-w.M // 14) * -(-w.C // 12) * w.P * w.Q * w.R * w.S * w.N,
                         float(w.macs) * 3.0 + 1000.0, 0.5, "synthetic") for w in workloads]


# --- features -------------------------------------------------------------------------------------

def test_features_derive_the_array_from_the_spec(eyeriss, tmp_path):
    features = feature_set(eyeriss)
    assert features.axes == (12, 14) and features.peak_macs == 168
    assert features.limits == (12, 14, 16, 192)
    assert [level.name for level in features.shared] == ["shared_glb", "DRAM"]
    assert features.outer_pixel_dims == ("Q",)
    w = Workload(C=64, M=64, R=3, S=3, N=1, P=14, Q=14)
    row = features.row(w)
    assert len(row) == len(features.names) == features.transform([w]).shape[1]
    assert all(np.isfinite(row))
    # 14 columns take Q (14) and 12 rows take S (3) x 4 input channels: every PE busy.
    assert features.roofline(w).max_pes == 168

    # A 14 x 16 array: the same code finds the new axis and the PEs it allows.
    folder = tmp_path / "wide"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    arch = folder / "arch" / "eyeriss_like.yaml"
    arch.write_text(arch.read_text().replace("PE[0..167]", "PE[0..223]"))
    wide = feature_set(load_spec(folder))
    assert wide.axes == (14, 16) and wide.peak_macs == 224
    assert wide.roofline(w).max_pes == 14 * 3 * 4   # S=3 x C=4 on 16 rows (C=5 does not divide 64)
    assert wide.digest != features.digest


def test_touched_inputs_skip_what_a_strided_pointwise_conv_never_reads():
    w = Workload(C=8, M=8, R=1, S=1, N=1, P=7, Q=7, Wstride=2, Hstride=2)
    assert w.data_space_sizes["Inputs"] == 8 * 13 * 13
    assert touched_sizes(w)["Inputs"] == 8 * 7 * 7


# --- the fit/predict contract ---------------------------------------------------------------------

def test_fit_predict_contract(eyeriss, resnet20):
    layers, unique, _ = resnet20
    workloads = list(unique.values())
    costs = synthetic_costs(workloads)
    predictor = CostPredictor(eyeriss, "cycles", "rf")
    with pytest.raises(PredictorError, match="not fitted"):
        predictor.predict(workloads)
    assert predictor.fit(workloads, costs) is predictor and predictor.estimator_ == "rf"
    predicted = predictor.predict(workloads)
    assert predicted.shape == (len(workloads),) and np.all(predicted > 0)
    assert predictor.predict([]).shape == (0,)
    # numbers work as well as WorkloadCosts
    poly = CostPredictor(eyeriss, "cycles", "poly")
    assert np.allclose(poly.fit(workloads, [c.cycles for c in costs]).predict(workloads),
                       CostPredictor(eyeriss, "cycles", "poly").fit(workloads, costs).predict(workloads))
    # a candidate is the sum of its sub-convolutions, times their counts
    candidate = layers[1].candidates[0]
    subs = [u.workload for u in subconv_workloads(candidate)]
    assert predictor.predict_candidates([candidate])[0] == pytest.approx(predictor.predict(subs).sum())
    with pytest.raises(PredictorError, match="2 workloads but 1"):
        CostPredictor(eyeriss).fit(workloads[:2], costs[:1])
    with pytest.raises(PredictorError, match="unknown estimator 'svm'"):
        CostPredictor(eyeriss, estimator="svm")
    with pytest.raises(PredictorError, match="unknown target 'power'"):
        CostPredictor(eyeriss, target="power")
    with pytest.raises(PredictorError, match="positive"):
        CostPredictor(eyeriss, estimator="rf").fit(workloads[:3], [1.0, 0.0, 2.0])


def test_auto_picks_the_lowest_cross_validated_error(eyeriss, resnet20):
    _, unique, costs = resnet20
    workloads = list(unique.values())
    evaluations = [costs[w.key] for w in workloads]
    predictor = CostPredictor(eyeriss, "energy", "auto", cv_folds=2).fit(workloads, evaluations)
    assert [c.estimator for c in predictor.comparison_] == ["gbt", "rf", "poly", "roofline"]
    chosen = next(c for c in predictor.comparison_ if c.estimator == predictor.estimator_)
    assert round(chosen.mape, 3) == round(min(c.mape for c in predictor.comparison_), 3)
    table = compare_estimators(workloads, evaluations, eyeriss, "cycles", ("poly", "roofline", "flops"), folds=2)
    assert [row.estimator for row in table] == ["poly", "roofline", "flops"]
    assert table[2].mape > 10 * table[1].mape
    with pytest.raises(PredictorError, match="unknown estimator 'svm'"):
        compare_estimators(workloads, evaluations, eyeriss, estimators=("svm",))


# --- accuracy -------------------------------------------------------------------------------------

def test_held_out_ranks_beat_a_flops_only_model(eyeriss, resnet20):
    """Trained on a 40% space-filling sample of ResNet-20's workloads; tested on every other one and
    on every candidate that uses one. The threshold is far from what FLOPs alone can do."""
    layers, unique, costs = resnet20
    sample = space_filling(layers, 0.4, eyeriss)
    train = list(sample.chosen)
    results = {}
    for estimator in ("gbt", "flops"):
        predictors = fit_predictors(train, [costs[w.key] for w in train], eyeriss, estimator)
        rows = assess("held-out ranks", [("resnet20", layers)], costs, unique, [w.key for w in train], predictors).rows
        results[estimator] = {(r.target, r.level): r.metrics for r in rows}
    good, flops = results["gbt"], results["flops"]
    for level in ("workload", "candidate"):
        assert good["cycles", level].mape <= 2.0 and good["cycles", level].within_10 >= 0.95
        assert flops["cycles", level].mape > 10.0 and flops["cycles", level].within_10 < 0.5
        assert good["energy", level].mape <= 10.0 < flops["energy", level].mape
    assert good["cycles", "candidate"].kendall_tau >= 0.95
    assert good["cycles", "candidate"].n > 0 and good["cycles", "workload"].n == len(sample.rest)


def test_metrics():
    m = error_metrics([100, 200, 400], [104, 180, 400])
    assert m.n == 3 and m.mape == pytest.approx(100 * (0.04 + 0.1) / 3) and m.max_error == pytest.approx(10)
    assert m.within_5 == pytest.approx(2 / 3) and m.within_10 == 1.0
    tau, used = mean_kendall_tau([([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [3, 2, 1]), ([5, 5], [1, 2]), ([1], [1])])
    assert (tau, used) == (0.0, 2)


def test_candidate_costs_use_evaluations_where_there_are_any(resnet20):
    layers, unique, costs = resnet20
    evaluated = workload_values(costs, "cycles")
    layer = next(lc for lc in layers if lc.candidates)
    key = subconv_workloads(layer.candidates[0])[0].workload.key
    groups = candidate_costs([layer], evaluated, {key: evaluated[key] * 2})
    assert groups[0].any_predicted[0] and not any(groups[0].any_predicted[1:])
    assert groups[0].predicted[0] == pytest.approx(groups[0].evaluated[0] + evaluated[key])
    metrics = candidate_metrics(groups)
    assert metrics.n == 1 and metrics.kendall_tau is not None


# --- sampling -------------------------------------------------------------------------------------

def test_space_filling_takes_every_original_and_spreads_ranks(eyeriss, resnet20):
    layers, unique, _ = resnet20
    sample = space_filling(layers, 0.3, eyeriss)
    chosen = {w.key for w in sample.chosen}
    assert all(use.workload.key in chosen for lc in layers for use in layer_workloads(lc.layer))
    assert len(chosen) + len(sample.rest) == len(unique) and not chosen & {w.key for w in sample.rest}
    assert 0.3 <= sample.fraction < 0.45
    assert space_filling(layers, 0.3, eyeriss) == sample          # deterministic
    tiny = space_filling(layers, 0.01)
    assert {w.key for w in tiny.chosen} == {u.workload.key for lc in layers for u in layer_workloads(lc.layer)}
    layer = max(layers, key=lambda lc: len(lc.candidates))
    order = [c.r1 for c in candidate_order(layer)]
    assert order[:3] == [64, 8, 32] or order[:2] == [64, 8]        # largest, smallest, then between
    assert sorted(order) == sorted(c.r1 for c in layer.candidates)
    with pytest.raises(SamplingError, match="fraction"):
        space_filling(layers, 0.0)


def test_active_sampling_adds_batches_until_the_target_or_the_budget(eyeriss, resnet20):
    layers, unique, costs = resnet20
    calls = []

    def evaluate(workloads):
        calls.append(len(workloads))
        return {w.key: costs[w.key] for w in workloads}

    result = active_sampling(layers, eyeriss, evaluate, start=0.2, budget=0.5, batch=0.1, target_mape=1e-9,
                             estimator="roofline")
    assert not result.reached_target and len(result.costs) <= 0.5 * len(unique) + 1
    assert len(result.rounds) == len(calls) - 1 >= 2
    assert all(set(r.batch_mape) == {"cycles", "energy"} for r in result.rounds)
    easy = active_sampling(layers, eyeriss, evaluate, start=0.2, budget=0.5, batch=0.1, target_mape=50.0,
                           estimator="roofline")
    assert easy.reached_target and len(easy.rounds) == 1
    with pytest.raises(SamplingError, match="exceeds the budget"):
        active_sampling(layers, eyeriss, evaluate, start=0.6, budget=0.5)


# --- persistence ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(eyeriss, resnet20, tmp_path_factory):
    """Trees for cycles (the type the loader must trust explicitly), a linear model for energy."""
    _, unique, costs = resnet20
    workloads = list(unique.values())
    evaluations = [costs[w.key] for w in workloads]
    predictors = Predictors(CostPredictor(eyeriss, "cycles", "gbt").fit(workloads[:16], evaluations[:16]),
                            CostPredictor(eyeriss, "energy", "poly").fit(workloads, evaluations))
    path = save_predictors(tmp_path_factory.mktemp("predictor") / "p.zip", predictors, {"accuracy": "test"})
    return path, predictors, workloads


def test_persistence_round_trip(eyeriss, saved):
    path, predictors, workloads = saved
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["cycles.skops", "energy.skops", "metadata.json"]
    loaded = load_predictors(path, eyeriss)
    for target, estimator in (("cycles", "gbt"), ("energy", "poly")):
        assert np.array_equal(loaded.predictors[target].predict(workloads), predictors[target].predict(workloads))
        assert loaded.predictors[target].estimator_ == estimator
        assert loaded.predictors[target].domain_ == predictors[target].domain_
    meta = loaded.metadata
    assert meta["spec"] == {"name": "eyeriss", "hash": eyeriss.content_hash}
    assert meta["features"]["names"] == list(feature_set(eyeriss).names)
    assert {"scikit-learn", "skops", "numpy", "haloc-costmodels"} <= set(meta["versions"])
    assert meta["format_version"] == FORMAT_VERSION and meta["provenance"] == {"accuracy": "test"}


def _rewrite(path, target, metadata=None, members=None):
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if metadata is not None:
        contents["metadata.json"] = json.dumps(metadata).encode()
    contents.update(members or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


def test_persistence_refuses_foreign_files(eyeriss, saved, tmp_path):
    path, _, _ = saved
    meta = read_metadata(path)
    other_spec = {**meta, "spec": {"name": "tpu", "hash": "0123456789abcdef"}}
    with pytest.raises(PredictorFileError, match="fitted for spec 'tpu'.*refit"):
        load_predictors(_rewrite(path, tmp_path / "spec.zip", other_spec), eyeriss)
    newer = {**meta, "format_version": FORMAT_VERSION + 1}
    with pytest.raises(PredictorFileError, match=f"version {FORMAT_VERSION + 1} is newer"):
        load_predictors(_rewrite(path, tmp_path / "newer.zip", newer), eyeriss)
    features = {**meta, "features": {**meta["features"], "digest": "feedfacefeedface"}}
    with pytest.raises(PredictorFileError, match="features"):
        load_predictors(_rewrite(path, tmp_path / "features.zip", features), eyeriss)
    import skops.io
    untrusted = {"cycles.skops": skops.io.dumps(collections.Counter("abc"))}
    with pytest.raises(PredictorFileError, match="collections.Counter"):
        load_predictors(_rewrite(path, tmp_path / "untrusted.zip", members=untrusted), eyeriss)
    pickle_file = tmp_path / "model.pkl"
    pickle_file.write_bytes(b"\x80\x04\x95\x00")
    with pytest.raises(PredictorFileError, match="not a predictor file"):
        load_predictors(pickle_file, eyeriss)
    with pytest.raises(PredictorFileError, match="no such file"):
        load_predictors(tmp_path / "missing.zip", eyeriss)
    older_sklearn = {**meta, "versions": {**meta["versions"], "scikit-learn": "0.1.0"}}
    with pytest.warns(UserWarning, match="scikit-learn 0.1.0"):
        load_predictors(_rewrite(path, tmp_path / "old.zip", older_sklearn), eyeriss)


def test_predictors_pair_checks_targets(eyeriss, saved):
    _, predictors, workloads = saved
    with pytest.raises(PredictorError, match="cycles predictor, then an energy"):
        Predictors(predictors.energy, predictors.cycles)
    costs = predictors.predict_costs(workloads[:3])
    assert all(c.mapping == "predicted" and isinstance(c.cycles, int) for c in costs.values())
