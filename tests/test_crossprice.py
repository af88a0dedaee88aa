"""Pricing one target's rank choice on another target's LUT."""

from __future__ import annotations

import json

import pytest

from costmodels.cli.main import main
from costmodels.errors import CostModelError
from costmodels.lut.export import LoadedLUT, LUTEntry
from costmodels.lut.pricing import price_ranks, read_choice


def _lut(scale):
    rows = []
    for layer in ("a", "b"):
        rows.append(LUTEntry(layer, "original", 0, 0, 100, 0, (), (), 100 * scale, 1.0, 1e-6, "evaluated"))
        rows += [LUTEntry(layer, "tucker2", r, r, r, 0, (), (), r * scale, 1.0, 1e-8 * r, "evaluated") for r in (8, 16)]
    return LoadedLUT({}, tuple(rows))


def test_price_ranks_sums_chosen_and_original_rows():
    cost = price_ranks(_lut(2), {"a": (8, 8), "b": None})
    assert cost.cycles == 16 + 200
    assert price_ranks(_lut(1), {}).cycles == 200
    with pytest.raises(CostModelError, match="no LUT row for ranks 24/24; the LUT has 8/8, 16/16"):
        price_ranks(_lut(1), {"a": (24, 24)})
    with pytest.raises(CostModelError, match="layers not in the LUT: zz"):
        price_ranks(_lut(1), {"zz": None})


@pytest.mark.parametrize("ranks, problem", [({"a": [8]}, "ranks.a"), ({"a": [8, -1]}, "ranks.a"),
                                            ({"a": "8"}, "ranks.a"), ([], "field 'ranks'")])
def test_read_ranks_refuses_malformed(tmp_path, ranks, problem):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"ranks": ranks}))
    with pytest.raises(CostModelError, match=problem):
        read_choice(path)


def test_crossprice_table_marks_each_columns_best_and_over_budget(tmp_path, capsys):
    from costmodels.lut.export import load_lut

    assert main(["build", "--arch", "eyeriss", "--model", "resnet20", "--no-cache", "--jobs", "1",
                 "--out", str(tmp_path)]) == 0
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"ranks": {"layer3.0.conv2": [16, 16]}}))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"ranks": {"layer3.0.conv2": [64, 64]}, "accuracy": {"after_finetune": 0.97}}))
    lut = load_lut(tmp_path / "lut.csv")
    original = price_ranks(lut, {}).cycles
    shares = [price_ranks(lut, {"layer3.0.conv2": (r, r)}).cycles / original for r in (16, 64)]
    assert shares[0] < shares[1]
    capsys.readouterr()
    assert main(["crossprice", "--lut", str(tmp_path / "lut.csv"), "--target", "eyeriss", "--choice", str(small),
                 str(big), "--label", "small", "big", "--budget", f"{sum(shares) / 2:.6f}",
                 "--out", str(tmp_path / "t.md")]) == 0
    rows = {line.split(" | ")[0][2:]: line for line in (tmp_path / "t.md").read_text().splitlines()[2:]}
    assert rows["small"].startswith("| small | **") and "over budget" not in rows["small"]
    assert "over budget" in rows["big"] and f"({shares[1]:.3f})" in rows["big"]
    assert rows["big"].endswith("| 0.9700 |") and rows["small"].endswith("| - |")
    assert main(["crossprice", "--lut", str(tmp_path / "lut.csv"), "--target", "a", "b", "--choice", str(small),
                 "--label", "s"]) == 2


def test_read_choice_takes_the_ranks_json_search_writes(tmp_path):
    path = tmp_path / "ranks.json"
    path.write_text(json.dumps({"a": [8, 16], "b": None}))
    assert read_choice(path).ranks == {"a": (8, 16), "b": None} and read_choice(path).accuracy is None
    path.write_text(json.dumps({"a": [8]}))
    with pytest.raises(CostModelError, match=r"ranks.json: field 'a': \[8\] is not \[r1, r2\]"):
        read_choice(path)
    path.write_text("[1, 2]")
    with pytest.raises(CostModelError, match="ranks.json: not a JSON object"):
        read_choice(path)


def test_read_choice_takes_the_reported_accuracy(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"ranks": {"a": None}, "accuracy": {"after_finetune": 0.5}}))
    assert read_choice(path).accuracy == 0.5 and read_choice(path).ranks == {"a": None}
    path.write_text(json.dumps({"ranks": {}, "accuracy": {"after_finetune": 7}}))
    with pytest.raises(CostModelError, match="accuracy.after_finetune"):
        read_choice(path)


def test_a_choice_the_lut_cannot_price_gets_a_reason_not_an_error(tmp_path, capsys):
    lut = tmp_path / "lut.csv"
    assert main(["build", "--arch", "eyeriss", "--model", "resnet20", "--no-cache", "--jobs", "1",
                 "--out", str(tmp_path)]) == 0
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"ranks": {"layer3.0.conv2": [24, 24]}}))   # not on the default grid
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"ranks": {}}))
    capsys.readouterr()
    assert main(["crossprice", "--lut", str(lut), "--target", "eyeriss", "--choice", str(odd), str(plain),
                 "--label", "odd", "plain"]) == 0
    out = capsys.readouterr().out
    assert "| odd | not in the LUT: layer3.0.conv2 r24/24 |" in out
    assert "| plain | **" in out


def test_out_naming_a_folder_is_refused_before_any_work(tmp_path, capsys):
    choice = tmp_path / "c.json"
    choice.write_text(json.dumps({"ranks": {}}))
    assert main(["crossprice", "--lut", str(tmp_path / "missing.csv"), "--target", "t", "--choice", str(choice),
                 "--label", "c", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a file name" in err and "missing.csv" not in err


def test_deeply_nested_choice_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"ranks": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(CostModelError, match="deep.json: JSON nested too deeply"):
        read_choice(path)
