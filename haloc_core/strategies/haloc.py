"""HALOC's rank search (Xiao et al., AAAI 2023, Eq. 6-9) on the weight-shared supernet.

Each searched layer i has architecture logits ``alpha_i`` over its options (the LUT's rank candidates and
the original layer); ``p_i = softmax(alpha_i)``. After ``warmup_steps`` weight-only steps, every step does

* a weight step on a training batch: one option per layer sampled from ``p``, the supernet run on that path
  (one candidate's compute) and its weights trained by SGD on
  ``L_weight = L_CE + lambda * sum_i MSE(Fmap_i, Fmap_orig_i)`` (Eq. 8-9), where ``Fmap_orig_i`` is the
  trained network's own output of layer i on the same images (forward hooks);
* an alpha step on a validation batch (carved from the training data, never the test split): every layer a
  Gumbel-softmax mixture of its options at temperature ``tau`` (annealed geometrically from
  ``temperature_start`` to ``temperature_end``), and Adam on ``alpha`` with
  ``L_prob = L_CE * eta * (E / eps) ** theta`` (Eq. 7), ``E = fixed + sum_i sum_j p_ij c_ij`` (Eq. 6) on the
  deterministic softmax; the hinge variant uses ``max(E / eps, 1)``, penalising only overshoot.

The final choice is each layer's most probable option; when that overshoots ``eps`` the exact multiple-choice
knapsack picks the feasible choice of largest ``sum_i log p_ij`` (closest to the learned probabilities).

Defaults (no public source gives eta, theta, lambda; the optimiser settings follow FBNet / ComCAT): the hinge
variant, eta = 1, theta = 2, lambda = 1, Adam lr 0.002 and weight decay 5e-4 on alpha, SGD Nesterov lr 0.01
on the weights, temperature 5 -> 0.1, 200 steps with 40 warm-up steps, batch 64. Why the hinge and the small
alpha lr: on digits-cnn / Eyeriss (seed 0, budgets 0.2 / 0.3 / 0.5), Eq. 7 as printed with Adam lr 0.05
drove every layer to its cheapest option at every budget (cost 0.137 of the original), since
``(E / eps) ** theta`` rewards any cost cut even far under the budget; the hinge with lr 0.002 kept the
learned preferences soft and the knapsack then filled the budget (cost 0.199 / 0.289 and higher accuracy
before and after fine-tuning). ``benchmarks/search_digits.py`` compares both forms on 5 seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

from costmodels import CostModelError
from haloc_core.cost import CostTable
from haloc_core.data import Split, SplitData
from haloc_core.knapsack import solve_knapsack
from haloc_core.space import SearchSpace
from haloc_core.strategies.base import Choice
from haloc_core.supernet import Supernet, get_module


@dataclass(frozen=True)
class HalocConfig:
    steps: int = 200
    warmup_steps: int = 40
    batch_size: int = 64
    eta: float = 1.0
    theta: float = 2.0
    lambda_: float = 1.0
    hinge: bool = True
    alpha_lr: float = 0.002
    alpha_weight_decay: float = 5e-4
    weight_lr: float = 0.01
    weight_momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature_start: float = 5.0
    temperature_end: float = 0.1
    record_every: int = 5

    def __post_init__(self) -> None:
        if self.steps < 1 or not 0 <= self.warmup_steps < self.steps:
            raise CostModelError(f"HALOC needs --steps >= 1 and 0 <= --warmup-steps < --steps, got "
                                 f"{self.steps} and {self.warmup_steps}")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise CostModelError(f"--temperature {self.temperature_start} {self.temperature_end}: needs "
                                 "0 < END <= START")

    def temperature(self, step: int) -> float:
        """Geometric annealing over the alpha steps."""
        span = max(self.steps - self.warmup_steps - 1, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** t

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["lambda"] = values.pop("lambda_")
        return values


def _batches(split: Split, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from split.batches(batch_size, generator)


def cost_factor(expected: torch.Tensor, eps: float, config: HalocConfig) -> torch.Tensor:
    """``eta * (E / eps) ** theta`` (Eq. 7), or with ``max(E / eps, 1)`` in the hinge variant."""
    ratio = expected / eps
    if config.hinge:
        ratio = torch.clamp(ratio, min=1.0)
    return config.eta * ratio ** config.theta


class HalocStrategy:
    name = "haloc"

    def __init__(self, config: HalocConfig = HalocConfig(),
                 progress: Callable[[int, int, float], None] | None = None):
        self.config = config
        self.progress = progress

    def search(self, model: Any, space: SearchSpace, cost: CostTable, data: SplitData, eps: float,
               seed: int) -> Choice:
        start = time.perf_counter()
        config = self.config
        device = model.device
        torch.manual_seed(seed)
        supernet = Supernet(model.module, space.layers).to(device).train()
        original = model.module.to(device).eval()
        alphas = [torch.zeros(len(layer.ranks), device=device, requires_grad=True) for layer in space.layers]
        weights = [p for p in supernet.parameters() if p.requires_grad]
        weight_optimizer = torch.optim.SGD(weights, lr=config.weight_lr, momentum=config.weight_momentum,
                                           nesterov=True, weight_decay=config.weight_decay)
        alpha_optimizer = torch.optim.Adam(alphas, lr=config.alpha_lr, weight_decay=config.alpha_weight_decay)
        generator = torch.Generator().manual_seed(seed)
        train_batches = _batches(data.train, config.batch_size, generator)
        val_batches = _batches(data.val, config.batch_size, generator)

        feature_maps: dict[str, torch.Tensor] = {}
        original_maps: dict[str, torch.Tensor] = {}
        hooks = []
        for name, layer in zip(supernet.names, supernet.layers):
            hooks.append(layer.register_forward_hook(lambda _m, _i, out, n=name: feature_maps.__setitem__(n, out)))
            hooks.append(get_module(original, name).register_forward_hook(
                lambda _m, _i, out, n=name: original_maps.__setitem__(n, out.detach())))

        history: dict[str, Any] = {"steps": [], "probabilities": [], "expected_cost": [], "temperature": [],
                                   "weight_loss": [], "alpha_loss": []}
        try:
            for step in range(config.steps):
                probabilities = [torch.softmax(a.detach(), 0) for a in alphas]
                weight_loss = self._weight_step(supernet, original, probabilities, next(train_batches), device,
                                                feature_maps, original_maps, weight_optimizer, generator)
                alpha_loss = float("nan")
                temperature = config.temperature(step)
                if step >= config.warmup_steps:
                    alpha_loss = self._alpha_step(supernet, alphas, next(val_batches), device, cost, eps,
                                                  temperature, alpha_optimizer, generator)
                if step % config.record_every == 0 or step == config.steps - 1:
                    with torch.no_grad():
                        probabilities = [torch.softmax(a, 0) for a in alphas]
                        history["steps"].append(step)
                        history["probabilities"].append([[round(float(x), 6) for x in p] for p in probabilities])
                        history["expected_cost"].append(float(cost.expected(probabilities)))
                        history["temperature"].append(round(temperature, 6))
                        history["weight_loss"].append(round(weight_loss, 6))
                        history["alpha_loss"].append(None if alpha_loss != alpha_loss else round(alpha_loss, 6))
                if self.progress is not None:
                    self.progress(step + 1, config.steps, weight_loss)
        finally:
            for hook in hooks:
                hook.remove()

        probabilities = [torch.softmax(a.detach(), 0).cpu().double().numpy() for a in alphas]
        argmax = tuple(int(np.argmax(p)) for p in probabilities)
        repaired = cost.total(argmax) > eps
        indices = argmax
        if repaired:
            scores = [np.log(np.maximum(p, 1e-300)) for p in probabilities]
            indices = solve_knapsack(cost.arrays, eps, scores, fixed=cost.fixed)
        history.update(final_probabilities=[[float(x) for x in p] for p in probabilities], argmax=list(argmax),
                       argmax_cost=cost.total(argmax), repaired=repaired, config=config.as_dict())
        return Choice(self.name, tuple(int(i) for i in indices), time.perf_counter() - start, history)

    def _weight_step(self, supernet: Supernet, original: torch.nn.Module, probabilities: list[torch.Tensor],
                     batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                     feature_maps: dict[str, torch.Tensor], original_maps: dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        images, labels = batch[0].to(device), batch[1].to(device)
        choices = [int(torch.multinomial(p.cpu(), 1, generator=generator)) for p in probabilities]
        supernet.sample(choices)
        logits = supernet(images)
        loss = functional.cross_entropy(logits, labels)
        if self.config.lambda_:
            with torch.no_grad():
                original(images)
            mse = sum(functional.mse_loss(feature_maps[n], original_maps[n]) for n in supernet.names)
            loss = loss + self.config.lambda_ * mse
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def _alpha_step(self, supernet: Supernet, alphas: list[torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor],
                    device: torch.device, cost: CostTable, eps: float, temperature: float,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        images, labels = batch[0].to(device), batch[1].to(device)
        gates = []
        for alpha in alphas:
            uniform = torch.rand(alpha.shape, generator=generator).clamp_(1e-10, 1 - 1e-10).to(device)
            gumbel = -torch.log(-torch.log(uniform))
            gates.append(torch.softmax((alpha + gumbel) / temperature, 0))
        supernet.mix(gates)
        ce = functional.cross_entropy(supernet(images), labels)
        expected = cost.expected([torch.softmax(a, 0) for a in alphas])
        loss = ce * cost_factor(expected, eps, self.config).to(ce.dtype)
        grads = torch.autograd.grad(loss, alphas)
        optimizer.zero_grad(set_to_none=True)
        for alpha, grad in zip(alphas, grads):
            alpha.grad = grad
        optimizer.step()
        supernet.mix([None] * len(alphas))
        return float(loss.detach())
