"""One rank search end to end: trained network -> LUT on the target -> search space -> budget -> each method's
choice -> compressed network -> the same fixed fine-tune -> report.

The output folder is written as a temporary folder beside ``out`` and renamed into place at the end, so an
interrupted run (Ctrl-C) leaves no half-written folder; a previous folder of that name is replaced only then.
"""

from __future__ import annotations

import io
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from costmodels import (LUT, CostModelError, LoadedLUT, RankGrid, __version__, atomic_write_bytes, build_lut,
                        load_lut, load_spec, network_candidates, network_workloads, zoo_layers)
from haloc_core.budget import parse_budget
from haloc_core.cost import CostTable, Objective
from haloc_core.data import Dataset, load_dataset
from haloc_core.model import TrainedNetwork, module_with_weights, trained_zoo_model
from haloc_core.report import MethodResult, NetworkCost, method_entry, network_cost_dict, write_outputs
from haloc_core.space import SearchSpace, space_from_lut
from haloc_core.strategies import get_strategy
from haloc_core.strategies.base import Choice
from haloc_core.strategies.haloc import HalocConfig, HalocStrategy
from haloc_core.train import DIGITS_FINETUNE, DIGITS_TRAIN, TrainConfig, default_device, evaluate, train

METHODS = ("haloc", "uniform", "vbmf", "error", "anneal", "random")


@dataclass(frozen=True)
class ModelSource:
    """A zoo model (trained here first, cached per seed) or ``PKG.MODULE:FACTORY`` plus a weights file."""

    zoo: str | None = None
    factory: Callable[[], nn.Module] | None = None
    factory_name: str = ""
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SearchRequest:
    target: str                       # a name under arch_specs/ or a spec folder (unused when ``lut`` is given)
    model: ModelSource
    data: str
    budget: str
    out: Path
    objective: Objective = Objective.LATENCY
    methods: tuple[str, ...] = ("haloc",)
    seed: int = 0
    data_dir: Path | None = None
    lut: Path | None = None
    grid: RankGrid = RankGrid()
    haloc: HalocConfig = HalocConfig()
    train: TrainConfig = DIGITS_TRAIN
    finetune: TrainConfig = DIGITS_FINETUNE
    model_cache: Path | None = None
    hooi_iterations: int = 0          # HOOI refinement of each chosen layer's HOSVD (0: plain truncated HOSVD)


class Progress:
    """Progress lines on stderr at most every ``interval_s`` seconds, and at each stage's end."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 5.0):
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.last = 0.0

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def stage(self, label: str) -> Callable[[int, int, float], None]:
        def report(done: int, total: int, loss: float) -> None:
            now = time.monotonic()
            if done == total or now - self.last >= self.interval_s:
                self.last = now
                self.note(f"{label}: {done}/{total}, loss {loss:.4f}")
        return report


@dataclass(frozen=True)
class Prepared:
    """What every method shares: data, the trained network, the LUT's space and costs, the budget."""

    network_name: str
    dataset: Dataset
    network: TrainedNetwork
    space: SearchSpace
    cost: CostTable
    eps: float
    rows: tuple[Any, ...]          # LUT rows (``LUT.rows`` or ``LoadedLUT.entries``)
    original_accuracy: float
    timing: dict[str, float]


def _layers_and_module(request: SearchRequest, dataset: Dataset, device: torch.device, progress: Progress):
    source = request.model
    if source.zoo is not None:
        progress.note(f"training {source.zoo} on {dataset.name} (seed {request.seed}) unless cached")
        module, cached = trained_zoo_model(source.zoo, dataset, request.train, request.seed, request.model_cache,
                                           device, progress.stage(f"train {source.zoo}"))
        if cached:
            progress.note(f"{source.zoo}: trained weights from the cache")
        return source.zoo, module, lambda: zoo_layers(source.zoo)
    if source.factory is None or source.weights is None:
        raise CostModelError("give --model NAME, or --module PKG.MODULE:FACTORY with --weights FILE")
    module = module_with_weights(source.factory, source.weights, device)
    shape = source.input_shape or (1, *tuple(dataset.train.images.shape[1:]))

    def layers():
        from costmodels import layers_from_module
        return layers_from_module(module.cpu(), shape)
    return source.factory_name, module, layers


def prepare(request: SearchRequest, progress: Progress, lut_cache: Any = None) -> Prepared:
    timing: dict[str, float] = {}
    start = time.perf_counter()
    device = default_device()
    dataset = load_dataset(request.data, request.data_dir)
    name, module, layers = _layers_and_module(request, dataset, device, progress)
    timing["train_s"] = time.perf_counter() - start
    module = module.to(device).eval()
    original_accuracy = evaluate(module, dataset.test, device)

    start = time.perf_counter()
    if request.lut is not None:
        lut: LUT | LoadedLUT = load_lut(request.lut)
        rows = lut.entries
    else:
        spec = load_spec(request.target)
        workloads = network_workloads(network_candidates(layers(), request.grid))
        progress.note(f"pricing {len(workloads.unique)} workloads of {name} on {spec.name}")
        lut = build_lut(name, workloads, spec, cache=lut_cache)
        rows = lut.rows
    space = space_from_lut(lut)
    module = module.to(device)
    cost = CostTable.from_space(space, request.objective)
    eps = parse_budget(request.budget, space, request.objective)
    timing["lut_s"] = time.perf_counter() - start
    network = TrainedNetwork(module, tuple(layer.layer for layer in space.layers), device, request.hooi_iterations)
    return Prepared(name, dataset, network, space, cost, eps, tuple(rows), original_accuracy, timing)


def make_strategy(method: str, request: SearchRequest, progress: Progress, haloc: HalocConfig | None = None):
    if method == "haloc":
        return HalocStrategy(haloc or request.haloc, progress.stage("haloc search"))
    return get_strategy(method)()


def network_cost(prepared: Prepared, ranks: dict[str, tuple[int, int] | None]) -> NetworkCost:
    """Totals over every conv layer of the LUT: the chosen option of a searched layer, else the original."""
    chosen: dict[str, Any] = {}
    for row in prepared.rows:
        is_original = row.form == "original"
        target = ranks.get(row.layer)
        if (is_original and target is None) or (not is_original and target == (row.r1, row.r2)):
            chosen[row.layer] = row
    cycles = [float(r.cycles) for r in chosen.values()]
    energy = [float(r.energy_pj) for r in chosen.values()]
    latency = sum(float(r.latency_s) for r in chosen.values())
    finite = lambda values: sum(values) if all(math.isfinite(v) for v in values) else None
    return NetworkCost(finite(cycles), finite(energy), latency, 1.0 / latency if latency > 0 else math.inf,
                       sum(int(r.macs) for r in chosen.values()), sum(int(r.params) for r in chosen.values()))


def compress_and_finetune(prepared: Prepared, choice: Choice, finetune: TrainConfig, seed: int
                          ) -> tuple[MethodResult, nn.Module, float]:
    space, cost = prepared.space, prepared.cost
    ranks = {layer.layer: layer.ranks[index] for layer, index in zip(space.layers, choice.indices)}
    start = time.perf_counter()
    compressed = prepared.network.compressed(ranks)
    device = prepared.network.device
    before = evaluate(compressed, prepared.dataset.test, device)
    train(compressed, prepared.dataset.train, finetune, seed, device)
    after = evaluate(compressed, prepared.dataset.test, device)
    total = cost.total(choice.indices)
    result = MethodResult(choice.method, {k: None if v is None else list(v) for k, v in ranks.items()}, total,
                          total / cost.original_total, total <= prepared.eps, network_cost(prepared, ranks),
                          before, after, choice.history)
    return result, compressed, time.perf_counter() - start


def _option_labels(space: SearchSpace) -> list[list[str]]:
    return [["orig" if r is None else (f"r{r[0]}" if r[0] == r[1] else f"{r[0]}x{r[1]}") for r in layer.ranks]
            for layer in space.layers]


def build_report(request: SearchRequest, prepared: Prepared, results: list[MethodResult],
                 timing: dict[str, Any]) -> dict[str, Any]:
    cost, primary = prepared.cost, results[0]
    original = network_cost(prepared, {})
    eps_cycles = None
    if request.objective is Objective.LATENCY:
        eps_cycles = prepared.eps if cost.unit == "cycles" else (
            prepared.eps * prepared.space.clock_hz if prepared.space.clock_hz else None)
    methods = [method_entry(r) for r in results]
    report = {
        "network": prepared.network_name, "target": prepared.space.target, "data": prepared.dataset.name,
        "seed": request.seed, "objective": request.objective.value, "budget": request.budget,
        "eps": prepared.eps, "eps_unit": cost.unit, "eps_cycles": eps_cycles, "original_cost": cost.original_total,
        **{k: v for k, v in methods[0].items() if k not in ("accuracy_before_finetune", "accuracy_after_finetune")},
        "original_cycles": original.cycles, "original_energy_pj": original.energy_pj,
        "original": network_cost_dict(original),
        "speedup": (original.latency_s / primary.network.latency_s) if primary.network.latency_s else None,
        "accuracy": {"original": prepared.original_accuracy, "before_finetune": primary.accuracy_before_finetune,
                     "after_finetune": primary.accuracy_after_finetune},
        "methods": methods,
        "search_history": {r.method: r.history for r in results if r.history},
        "hyperparameters": {"haloc": request.haloc.as_dict(), "train": asdict(request.train),
                            "finetune": asdict(request.finetune), "grid": asdict(request.grid),
                            "hooi_iterations": request.hooi_iterations,
                            "methods": list(request.methods)},
        "versions": {"haloc-costmodels": __version__, "torch": torch.__version__},
        "timing": timing,
    }
    if "haloc" in report["search_history"]:
        report["search_history"]["haloc"]["option_labels"] = _option_labels(prepared.space)
    return report


def run_search(request: SearchRequest, progress: Progress | None = None, lut_cache: Any = None) -> dict[str, Any]:
    """Run every requested method; write the output folder; return the report."""
    progress = progress or Progress()
    out = request.out
    if out.exists() and not out.is_dir():
        raise CostModelError(f"--out {out}: exists and is not a folder")
    unknown = [m for m in request.methods if m not in METHODS]
    if unknown:
        raise CostModelError(f"unknown search method '{unknown[0]}'; available: {', '.join(METHODS)}, all")
    start = time.perf_counter()
    prepared = prepare(request, progress, lut_cache)
    results, weights, timing = [], {}, dict(prepared.timing)
    for method in request.methods:
        progress.note(f"{method}: searching")
        choice = make_strategy(method, request, progress).search(
            prepared.network, prepared.space, prepared.cost, prepared.dataset.search_data, prepared.eps, request.seed)
        result, compressed, finetune_s = compress_and_finetune(prepared, choice, request.finetune, request.seed)
        progress.note(f"{method}: cost ratio {result.cost_ratio:.3f} (budget met: {result.budget_met}), test "
                      f"accuracy {result.accuracy_before_finetune:.4f} -> {result.accuracy_after_finetune:.4f} "
                      "after fine-tune")
        timing[f"{method}_search_s"], timing[f"{method}_finetune_s"] = choice.search_time_s, finetune_s
        results.append(result)
        weights[method] = {k: v.detach().cpu() for k, v in compressed.state_dict().items()}
    timing["total_s"] = time.perf_counter() - start
    report = build_report(request, prepared, results, {k: round(v, 3) for k, v in timing.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for method, state in weights.items():
            buffer = io.BytesIO()
            torch.save(state, buffer)
            atomic_write_bytes(staging / "weights" / f"{method}.pt", buffer.getvalue())
        write_outputs(staging, report, results, [layer.layer for layer in prepared.space.layers], prepared.eps,
                      prepared.cost.unit, prepared.cost.original_total)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _publish(staging: Path, out: Path) -> None:
    """Move the finished folder into place; an older folder of that name goes only after the new one is in."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
