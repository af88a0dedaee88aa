import numpy as np
import pytest

from costmodels.lut.staircase import analyse_staircase, staircase_lines


def _grid(fn, ranks):
    return np.array([[fn(a, b) for b in ranks] for a in ranks], dtype=float)


def test_steps_at_multiples_of_32_satisfy_the_principle():
    ranks = tuple(range(8, 129, 8))
    latency = _grid(lambda a, b: -(-a // 32) * 100 + -(-b // 32) * 10, ranks)
    macs = _grid(lambda a, b: a * b, ranks)
    s = analyse_staircase(ranks, ranks, latency, macs, original_latency=1e9)
    assert s.efficient == (32, 64, 96, 128)
    assert s.principle_holds
    assert s.changes == 3 and s.increments == 15
    assert s.inversions == ()
    assert s.distinct_values == 16
    assert 0 < s.kendall_tau_macs < 1


def test_inversions_and_original_crossing():
    ranks = (8, 16, 24, 32)
    diag = {8: 10.0, 16: 30.0, 24: 20.0, 32: 40.0}
    latency = _grid(lambda a, b: diag[a] if a == b else np.nan, ranks)
    macs = _grid(lambda a, b: a * b, ranks)
    s = analyse_staircase(ranks, ranks, latency, macs, original_latency=25.0)
    assert s.inversions == ((16, 24),)
    assert s.efficient == (8, 24, 32)
    assert not s.principle_holds
    assert s.faster_than_original_up_to == 24
    assert s.grid_points == 4 and s.grid_size == 16
    assert any("4 rank pairs of 16 (the others have no legal mapping" in line for line in staircase_lines(s))
    assert any("24 faster than 16" in line for line in staircase_lines(s))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="grid shapes differ"):
        analyse_staircase((8, 16), (8,), np.zeros((2, 2)), np.zeros((2, 2)), 1.0)


def test_principle_is_judged_at_the_layers_step():
    ranks = tuple(range(8, 65, 8))
    latency = _grid(lambda a, b: -(-a // 16) * 100 + -(-b // 16) * 10, ranks)
    macs = _grid(lambda a, b: a * b, ranks)
    on_16 = analyse_staircase(ranks, ranks, latency, macs, 1e9, principle_step=16)
    assert on_16.efficient == (16, 32, 48, 64) and on_16.principle_holds
    on_32 = analyse_staircase(ranks, ranks, latency, macs, 1e9, principle_step=32)
    assert not on_32.principle_holds and on_32.efficient_on_step == 2
