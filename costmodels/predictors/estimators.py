"""Regression predictors of a workload's cycles or energy on one target, fitted on evaluated samples.

HALOC's search needs the cost of every rank candidate of every layer. Where evaluating all of them
is too slow (a slower backend, a denser grid, many networks), a sample is evaluated and the rest
predicted. The predictors learn a correction to a physical estimate rather than the cost itself:
cost = ``roofline * exp(f(x))``, where ``roofline`` is the cycles or energy of the best spatial
assignment under a simple traffic model (``features.Roofline``: it carries the step structure),
and ``f`` a regression on the features. Two estimators predict a constant ``f``: ``roofline`` (the
roofline estimate times a constant) and the baseline ``flops`` (cost proportional to MACs, the
guess HALOC argues against). Outside the output resolutions a regression was trained on it
extrapolates badly, so there it falls back to the roofline (``Domain``).

A candidate's cost is the sum of its sub-convolutions' costs (times their repeat count), as
``costmodels.build`` sums evaluated ones.

A measured device (``DeviceTarget``) has no spec: its features are the workload's shape and its
"roofline" a nominal estimate (``device_features``), and only cycles (its measured latency in ns)
are predicted, since energy is not measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from costmodels.sweep.records import WorkloadCost
from costmodels.problems.candidates import Tucker2Candidate
from costmodels.errors import CostModelError
from costmodels.backends.torch_timing import DeviceTarget
from costmodels.predictors.device_features import DeviceFeatureSet, device_feature_set
from costmodels.predictors.features import FeatureSet, feature_set
from costmodels.timeloop.spec import ArchSpec
from costmodels.problems.workloads import Workload, WorkloadUse, subconv_workloads

TARGETS = ("cycles", "energy")
ESTIMATORS = ("gbt", "rf", "poly", "roofline", "flops")
AUTO_CHOICES = ("gbt", "rf", "poly", "roofline")   # what "auto" picks from, simplest last; flops is a baseline
REGRESSIONS = ("gbt", "rf", "poly")       # estimators that learn from the features
PREDICTED_MAPPING = "predicted"           # WorkloadCost.mapping of a predicted cost


# What a predictor prices on: a simulated accelerator's spec, or a device measured with ``--backend torch``.
Target = ArchSpec | DeviceTarget
Features = FeatureSet | DeviceFeatureSet


class PredictorError(CostModelError):
    """A predictor used before fitting, or given inconsistent inputs."""


def target_features(spec: Target) -> Features:
    """Spec-derived features for an accelerator spec, workload-shape features for a measured device."""
    return device_feature_set(spec) if isinstance(spec, DeviceTarget) else feature_set(spec)


def targets_for(spec: Target) -> tuple[str, ...]:
    """What can be predicted on a target: a measured device has latency only (energy is not measured)."""
    return ("cycles",) if isinstance(spec, DeviceTarget) else TARGETS


def make_estimator(name: str, random_state: int = 0) -> Any:
    """A fresh, unfitted scikit-learn estimator of the named kind on the feature rows."""
    # sklearn is imported here: it takes about a second, and the CLI builds its parser on every call.
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    if name == "gbt":
        # Huber loss: where the roofline is exact (most workloads' cycles) the residual is 0 and the
        # rare large ones do not drag whole leaves along, which squared error does and which then
        # carries over badly to shapes never seen. Single-threaded on purpose: the histogram
        # variant's thread pool made fit times swing by 10x on a shared two-core machine.
        return GradientBoostingRegressor(loss="huber", alpha=0.9, n_estimators=100, learning_rate=0.15,
                                         max_depth=5, subsample=0.8, min_samples_leaf=2, random_state=random_state)
    if name == "rf":
        return RandomForestRegressor(n_estimators=120, max_features=0.5, random_state=random_state, n_jobs=1)
    if name == "poly":
        return make_pipeline(StandardScaler(), PolynomialFeatures(degree=2, include_bias=False), StandardScaler(),
                             RidgeCV(alphas=np.logspace(-4, 3, 15)))
    if name in ("roofline", "flops"):
        return DummyRegressor(strategy="median")
    raise PredictorError(f"unknown estimator '{name}'; available: auto, {', '.join(ESTIMATORS)}")


def targets_of(evaluations: Sequence[WorkloadCost] | Sequence[float] | np.ndarray, target: str) -> np.ndarray:
    """The target values (cycles or energy in pJ) of evaluations given as WorkloadCosts or numbers."""
    if target not in TARGETS:
        raise PredictorError(f"unknown target '{target}'; available: {', '.join(TARGETS)}")
    items = list(evaluations)
    if items and isinstance(items[0], WorkloadCost):
        costs: list[WorkloadCost] = items  # type: ignore[assignment]
        return np.array([float(c.cycles if target == "cycles" else c.energy_pj) for c in costs])
    return np.asarray(items, dtype=np.float64)


@dataclass(frozen=True)
class Design:
    """Feature rows of some workloads and the baselines the estimators correct."""

    x: np.ndarray
    macs: np.ndarray
    roofline_cycles: np.ndarray
    roofline_energy: np.ndarray
    resolution: np.ndarray      # output pixels N x P x Q: the cross-validation groups

    @classmethod
    def of(cls, workloads: Sequence[Workload], features: Features) -> "Design":
        roofs = [features.roofline(w) for w in workloads]
        return cls(features.transform(workloads), np.array([float(w.macs) for w in workloads]),
                   np.array([r.cycles for r in roofs]), np.array([r.energy_pj for r in roofs]),
                   np.array([w.N * w.P * w.Q for w in workloads]))

    def subset(self, rows: np.ndarray) -> "Design":
        return Design(self.x[rows], self.macs[rows], self.roofline_cycles[rows], self.roofline_energy[rows],
                      self.resolution[rows])

    def baseline(self, target: str, estimator: str) -> np.ndarray:
        """The roofline estimate of the target; MACs for the FLOPs-only baseline."""
        if estimator == "flops":
            return self.macs
        return self.roofline_cycles if target == "cycles" else self.roofline_energy


@dataclass(frozen=True)
class Domain:
    """Where a fitted regression may be trusted: the output resolutions (N x P x Q) it was trained
    on. Outside them trees predict whatever their edge leaves hold and a polynomial runs off, while
    the roofline scales; there the predictor uses the roofline times ``fallback``, the median
    log-ratio of evaluated to roofline cost in training."""

    lowest: int
    highest: int
    fallback: float

    def outside(self, design: "Design") -> np.ndarray:
        return (design.resolution < self.lowest) | (design.resolution > self.highest)


@dataclass(frozen=True)
class Comparison:
    """One estimator's cross-validated error on the training sample (lower MAPE is better)."""

    estimator: str
    mape: float             # %
    max_error: float        # %
    within_5: float         # share of workloads
    within_10: float
    fit_s: float            # mean per fold


class CostPredictor:
    """Predicts ``target`` ("cycles" or "energy", in pJ) of workloads on ``spec``.

    ``estimator`` is "gbt" (gradient-boosted trees), "rf" (random forest), "poly" (degree-2 ridge
    regression), "roofline" (the roofline estimate times the median ratio), the baseline "flops", or
    "auto": the one of gbt/rf/poly/roofline with the lowest cross-validated MAPE on the training
    sample (``cv_folds`` folds); that comparison is kept in ``comparison_``. The roofline competes
    because where it is exact (cycles of most workloads) a regression can only add noise.
    """

    def __init__(self, spec: Target, target: str = "cycles", estimator: str = "auto", random_state: int = 0,
                 cv_folds: int = 3):
        if target not in TARGETS:
            raise PredictorError(f"unknown target '{target}'; available: {', '.join(TARGETS)}")
        if estimator != "auto" and estimator not in ESTIMATORS:
            raise PredictorError(f"unknown estimator '{estimator}'; available: auto, {', '.join(ESTIMATORS)}")
        self.spec_name = spec.name
        self.spec_hash = spec.content_hash
        if target not in targets_for(spec):
            raise PredictorError(f"{spec.name} is a measured device: only cycles (measured latency) can be predicted")
        self.features = target_features(spec)
        self.target = target
        self.estimator = estimator
        self.random_state = random_state
        self.cv_folds = cv_folds
        self.estimator_: str | None = None
        self.model_: Any = None
        self.comparison_: tuple[Comparison, ...] = ()
        self.n_train_: int = 0
        self.domain_: Domain | None = None

    @classmethod
    def from_fitted(cls, spec: Target, target: str, estimator: str, model: Any, n_train: int, domain: Domain,
                    comparison: tuple[Comparison, ...] = ()) -> "CostPredictor":
        """A predictor around an already fitted estimator (used when loading a saved one)."""
        predictor = cls(spec, target, estimator)
        predictor.estimator_, predictor.model_, predictor.domain_ = estimator, model, domain
        predictor.n_train_, predictor.comparison_ = n_train, comparison
        return predictor

    def fit(self, workloads: Sequence[Workload],
            evaluations: Sequence[WorkloadCost] | Sequence[float] | np.ndarray) -> "CostPredictor":
        workloads = list(workloads)
        y = targets_of(evaluations, self.target)
        if len(y) != len(workloads):
            raise PredictorError(f"{len(workloads)} workloads but {len(y)} evaluations")
        if len(workloads) < 2:
            raise PredictorError(f"need at least 2 evaluated workloads to fit, got {len(workloads)}")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise PredictorError(f"{self.target} must be positive and finite to fit a predictor")
        design = Design.of(workloads, self.features)
        name = self.estimator
        if name == "auto":
            self.comparison_ = compare_on_design(design, y, self.target, AUTO_CHOICES, self.cv_folds,
                                                 self.random_state)
            # On a tie (to 0.001 %) the simpler model: it has less to get wrong on shapes it never saw.
            name = min(self.comparison_, key=lambda c: (round(c.mape, 3), -AUTO_CHOICES.index(c.estimator))).estimator
        base = design.baseline(self.target, name)
        self.model_ = make_estimator(name, self.random_state).fit(design.x, np.log(y / base))
        self.estimator_ = name
        self.n_train_ = len(workloads)
        self.domain_ = fitted_domain(design, y, self.target)
        return self

    def predict(self, workloads: Sequence[Workload]) -> np.ndarray:
        if self.model_ is None or self.estimator_ is None or self.domain_ is None:
            raise PredictorError("the predictor is not fitted; call fit() first")
        workloads = list(workloads)
        if not workloads:
            return np.zeros(0)
        design = Design.of(workloads, self.features)
        z = log_ratio(self.model_, self.estimator_, design, self.domain_)
        return design.baseline(self.target, self.estimator_) * np.exp(z)

    def predict_candidates(self, candidates: Iterable[Tucker2Candidate]) -> np.ndarray:
        """Each candidate's cost: the sum of its sub-convolutions' predictions times their counts."""
        return self.predict_uses([subconv_workloads(c) for c in candidates])

    def predict_uses(self, uses: Sequence[tuple[WorkloadUse, ...]]) -> np.ndarray:
        unique: dict[str, Workload] = {}
        for group in uses:
            for use in group:
                unique.setdefault(use.workload.key, use.workload)
        values = dict(zip(unique, self.predict(list(unique.values()))))
        return np.array([sum(u.count * values[u.workload.key] for u in group) for group in uses])


@dataclass(frozen=True)
class Predictors:
    """A fitted cycles predictor and energy predictor for one spec: what a LUT needs. On a measured
    device ``energy`` is None: energy is not measured, and predicted rows leave it at 0 as measured
    ones do."""

    cycles: CostPredictor
    energy: CostPredictor | None

    def __post_init__(self) -> None:
        if self.cycles.target != "cycles" or (self.energy is not None and self.energy.target != "energy"):
            raise PredictorError("Predictors takes a cycles predictor, then an energy predictor")
        if self.energy is not None and self.cycles.spec_hash != self.energy.spec_hash:
            raise PredictorError("the cycles and energy predictors were made for different specs")

    @property
    def targets(self) -> tuple[str, ...]:
        return TARGETS if self.energy is not None else ("cycles",)

    def __getitem__(self, target: str) -> CostPredictor:
        if target not in self.targets:
            raise KeyError(target)
        predictor = self.cycles if target == "cycles" else self.energy
        assert predictor is not None
        return predictor

    def predict_costs(self, workloads: Sequence[Workload]) -> dict[str, WorkloadCost]:
        """Predicted ``WorkloadCost``s by workload key (``mapping`` says "predicted"); cycles are
        rounded to whole cycles as evaluated ones are."""
        workloads = list(workloads)
        cycles = self.cycles.predict(workloads)
        energy = self.energy.predict(workloads) if self.energy is not None else np.zeros(len(workloads))
        peak = self.cycles.features.peak_macs
        result = {}
        for w, c, e in zip(workloads, cycles, energy):
            whole = max(1, int(round(float(c))))
            utilization = w.macs / (whole * peak) if peak else 0.0   # a measured device has no peak
            result[w.key] = WorkloadCost(w.key, whole, float(e), utilization, PREDICTED_MAPPING)
        return result


def fit_predictors(workloads: Sequence[Workload], evaluations: Sequence[WorkloadCost], spec: Target,
                   estimator: str = "auto", random_state: int = 0) -> Predictors:
    """Fit a cycles and an energy predictor on the same evaluated workloads (on a measured device,
    cycles only)."""
    workloads, evaluations = list(workloads), list(evaluations)
    fitted = [CostPredictor(spec, target, estimator, random_state).fit(workloads, evaluations)
              for target in targets_for(spec)]
    return Predictors(fitted[0], fitted[1] if len(fitted) > 1 else None)


# No cost is e^10 times its roofline estimate; a polynomial far from its data can say anything.
_LOG_RATIO_LIMIT = 10.0


def log_ratio(model: Any, estimator: str, design: Design, domain: Domain) -> np.ndarray:
    """A fitted estimator's predicted log(cost / baseline), the domain's fallback outside it."""
    z = np.clip(model.predict(design.x), -_LOG_RATIO_LIMIT, _LOG_RATIO_LIMIT)
    if estimator in REGRESSIONS:
        z = np.where(domain.outside(design), domain.fallback, z)
    return z


def fitted_domain(design: Design, y: np.ndarray, target: str) -> Domain:
    return Domain(int(design.resolution.min()), int(design.resolution.max()),
                  float(np.median(np.log(y / design.baseline(target, "roofline")))))


def compare_on_design(design: Design, y: np.ndarray, target: str, estimators: Sequence[str], folds: int,
                      random_state: int) -> tuple[Comparison, ...]:
    """Cross-validated errors of each estimator on the same feature rows and targets ``y``.

    Folds leave whole output resolutions out where there are enough of them: a network at another
    input size is how a predictor most often meets shapes it never saw, trees extrapolate poorly
    across it, and random folds, with every resolution on both sides, would not show that."""
    from sklearn.model_selection import GroupKFold, KFold

    folds = max(2, min(folds, len(y)))
    if len(np.unique(design.resolution)) >= folds:
        splits = list(GroupKFold(folds).split(design.x, groups=design.resolution))
    else:
        splits = list(KFold(folds, shuffle=True, random_state=random_state).split(design.x))
    rows = []
    for name in estimators:
        z = np.log(y / design.baseline(target, name))
        predicted = np.empty_like(z)
        fit_s = 0.0
        for train, test in splits:
            start = time.perf_counter()
            model = make_estimator(name, random_state).fit(design.x[train], z[train])
            fit_s += time.perf_counter() - start
            domain = fitted_domain(design.subset(train), y[train], target)
            predicted[test] = log_ratio(model, name, design.subset(test), domain)
        error = np.abs(np.exp(predicted - z) - 1.0)
        rows.append(Comparison(name, 100 * float(error.mean()), 100 * float(error.max()),
                               float(np.mean(error <= 0.05)), float(np.mean(error <= 0.10)), fit_s / folds))
    return tuple(rows)


def compare_estimators(workloads: Sequence[Workload], evaluations: Sequence[WorkloadCost] | Sequence[float],
                       spec: Target, target: str = "cycles", estimators: Sequence[str] = ESTIMATORS,
                       folds: int = 5, random_state: int = 0) -> tuple[Comparison, ...]:
    """Cross-validated comparison of estimators on the same features and samples."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise PredictorError(f"unknown estimator '{unknown[0]}'; available: {', '.join(ESTIMATORS)}")
    design = Design.of(list(workloads), target_features(spec))
    return compare_on_design(design, targets_of(evaluations, target), target, estimators, folds, random_state)


def comparison_table(rows: Sequence[Comparison]) -> str:
    """A Markdown table of a comparison."""
    lines = ["| estimator | MAPE % | max error % | within 5% | within 10% | fit s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.estimator} | {r.mape:.2f} | {r.max_error:.1f} | {r.within_5:.1%} | {r.within_10:.1%} | "
              f"{r.fit_s:.2f} |" for r in rows]
    return "\n".join(lines)
