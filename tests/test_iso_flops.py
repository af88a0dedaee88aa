"""Rank choices at a FLOPs count from a LUT: uniform ratio and the exact hardware-aware integer program."""

from __future__ import annotations

import itertools
import math

import pytest

from costmodels.cli.main import main
from costmodels.lut.export import LoadedLUT, LUTEntry
from haloc_core.iso_flops import NetworkChoice, capacity, compare_at_flops, hardware_aware_at_macs, uniform_at_macs


def _entry(layer, r, macs, cycles, form="tucker2"):
    return LUTEntry(layer, form, r, r, macs, 0, (), (), cycles, 0.0, cycles / 1e8, "evaluated")


def _lut():
    rows = []
    for layer, scale, stairs in (("a", 1, (10, 10, 30, 30)), ("b", 2, (5, 20, 20, 40)), ("c", 3, (8, 9, 30, 31))):
        rows.append(_entry(layer, 0, 100 * scale, 100, form="original"))
        rows += [_entry(layer, 8 * k, 10 * k * scale, stairs[k - 1]) for k in range(1, 5)]
    rows.append(_entry("first", 0, 50, 40, form="original"))
    return LoadedLUT({}, tuple(rows))


def test_uniform_takes_the_largest_fitting_ratio():
    lut = _lut()
    choice = uniform_at_macs(lut, 130)   # ratio 0.5: ranks 16 in a, b, c -> 20 + 40 + 60 + 50 = 170 > 130
    assert choice.ranks() == {"a": (8, 8), "b": (8, 8), "c": (8, 8), "first": None}
    assert choice.macs == 10 + 20 + 30 + 50
    assert uniform_at_macs(lut, 1e9).ranks()["a"] == (32, 32)


def test_hardware_aware_is_the_brute_force_optimum():
    lut = _lut()
    layers = lut.layers
    options = [(lut.original(layer), *lut.candidates(layer)) for layer in layers]
    floor = capacity(lut, uniform_at_macs(lut, 200))
    best = None
    for combo in itertools.product(*options):
        choice = NetworkChoice("x", combo)
        if 150 <= choice.macs <= 200 and capacity(lut, choice) >= floor - 1e-9:
            best = min(best or choice, choice, key=lambda c: c.cycles)
    found = hardware_aware_at_macs(lut, 150, 200, floor)
    assert found.cycles == best.cycles
    assert 150 <= found.macs <= 200 and capacity(lut, found) >= floor - 1e-9


def test_comparison_rows_and_capacity():
    lut = _lut()
    comparison = compare_at_flops(lut, "toy", "t", 1e8, target_flops=230, flops_overhead=30)
    rows = comparison.rows()
    assert [r["method"] for r in rows] == ["original", "uniform", "hardware-aware"]
    assert rows[2]["cycles"] <= rows[1]["cycles"] and rows[2]["capacity"] >= rows[1]["capacity"] - 1e-9
    uniform = uniform_at_macs(lut, 200)
    assert rows[1]["conv_macs"] == uniform.macs
    assert rows[1]["capacity"] == pytest.approx(capacity(lut, uniform), abs=1e-3)
    ranks = [r for r in uniform.ranks().values() if r]
    assert capacity(lut, uniform) == pytest.approx(sum(math.log(r[0] / 32) for r in ranks))


def test_cli_writes_both_files_and_refuses_bad_flops(tmp_path, capsys):
    assert main(["build", "--arch", "eyeriss", "--model", "resnet20", "--no-cache", "--jobs", "1",
                 "--out", str(tmp_path)]) == 0
    assert main(["isoflops", "--lut", str(tmp_path / "lut.csv"), "--model", "resnet20", "--flops", "20M",
                 "--out", str(tmp_path / "iso")]) == 0
    text = (tmp_path / "iso" / "resnet20-20.00M.md").read_text()
    assert "| uniform |" in text and "| hardware-aware |" in text
    assert (tmp_path / "iso" / "resnet20-20.00M.json").is_file()
    assert main(["report", str(tmp_path)]) == 0          # the build folder now holds a LUT and no isoflops output
    assert main(["report", str(tmp_path / "iso")]) == 0
    assert "## resnet20 on eyeriss at 20.00M FLOPs" in (tmp_path / "iso" / "report.md").read_text()
    capsys.readouterr()
    assert main(["isoflops", "--lut", str(tmp_path / "lut.csv"), "--model", "resnet20", "--flops", "1K"]) == 2
    assert "alone count" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["isoflops", "--lut", str(tmp_path / "lut.csv"), "--model", "resnet20", "--flops", "lots"])
    assert exit_info.value.code == 2


def test_bad_outputs_and_inputs_are_refused_before_writing(tmp_path, capsys):
    lut = tmp_path / "lut.csv"
    lut.write_bytes(b"\xff\xfe" * 100)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["isoflops", "--lut", str(lut), "--model", "resnet20", "--flops", "20M", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["isoflops", "--lut", str(lut), "--model", "resnet20", "--flops", "20M",
                 "--out", str(tmp_path / "o")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
