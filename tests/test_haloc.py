"""HALOC's search on a small trained digits CNN priced on Eyeriss: Eq. 7's cost factor, the expected cost it
records, the budget honoured (with the knapsack repair), the lambda = 0 ablation, and reproducibility by
seed. Step counts are tiny: these check behaviour, not search quality (benchmarks/search_digits.py does)."""

import math

import numpy as np
import pytest
import torch

from costmodels import RankGrid, build_lut, load_spec, network_candidates, network_workloads, zoo_layers
from haloc_core.budget import parse_budget
from haloc_core.cost import CostTable, Objective
from haloc_core.data import load_digits_dataset
from haloc_core.knapsack import solve_knapsack
from haloc_core.model import TrainedNetwork, trained_zoo_model
from haloc_core.space import space_from_lut
from haloc_core.strategies.haloc import HalocConfig, HalocStrategy, cost_factor
from haloc_core.train import TrainConfig, evaluate

TINY = HalocConfig(steps=6, warmup_steps=2, batch_size=32, record_every=1)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny convs gain nothing from threads, and on a shared machine spin-waiting threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(one_torch_thread):
    data = load_digits_dataset()
    module, _ = trained_zoo_model("digits-cnn", data, TrainConfig(epochs=1, lr=0.05), 0, None, torch.device("cpu"))
    lut = build_lut("digits-cnn", network_workloads(network_candidates(zoo_layers("digits-cnn"), RankGrid())),
                    load_spec("eyeriss"))
    space = space_from_lut(lut)
    cost = CostTable.from_space(space, Objective.LATENCY)
    network = TrainedNetwork(module, tuple(layer.layer for layer in space.layers), torch.device("cpu"))
    return data, network, space, cost


def test_cost_factor_is_eq7_and_its_hinge():
    expected = torch.tensor(200.0, dtype=torch.float64)
    eq7 = HalocConfig(eta=2.0, theta=3.0, hinge=False)
    assert float(cost_factor(expected, 100.0, eq7)) == pytest.approx(16.0)
    assert float(cost_factor(expected / 4, 100.0, eq7)) == pytest.approx(2.0 / 8)
    hinge = HalocConfig(eta=2.0, theta=3.0, hinge=True)
    assert float(cost_factor(expected / 4, 100.0, hinge)) == pytest.approx(2.0)   # under budget: no penalty
    assert float(cost_factor(expected, 100.0, hinge)) == pytest.approx(16.0)


def test_temperature_anneals_from_start_to_end():
    config = HalocConfig(steps=11, warmup_steps=1, temperature_start=5.0, temperature_end=0.1)
    assert config.temperature(0) == pytest.approx(5.0) and config.temperature(1) == pytest.approx(5.0)
    assert config.temperature(10) == pytest.approx(0.1)
    temperatures = [config.temperature(s) for s in range(11)]
    assert temperatures == sorted(temperatures, reverse=True)


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_budget_is_honoured_and_the_repair_is_the_knapsack(setup, fraction):
    data, network, space, cost = setup
    eps = parse_budget(str(fraction), space, Objective.LATENCY)
    choice = HalocStrategy(TINY).search(network, space, cost, data.search_data, eps, seed=1)
    assert cost.total(choice.indices) <= eps
    history = choice.history
    probabilities = [np.asarray(p) for p in history["final_probabilities"]]
    assert history["argmax"] == [int(np.argmax(p)) for p in probabilities]
    if history["repaired"]:
        assert history["argmax_cost"] > eps
        scores = [np.log(p) for p in probabilities]
        assert choice.indices == solve_knapsack(cost.arrays, eps, scores, fixed=cost.fixed)
    else:
        assert list(choice.indices) == history["argmax"]


def test_recorded_expected_cost_is_sum_of_p_times_lut(setup):
    data, network, space, cost = setup
    eps = parse_budget("0.5", space, Objective.LATENCY)
    history = HalocStrategy(TINY).search(network, space, cost, data.search_data, eps, seed=0).history
    for probabilities, expected in zip(history["probabilities"], history["expected_cost"]):
        by_hand = space.fixed_cycles + sum(p * c for layer, ps in zip(space.layers, probabilities)
                                           for p, c in zip(ps, layer.cycles))
        assert expected == pytest.approx(by_hand, rel=1e-5)
    first = history["probabilities"][0]
    assert all(p == pytest.approx(1 / len(ps)) for ps in first for p in ps)   # alpha starts at zero
    assert history["probabilities"][-1] != first                             # ... and moves


def test_same_seed_same_search_and_lambda_changes_the_weight_loss(setup):
    data, network, space, cost = setup
    eps = parse_budget("0.3", space, Objective.LATENCY)
    runs = [HalocStrategy(TINY).search(network, space, cost, data.search_data, eps, seed=7) for _ in range(2)]
    assert runs[0].indices == runs[1].indices and runs[0].history == runs[1].history
    no_mse = HalocStrategy(HalocConfig(**{**TINY.__dict__, "lambda_": 0.0})).search(
        network, space, cost, data.search_data, eps, seed=7)
    assert no_mse.history["weight_loss"] != runs[0].history["weight_loss"]
    assert cost.total(no_mse.indices) <= eps


def test_search_leaves_the_trained_network_untouched(setup):
    data, network, space, cost = setup
    before = evaluate(network.module, data.val)
    weights = {k: v.clone() for k, v in network.module.state_dict().items()}
    HalocStrategy(TINY).search(network, space, cost, data.search_data, parse_budget("0.3", space, Objective.LATENCY),
                               seed=0)
    assert all(torch.equal(v, network.module.state_dict()[k]) for k, v in weights.items())
    assert evaluate(network.module, data.val) == before
    assert math.isfinite(network.proxy_accuracy({space.layers[0].layer: space.layers[0].ranks[1]},
                                                data.search_data, 1))
