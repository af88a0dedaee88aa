"""`costmodel search`: choose per-layer Tucker-2 ranks under a hardware budget (HALOC and its baselines), a
thin shell over ``haloc_core.pipeline``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from costmodels.cli.args import (add_grid_arguments, int_tuple, nonnegative_float, nonnegative_int, positive_float,
                                 positive_int, rank_grid)


def cmd_search(args: argparse.Namespace) -> int:
    from costmodels.cli.sweep_args import cache_from_args
    from costmodels.network.sources import import_factory
    from haloc_core.cost import Objective
    from haloc_core.pipeline import METHODS, ModelSource, SearchRequest, run_search
    from haloc_core.strategies.haloc import HalocConfig
    from haloc_core.train import DIGITS_FINETUNE, DIGITS_TRAIN

    if args.module:
        source = ModelSource(factory=import_factory(args.module), factory_name=args.module.rpartition(":")[2],
                             weights=args.weights, input_shape=args.input_shape)
    else:
        source = ModelSource(zoo=args.model or "digits-cnn")
    given = lambda **values: {k: v for k, v in values.items() if v is not None}
    temperature = args.temperature or (None, None)
    warmup = args.warmup_steps
    if args.steps is not None and warmup is None:   # keep the default share of weight-only steps
        warmup = args.steps * HalocConfig().warmup_steps // HalocConfig().steps
    haloc = replace(HalocConfig(), **given(
        steps=args.steps, warmup_steps=warmup, batch_size=args.search_batch, eta=args.eta,
        theta=args.theta, lambda_=args.lambda_, hinge=None if args.penalty is None else args.penalty == "hinge",
        alpha_lr=args.alpha_lr,
        weight_lr=args.weight_lr, temperature_start=temperature[0], temperature_end=temperature[1]))
    request = SearchRequest(
        target=args.arch, model=source, data=args.data, data_dir=args.data_dir, budget=args.budget, out=args.out,
        objective=Objective(args.objective), methods=METHODS if args.method == "all" else (args.method,),
        seed=args.seed, lut=args.lut, grid=rank_grid(args), haloc=haloc,
        train=replace(DIGITS_TRAIN, **given(epochs=args.train_epochs, lr=args.train_lr)),
        finetune=replace(DIGITS_FINETUNE, **given(epochs=args.finetune_epochs, lr=args.finetune_lr)),
        hooi_iterations=args.hooi_iterations or 0,
        model_cache=None if args.no_model_cache else (args.model_cache or _default_model_cache()))
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    cache = cache_from_args(args)
    try:
        report = run_search(request, lut_cache=cache)
    finally:
        if cache is not None:
            cache.close()
    for method in report["methods"]:
        print(f"{method['method']:8s} cost {method['cost_ratio']:.3f} of original (budget met: {method['budget_met']}), "
              f"{method['images_per_s']:.1f} images/s, test accuracy {method['accuracy_before_finetune']:.4f} -> "
              f"{method['accuracy_after_finetune']:.4f} after fine-tune")
    print(f"wrote {args.out}/report.json, report.md, ranks.json, weights/, plots/ "
          f"({report['timing']['total_s']:.1f} s)")
    return 0


def _default_model_cache() -> Path:
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("haloc-costmodels")) / "trained-models"


def add_search_parser(sub: Any) -> None:
    """The parser imports nothing heavy (torch loads only when the command runs), so unset HALOC and training
    flags default to None and take the library's defaults (README, "Rank search")."""
    p = sub.add_parser("search", help="choose Tucker-2 ranks per layer under a hardware budget (HALOC, baselines)")
    p.add_argument("--arch", default="eyeriss", help="target under arch_specs/ or a spec folder (default eyeriss)")
    p.add_argument("--lut", type=Path, help="search this LUT file (costmodel build / lut) instead of pricing")
    model = p.add_argument_group("network (one of)")
    model.add_argument("--model", help="built-in model, trained first and cached per seed (default digits-cnn)")
    model.add_argument("--module", help="PKG.MODULE:FACTORY returning a torch.nn.Module (needs --weights)")
    p.add_argument("--weights", type=Path, help="state dict for --module (read with torch.load(weights_only=True))")
    p.add_argument("--input-shape", type=int_tuple, help="input shape for --module (default: the data's)")
    p.add_argument("--data", default="digits", choices=("digits", "cifar10"), help="data set (default digits)")
    p.add_argument("--data-dir", type=Path, help="folder with the CIFAR-10 binary files")
    p.add_argument("--budget", required=True,
                   help="a fraction of the original cost (0.5), or a cost with a unit (1.2e6cycles, 2ms, 3uJ)")
    p.add_argument("--objective", default="latency", choices=("latency", "energy"))
    p.add_argument("--method", default="haloc", choices=("haloc", "uniform", "vbmf", "error", "anneal", "random", "all"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced only when the run finishes)")
    add_grid_arguments(p)
    h = p.add_argument_group("HALOC (defaults in the README)")
    h.add_argument("--steps", type=positive_int, help="alternating search steps (200)")
    h.add_argument("--warmup-steps", type=nonnegative_int, help="weight-only steps first (20%% of --steps)")
    h.add_argument("--search-batch", type=positive_int, help="batch size of the search steps (64)")
    h.add_argument("--eta", type=positive_float, help="Eq. 7 eta (1)")
    h.add_argument("--theta", type=nonnegative_float, help="Eq. 7 theta (2)")
    h.add_argument("--lambda", type=nonnegative_float, dest="lambda_", help="Eq. 8 feature-map MSE weight (1)")
    h.add_argument("--penalty", choices=("hinge", "eq7"),
                   help="hinge: eta * max(E/eps, 1)^theta, penalising only overshoot (default); eq7: "
                        "eta * (E/eps)^theta as printed in the paper")
    h.add_argument("--alpha-lr", type=positive_float, help="Adam learning rate of the alphas (0.002)")
    h.add_argument("--weight-lr", type=positive_float, help="SGD learning rate of the supernet weights (0.01)")
    h.add_argument("--temperature", type=positive_float, nargs=2, metavar=("START", "END"),
                   help="Gumbel-softmax temperature, annealed geometrically (5 0.1)")
    t = p.add_argument_group("training and the fixed fine-tune")
    t.add_argument("--train-epochs", type=positive_int, help="training of a zoo model (8)")
    t.add_argument("--train-lr", type=positive_float, help="(0.05)")
    t.add_argument("--finetune-epochs", type=nonnegative_int, help="the fixed fine-tune of every method (2)")
    t.add_argument("--finetune-lr", type=positive_float, help="(0.01)")
    t.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's; 1 is fastest for tiny nets on a shared machine)")
    t.add_argument("--hooi-iterations", type=nonnegative_int,
                   help="refine each chosen layer's truncated HOSVD by HOOI before fine-tuning (0)")
    t.add_argument("--model-cache", type=Path, help="folder of trained zoo models (default: the user cache)")
    t.add_argument("--no-model-cache", action="store_true", help="always train the zoo model")
    cache = p.add_argument_group("LUT evaluation")
    excl = cache.add_mutually_exclusive_group()
    excl.add_argument("--cache", type=Path, metavar="PATH", help="results cache file")
    excl.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")
    p.set_defaults(func=cmd_search)
