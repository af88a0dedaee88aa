"""`costmodel fit` and `costmodel lut`: the regression predictors and the LUT with provenance.


- ``add_fit_parser(subparsers)``: ``costmodel fit`` evaluates a space-filling sample (or an active
  one) of a network's unique workloads, fits cycles and energy predictors, checks them on the
  rest and, with ``--test-model``, on networks it never saw; writes the predictor file, the
  accuracy tables and a predicted-vs-evaluated plot. On a measured device (``--backend torch``,
  no ``--arch``) it fits latency only and times a sample again to report the repeat noise.
- ``add_lut_parser(subparsers)``: ``costmodel lut`` writes the LUT with provenance, evaluated or
  predicted, as CSV or JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from costmodels.cli.args import (
    add_grid_arguments,
    add_source_arguments,
    fraction,
    network_layers,
    positive_float,
    rank_grid,
)
from costmodels.cli.sweep_args import (
    SweepProgress,
    add_backend_arguments,
    backend_from_args,
    cache_from_args,
    report_failures,
    target_from_args,
)
from costmodels.io_utils import atomic_write_text, check_output_file, check_output_folder, output_folder

if TYPE_CHECKING:
    from costmodels.problems.candidates import LayerCandidates
    from costmodels.problems.workloads import Workload
    from costmodels.sweep.records import WorkloadCost, WorkloadFailure
    from costmodels.backends import Backend, Target


def _add_common(parser: argparse.ArgumentParser) -> None:
    from costmodels.predictors.estimators import ESTIMATORS

    parser.add_argument("--arch", help="target under arch_specs/ or a spec folder (required except with "
                                       "--backend torch)")
    add_source_arguments(parser)
    add_grid_arguments(parser)
    add_backend_arguments(parser, measured=True)
    group = parser.add_argument_group("predictor")
    group.add_argument("--budget", type=fraction, default=0.2,
                       help="share of the unique workloads to evaluate for fitting (default 0.2)")
    group.add_argument("--estimator", default="auto", choices=("auto", *ESTIMATORS),
                       help="auto (default): the best of gbt, rf, poly, roofline by cross-validation")
    group.add_argument("--seed", type=int, default=0, help="random seed of the estimators (default 0)")


def add_fit_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("fit", help="fit cycles and energy predictors on a sample; report accuracy")
    _add_common(parser)
    parser.add_argument("--extra-model", nargs="*", default=[], metavar="NAME",
                        help="built-in models whose candidates join the training sweep")
    parser.add_argument("--test-model", nargs="*", default=[], metavar="NAME",
                        help="built-in models never trained on: evaluate them fully and report accuracy")
    parser.add_argument("--active", action="store_true",
                        help="start from --budget, then add the workloads the predictors are least sure of, in "
                             "batches, until a batch is within --target-mape or --max-budget is spent")
    parser.add_argument("--target-mape", type=positive_float, default=2.0, help="active sampling: stop at this MAPE %%")
    parser.add_argument("--max-budget", type=fraction, default=0.5, help="active sampling: at most this share")
    parser.add_argument("--batch-share", type=fraction, default=0.02,
                        help="active sampling: share of the workloads added per batch (default 0.02)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not evaluate the rest: report the cross-validated error on the sample only")
    parser.add_argument("--out", type=Path, help="output folder (default predictors/NETWORK-ARCH)")
    parser.set_defaults(func=cmd_fit)
    return parser


def add_lut_parser(subparsers: Any) -> argparse.ArgumentParser:
    from costmodels.lut.export import FORMATS

    parser = subparsers.add_parser("lut", help="the latency LUT with provenance, evaluated or predicted")
    _add_common(parser)
    parser.add_argument("--source", choices=("evaluate", "predict"), default="evaluate",
                        help="evaluate every workload (default), or evaluate --budget of them and predict the rest")
    parser.add_argument("--predictor", type=Path,
                        help="with --source predict: a file from `costmodel fit`; predicts every workload")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or json")
    parser.add_argument("--out", type=Path, help="output file (default luts/NETWORK-ARCH/lut-SOURCE.FORMAT)")
    parser.set_defaults(func=cmd_lut)
    return parser


class _Evaluator:
    """Evaluations through the sweep (cache, jobs, scheduler), with a progress line per batch."""

    def __init__(self, args: argparse.Namespace, spec: "Target", backend: "Backend"):
        self.args = args
        self.spec = spec
        self.backend = backend
        self.cache = cache_from_args(args)
        self.failures: list[WorkloadFailure] = []

    def __call__(self, workloads: Sequence["Workload"], label: str = "") -> dict[str, "WorkloadCost | WorkloadFailure"]:
        from costmodels.sweep.records import WorkloadFailure
        from costmodels.sweep.runner import run_sweep

        with SweepProgress(label or f"evaluating on {self.spec.name}") as progress:
            results = run_sweep(workloads, self.spec, self.backend, cache=self.cache, jobs=self.args.jobs,
                                scheduler=self.args.scheduler, progress=progress)
        self.failures += [r for r in results.values() if isinstance(r, WorkloadFailure)]
        return results

    def remeasure(self, workloads: Sequence["Workload"]) -> dict[str, "WorkloadCost"]:
        """Time ``workloads`` again, past the cache (a measured target's repeat noise)."""
        from costmodels.sweep.runner import run_sweep

        with SweepProgress(f"timing {len(workloads)} workloads again") as progress:
            return _successes(run_sweep(workloads, self.spec, self.backend, progress=progress))

    def __enter__(self) -> "_Evaluator":
        if self.cache is not None:
            self.cache.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cache is not None:
            self.cache.__exit__(*exc)


def _successes(results: dict[str, Any]) -> dict[str, "WorkloadCost"]:
    from costmodels.sweep.records import WorkloadCost
    return {k: v for k, v in results.items() if isinstance(v, WorkloadCost)}


def _networks(args: argparse.Namespace, extra: Sequence[str]) -> list[tuple[str, list["LayerCandidates"]]]:
    """The network the source flags name, then the built-in models ``extra``, with their candidates."""
    from costmodels.problems.candidates import network_candidates

    name, layers = network_layers(args)
    return [(name, network_candidates(layers, rank_grid(args)))] + _built_in(args, extra)


def _built_in(args: argparse.Namespace, names: Sequence[str]) -> list[tuple[str, list["LayerCandidates"]]]:
    from costmodels.network.zoo import zoo_layers
    from costmodels.problems.candidates import network_candidates

    return [(m, network_candidates(zoo_layers(m), rank_grid(args))) for m in names]


def _grid_text(args: argparse.Namespace) -> str:
    return (f"step {args.step} (<=64 channels: {args.step64}, <=32: {args.step32}), "
            f"{'all (r1, r2) pairs' if args.full_grid else 'r1 = r2'}")


def cmd_fit(args: argparse.Namespace) -> int:
    from costmodels.backends import DeviceTarget
    from costmodels.predictors.accuracy import (accuracy_table, assess, noise_table, plot_predicted_vs_evaluated,
                                                repeat_noise, repeat_sample, summary_line)
    from costmodels.predictors.estimators import comparison_table, fit_predictors
    from costmodels.predictors.persistence import save_predictors
    from costmodels.predictors.sampling import active_sampling, space_filling
    from costmodels.problems.workloads import network_workloads

    backend = backend_from_args(args)
    spec = target_from_args(args, backend)
    networks = _networks(args, args.extra_model)
    tests = _built_in(args, args.test_model)
    layers = [lc for _, network in networks for lc in network]
    unique = network_workloads(layers).unique
    name = "+".join(n for n, _ in networks)
    out = args.out or Path("predictors") / f"{name}-{spec.name}"
    check_output_folder(out)
    with _Evaluator(args, spec, backend) as evaluate:
        start = time.perf_counter()
        if args.active:
            active = active_sampling(layers, spec, lambda ws: evaluate(ws, "active sample"), start=args.budget,
                                     budget=max(args.budget, args.max_budget), batch=args.batch_share,
                                     target_mape=args.target_mape, estimator=args.estimator,
                                     random_state=args.seed)
            costs = active.costs
            for r in active.rounds:
                print(f"active: {r.evaluated} evaluated ({r.fraction:.1%}), batch of {r.batch}: MAPE before training "
                      f"on it " + ", ".join(f"{t} {m:.2f}%" for t, m in r.batch_mape.items()))
            print(f"active sampling {'reached' if active.reached_target else 'did not reach'} the "
                  f"{args.target_mape:g}% target with {len(costs)} workloads")
        else:
            sample = space_filling(layers, args.budget, spec)
            costs = _successes(evaluate(sample.chosen, f"sample of {name}"))
        evaluate_s = time.perf_counter() - start
        start = time.perf_counter()
        predictors = fit_predictors([unique[k] for k in costs], list(costs.values()), spec, args.estimator,
                                    args.seed)
        fit_s = time.perf_counter() - start
        rows, panels = [], []
        checked = dict(costs)
        if not args.no_check:
            rest = [w for k, w in unique.items() if k not in costs]
            checked.update(_successes(evaluate(rest, f"rest of {name}")))
            result = assess("held-out ranks", networks, checked, unique, costs, predictors)
            rows += result.rows
            panels += result.panels
        for test_name, test_layers in tests:
            test_unique = network_workloads(test_layers).unique
            test_checked = _successes(evaluate(list(test_unique.values()), f"{test_name} (held out)"))
            result = assess(f"held-out network {test_name}", [(test_name, test_layers)], test_checked, test_unique,
                            costs, predictors)
            rows += result.rows
            panels += result.panels
        noise = None
        if isinstance(spec, DeviceTarget):   # a measured truth: how far two timings of a workload differ
            noise = repeat_noise(checked, evaluate.remeasure([unique[k] for k in repeat_sample(checked)]))
        failures = list(evaluate.failures)
    comparisons = "\n\n".join(f"{target} (cross-validated on the {len(costs)} sampled workloads):\n\n"
                              f"{comparison_table(predictors[target].comparison_)}"
                              for target in predictors.targets if predictors[target].comparison_)
    summary = summary_line(rows) if rows else "not checked (--no-check)"
    if noise is not None:
        summary += f" | {noise.line()}"
    provenance = {"networks": [n for n, _ in networks], "rank_grid": _grid_text(args), "budget": args.budget,
                  "active": args.active, "trained_on": len(costs), "unique_workloads": len(unique),
                  "backend": evaluate.backend.name, "backend_version": evaluate.backend.version,
                  "accuracy": summary, "accuracy_rows": [_row_dict(r) for r in rows],
                  **({"repeat_noise": noise.__dict__} if noise is not None else {})}
    report = [f"# Predictors for {name} on {spec.name} (spec {spec.content_hash})", "",
              f"Trained on {len(costs)} of {len(unique)} unique workloads ({len(costs) / len(unique):.1%}); "
              f"estimators: {_estimators(predictors)}.", ""]
    if rows:
        report += ["## Accuracy", "", accuracy_table(rows), ""]
    if noise is not None:
        report += ["## Prediction error beside repeat-measurement noise", "", noise_table(noise, rows), ""]
    if comparisons:
        report += ["## Estimator comparison", "", comparisons, ""]
    with output_folder(out) as staging:   # the predictor and its accuracy files: all or none
        save_predictors(staging / "predictor.zip", predictors, provenance)
        atomic_write_text(staging / "accuracy.md", "\n".join(report))
        atomic_write_text(staging / "accuracy.json", json.dumps(
            {"provenance": provenance, "comparison": {t: [c.__dict__ for c in predictors[t].comparison_]
                                                      for t in predictors.targets}}, indent=1) + "\n")
        if panels:
            plot_predicted_vs_evaluated(panels, staging / "accuracy.png")
    predictor_path = out / "predictor.zip"
    print("\n".join(report))
    print(f"evaluated {len(costs)} workloads in {evaluate_s:.1f} s, fitted in {fit_s:.1f} s")
    print(f"wrote {predictor_path}, {out / 'accuracy.md'}, {out / 'accuracy.json'}"
          + (f", {out / 'accuracy.png'}" if panels else ""))
    return 1 if report_failures(failures, len(unique)) else 0


def _row_dict(row: Any) -> dict[str, Any]:
    return {"scope": row.scope, "target": row.target, "level": row.level, "estimator": row.estimator,
            "train": row.train, **row.metrics.__dict__}


def cmd_lut(args: argparse.Namespace) -> int:
    from costmodels.errors import CostModelError
    from costmodels.lut.export import export_lut, provenance, sourced_lut
    from costmodels.predictors.estimators import fit_predictors
    from costmodels.predictors.persistence import load_predictors
    from costmodels.predictors.sampling import space_filling
    from costmodels.problems.workloads import network_workloads

    if args.predictor is not None and args.source != "predict":
        raise CostModelError("--predictor needs --source predict")
    backend = backend_from_args(args)
    spec = target_from_args(args, backend)
    (name, layers), = _networks(args, ())
    unique = network_workloads(layers).unique
    path = args.out or Path("luts") / f"{name}-{spec.name}" / f"lut-{args.source}.{args.format}"
    check_output_file(path)
    predictor_text, accuracy = "", ""
    with _Evaluator(args, spec, backend) as evaluate:
        if args.source == "evaluate":
            evaluated = evaluate(list(unique.values()), f"{name} on {spec.name}")
            predicted: dict[str, WorkloadCost] = {}
        elif args.predictor is not None:
            loaded = load_predictors(args.predictor, spec)
            evaluated, predictors = {}, loaded.predictors
            accuracy = str(loaded.metadata.get("provenance", {}).get("accuracy", ""))
            predictor_text = f"{args.predictor.name}: " + _estimators(predictors)
        else:
            sample = space_filling(layers, args.budget, spec)
            evaluated = evaluate(sample.chosen, f"sample of {name}")
            costs = _successes(evaluated)
            predictors = fit_predictors([unique[k] for k in costs], list(costs.values()), spec, args.estimator,
                                        args.seed)
            if args.estimator == "auto":
                accuracy = "cross-validated on the sample: " + "; ".join(
                    f"{t} MAPE {min(c.mape for c in predictors[t].comparison_):.2f}%" for t in predictors.targets)
            predictor_text = f"fitted on {len(costs)} sampled workloads ({args.budget:g}): " + _estimators(predictors)
        if args.source == "predict":
            measured = _successes(evaluated)
            predicted = predictors.predict_costs([w for k, w in unique.items() if k not in measured])
        failures = list(evaluate.failures)
        backend = evaluate.backend
    table = sourced_lut(name, layers, spec, evaluated, predicted, backend.name, backend.version)
    header = provenance(table.lut, args.source, predictor=predictor_text, accuracy=accuracy,
                        evaluated=len(_successes(evaluated)), predicted=len(predicted),
                        extra={"rank_grid": _grid_text(args)})
    export_lut(table, header, path, args.format)
    print(f"{name} on {spec.name}: {len(table.lut.rows)} LUT rows "
          f"({table.sources.count('evaluated')} evaluated, {table.sources.count('predicted')} predicted)")
    print(f"wrote {path}")
    return 1 if report_failures(failures, len(unique)) else 0


def _estimators(predictors: Any) -> str:
    return ", ".join(f"{t} {predictors[t].estimator_}" for t in predictors.targets)

