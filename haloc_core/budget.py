"""The budget ``eps`` of a search, in the objective's cost unit, from the ``--budget`` text.

Forms: a fraction of the original network's cost on the target (``0.5``, or ``50%``); an absolute cost, a
bare number above 1 in the objective's unit (cycles, or seconds for a LUT without a clock; pJ) or a number
with a unit suffix (``1.2e6cycles``, ``2ms``, ``3.5mJ``). A budget below the cheapest achievable cost is
an error that names that cost."""

from __future__ import annotations

import math
import re

from costmodels import CostModelError
from haloc_core.cost import CostTable, Objective
from haloc_core.space import SearchSpace

__all__ = ["BudgetError", "Objective", "parse_budget", "check_feasible", "describe_cost"]

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_ENERGY_UNITS = {"pj": 1.0, "nj": 1e3, "uj": 1e6, "mj": 1e9, "j": 1e12}
FORMS = ("a fraction of the original cost in (0, 1] such as 0.5", "a percentage such as 50%",
         "a cost above 1 in the objective's unit such as 1.2e6",
         "a number with a unit: cycles, s, ms, us, ns (latency) or pJ, nJ, uJ, mJ, J (energy), "
         "such as 1.2e6cycles or 2ms")
_NUMBER_UNIT = re.compile(r"^\s*([0-9.eE+-]+)\s*([A-Za-z%]*)\s*$")


class BudgetError(CostModelError):
    """A budget that cannot be read, does not fit the objective, or is below the cheapest achievable cost."""


def describe_cost(value: float, cost: CostTable) -> str:
    share = value / cost.original_total if cost.original_total > 0 else math.nan
    return f"{value:.6g} {cost.unit} ({share:.3f} of the original {cost.original_total:.6g} {cost.unit})"


def check_feasible(eps: float, cost: CostTable) -> None:
    """Raise ``BudgetError`` naming the cheapest achievable cost when no choice meets ``eps``."""
    if eps < cost.cheapest:
        raise BudgetError(f"budget {describe_cost(eps, cost)} is below the cheapest achievable "
                          f"{cost.objective.value} {describe_cost(cost.cheapest, cost)} on target "
                          f"'{cost.target}' (every searched layer at its cheapest option)")


def parse_budget(text: str, space: SearchSpace, objective: Objective) -> float:
    """``eps`` in the unit of ``CostTable.from_space(space, objective)``; checked to be achievable."""
    cost = CostTable.from_space(space, objective)
    eps = _parse(str(text), space, objective, cost)
    check_feasible(eps, cost)
    return eps


def _bad(text: str, why: str) -> BudgetError:
    return BudgetError(f"--budget '{text}': {why}; allowed: {'; '.join(FORMS)}")


def _parse(text: str, space: SearchSpace, objective: Objective, cost: CostTable) -> float:
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise _bad(text, "not a number with an optional unit")
    number_text, unit = match.groups()
    try:
        number = float(number_text)
    except ValueError:
        raise _bad(text, f"'{number_text}' is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise _bad(text, "the budget must be a positive finite number")
    unit_key = unit.lower()
    if unit_key == "":
        return number * cost.original_total if number <= 1 else number
    if unit_key == "%":
        if number > 100:
            raise _bad(text, "a percentage must be in (0, 100]")
        return number / 100 * cost.original_total
    if unit_key == "cycles":
        if objective is not Objective.LATENCY:
            raise _bad(text, f"cycles do not measure the {objective.value} objective")
        if cost.unit != "cycles":
            raise _bad(text, "this LUT has no clock (measured latency in seconds); give seconds")
        return number
    if unit_key in _TIME_UNITS:
        if objective is not Objective.LATENCY:
            raise _bad(text, f"'{unit}' is a time, not the {objective.value} objective's unit")
        seconds = number * _TIME_UNITS[unit_key]
        return seconds * space.clock_hz if cost.unit == "cycles" else seconds
    if unit_key in _ENERGY_UNITS:
        if objective is not Objective.ENERGY:
            raise _bad(text, f"'{unit}' is an energy, not the {objective.value} objective's unit")
        return number * _ENERGY_UNITS[unit_key]
    raise _bad(text, f"unknown unit '{unit}'")
