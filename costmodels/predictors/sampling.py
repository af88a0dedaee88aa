"""Which workloads to evaluate when only a fraction of a sweep is affordable.

``space_filling`` spreads a budget over every layer's candidates: each layer's original workload
first (the search compares candidates against it, and a grouped or excluded layer has nothing
else), then candidates in farthest-point order (the largest rank, the smallest, the middle, ...),
always serving the layer whose candidates are least covered. A candidate brings all its
sub-convolution workloads. Given a spec, the distance between two candidates is taken over their
normalized ranks *and* their sub-convolutions' roofline utilization and bandwidth stretch: ranks
chosen by halving the range are multiples of many small factors, which fill the PE array well, so
a rank-only design rarely shows the predictor the ranks with a large prime factor where
utilization drops.

``active_sampling`` starts from such a sample and adds, batch by batch, the workloads where a
random forest's trees disagree most (the predictor is least sure), until a batch comes in within
the target error before it is trained on, or the budget is spent.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from math import ceil
from typing import Callable, Mapping, Sequence

import numpy as np

from costmodels.sweep.records import WorkloadCost, WorkloadFailure
from costmodels.problems.candidates import LayerCandidates, Tucker2Candidate
from costmodels.errors import CostModelError
from costmodels.predictors.device_features import DeviceFeatureSet
from costmodels.predictors.estimators import (CostPredictor, Design, Features, Target, make_estimator,
                                              target_features, targets_for, targets_of)
from costmodels.problems.workloads import Workload, layer_workloads, network_workloads, subconv_workloads

Evaluator = Callable[[Sequence[Workload]], Mapping[str, WorkloadCost | WorkloadFailure]]


class SamplingError(CostModelError):
    """A budget or target that cannot be met as asked."""


def check_fraction(value: float, what: str) -> None:
    if not 0.0 < value <= 1.0:
        raise SamplingError(f"{what} must be a fraction in (0, 1], got {value}")


def candidate_point(candidate: Tucker2Candidate, features: Features | None) -> list[float]:
    """Where a candidate sits for the space-filling design: ranks over channels, then per
    sub-convolution the share of PEs the roofline assignment uses and its log2 bandwidth stretch
    (on a measured device, ``DeviceFeatureSet.design_point``)."""
    layer = candidate.layer
    point = [candidate.r1 / layer.out_channels, candidate.r2 / layer.in_channels]
    if isinstance(features, DeviceFeatureSet):
        for use in subconv_workloads(candidate):
            point += features.design_point(use.workload)
    elif features is not None:
        for use in subconv_workloads(candidate):
            roof = features.roofline(use.workload)
            point += [roof.pes / features.peak_macs,
                      float(np.log2(roof.cycles * roof.max_pes / use.workload.macs))]
    return point


def candidate_order(lc: LayerCandidates, features: Features | None = None) -> list[Tucker2Candidate]:
    """A layer's candidates in farthest-point order: each next candidate is the one farthest from
    all taken so far (ties: larger ranks)."""
    candidates = list(lc.candidates)
    if not candidates:
        return []
    points = np.array([candidate_point(c, features) for c in candidates], dtype=np.float64)
    # Start from the largest rank: it is closest to the original, which is always evaluated.
    first = int(np.lexsort((-points[:, 1], -points[:, 0]))[0])
    order = [first]
    distance = np.linalg.norm(points - points[first], axis=1)
    while len(order) < len(candidates):
        distance[order] = -1.0
        best = np.flatnonzero(distance == distance.max())
        nxt = int(best[np.argmax(points[best, :2].sum(axis=1))])
        order.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return [candidates[i] for i in order]


@dataclass(frozen=True)
class Sample:
    """Unique workloads chosen for evaluation (in the order chosen) and the rest."""

    chosen: tuple[Workload, ...]
    rest: tuple[Workload, ...]

    @property
    def fraction(self) -> float:
        return len(self.chosen) / max(1, len(self.chosen) + len(self.rest))


def space_filling(layers: Sequence[LayerCandidates], fraction: float, spec: Target | None = None) -> Sample:
    """About ``fraction`` of the unique workloads of ``layers`` (never fewer than the originals);
    with ``spec``, spread over utilization and bandwidth stretch as well as ranks."""
    check_fraction(fraction, "the budget")
    features = target_features(spec) if spec is not None else None
    unique = network_workloads(tuple(layers)).unique
    budget = ceil(fraction * len(unique))
    chosen: dict[str, Workload] = {}
    for lc in layers:
        for use in layer_workloads(lc.layer):
            chosen.setdefault(use.workload.key, use.workload)
    orders = [candidate_order(lc, features) for lc in layers]
    # (share of the layer's candidates taken, layer index, how many taken)
    queue = [(0.0, i, 0) for i, order in enumerate(orders) if order]
    heapq.heapify(queue)
    while queue and len(chosen) < budget:
        _, i, taken = heapq.heappop(queue)
        for use in subconv_workloads(orders[i][taken]):
            chosen.setdefault(use.workload.key, use.workload)
        taken += 1
        if taken < len(orders[i]):
            heapq.heappush(queue, (taken / len(orders[i]), i, taken))
    rest = tuple(w for key, w in unique.items() if key not in chosen)
    return Sample(tuple(chosen.values()), rest)


@dataclass(frozen=True)
class ActiveRound:
    """One round of active sampling: the batch and its error before it was trained on."""

    evaluated: int                  # workloads evaluated after this round (failures included)
    fraction: float
    batch: int
    batch_mape: dict[str, float]    # per target, %, of the predictors fitted before the batch


@dataclass(frozen=True)
class ActiveResult:
    costs: dict[str, WorkloadCost]      # every workload evaluated, by key
    failures: dict[str, WorkloadFailure]
    rounds: tuple[ActiveRound, ...]
    reached_target: bool


def uncertainty(x_train: np.ndarray, z_train: np.ndarray, x: np.ndarray, random_state: int = 0) -> np.ndarray:
    """Spread (standard deviation) of a random forest's trees' predictions at each row of ``x``."""
    forest = make_estimator("rf", random_state).fit(x_train, z_train)
    per_tree = np.stack([tree.predict(x) for tree in forest.estimators_])
    return per_tree.std(axis=0)


def evaluate_into(workloads: Sequence[Workload], evaluate: Evaluator, costs: dict[str, WorkloadCost],
                  failures: dict[str, WorkloadFailure]) -> None:
    for key, result in evaluate(workloads).items():
        if isinstance(result, WorkloadCost):
            costs[key] = result
        else:
            failures[key] = result


def active_sampling(layers: Sequence[LayerCandidates], spec: Target, evaluate: Evaluator,
                    start: float = 0.1, budget: float = 0.3, batch: float = 0.02, target_mape: float = 2.0,
                    estimator: str = "auto", random_state: int = 0) -> ActiveResult:
    """Space-filling sample of ``start``, then batches of ``batch`` (fractions of the unique
    workloads) where the predictors are least sure, until a batch's MAPE for every target, measured
    before training on it, is at most ``target_mape`` %, or ``budget`` is spent. A batch picked for
    being hard measures the error pessimistically, so the stop is conservative. With "auto", the
    estimator is chosen once, on the start sample."""
    for value, what in ((start, "the start fraction"), (budget, "the budget"), (batch, "the batch fraction")):
        check_fraction(value, what)
    if start > budget:
        raise SamplingError(f"the start fraction {start} exceeds the budget {budget}")
    if target_mape <= 0:
        raise SamplingError(f"the target MAPE must be positive, got {target_mape}")
    sample = space_filling(layers, start, spec)
    costs: dict[str, WorkloadCost] = {}
    failures: dict[str, WorkloadFailure] = {}
    evaluate_into(sample.chosen, evaluate, costs, failures)
    total = len(sample.chosen) + len(sample.rest)
    by_key = {w.key: w for w in (*sample.chosen, *sample.rest)}
    pool = {w.key: w for w in sample.rest}
    features = target_features(spec)
    targets = targets_for(spec)
    size = max(1, ceil(batch * total))
    limit = int(budget * total)
    chosen = {target: estimator for target in targets}
    rounds: list[ActiveRound] = []
    while pool and len(costs) + len(failures) < limit:
        trained = [by_key[k] for k in costs]
        evaluations = list(costs.values())
        predictors = {}
        for target in targets:
            predictor = CostPredictor(spec, target, chosen[target], random_state).fit(trained, evaluations)
            chosen[target] = predictor.estimator_ or chosen[target]
            predictors[target] = predictor
        design = Design.of(trained, features)
        pool_keys = list(pool)
        pool_x = features.transform([pool[k] for k in pool_keys])
        spread = np.zeros(len(pool_keys))
        for target in targets:
            z = np.log(targets_of(evaluations, target) / design.baseline(target, "roofline"))
            spread += uncertainty(design.x, z, pool_x, random_state)
        room = limit - len(costs) - len(failures)
        picked = [pool_keys[i] for i in np.argsort(-spread, kind="stable")[:min(size, room)]]
        before = len(costs)
        evaluate_into([pool.pop(k) for k in picked], evaluate, costs, failures)
        new = [k for k in picked if k in costs]
        mape = {}
        for target in targets:
            truth = targets_of([costs[k] for k in new], target)
            guess = predictors[target].predict([by_key[k] for k in new])
            mape[target] = 100 * float(np.mean(np.abs(guess / truth - 1))) if new else 0.0
        done = len(costs) + len(failures)
        rounds.append(ActiveRound(done, done / total, len(costs) - before, mape))
        if new and all(m <= target_mape for m in mape.values()):
            return ActiveResult(costs, failures, tuple(rounds), True)
    return ActiveResult(costs, failures, tuple(rounds), False)
