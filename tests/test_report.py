"""`costmodel report`: what it finds in a folder and what it refuses."""

from __future__ import annotations

from costmodels import RankGrid, build_lut, load_layers, load_spec, network_candidates, network_workloads, write_lut
from costmodels.cli.main import main


def _build(tmp_path):
    name, layers = load_layers(model="resnet20")
    lut = build_lut(name, network_workloads(network_candidates(layers, RankGrid())), load_spec("eyeriss"))
    write_lut(lut, tmp_path)
    return lut


def test_build_folder_report_has_layers_and_plot(tmp_path, capsys):
    lut = _build(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "## LUT `lut.csv`" in text
    original = sum(r.cycles for r in lut.rows if r.form == "original")
    assert f"Original network: {original:,} cycles" in text
    for layer in {r.layer for r in lut.rows}:
        assert f"| {layer} |" in text
    row = next(line for line in text.splitlines() if line.startswith("| layer3.0.conv2 |"))
    assert 0.5 < float(row.split(" | ")[6]) <= 1.0       # its Kendall tau of MACs vs cycles
    assert (tmp_path / "lut-pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_efficient_ranks_exclude_dominated_candidates(tmp_path):
    from costmodels.lut.export import LUTEntry
    from costmodels.report import efficient_candidates

    def entry(r, macs, cycles):
        return LUTEntry("l", "tucker2", r, r, macs, 0, (), (), cycles, 0.0, 0.0, "evaluated")

    front = efficient_candidates([entry(8, 10, 5), entry(16, 20, 9), entry(24, 30, 8), entry(32, 40, 20)])
    assert [e.r1 for e in front] == [8, 24, 32]


def test_empty_folder_and_file_are_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "nothing to report" in capsys.readouterr().err
    file = tmp_path / "x.txt"
    file.write_text("x")
    assert main(["report", str(file)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_heatmap_folder_report_has_the_staircase_analysis(tmp_path):
    assert main(["heatmap", "--arch", "eyeriss", "--model", "resnet20", "--layer", "layer3.0.conv2", "--step", "16",
                 "--no-cache", "--jobs", "1", "--out", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "## Heat map `layer3_0_conv2-eyeriss.csv`" in text
    assert "16 rank pairs take" in text and "Kendall tau of MACs vs latency" in text
    assert "![layer3_0_conv2-eyeriss](layer3_0_conv2-eyeriss.png)" in text


def test_a_binary_lut_in_the_folder_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "lut.csv").write_bytes(bytes(range(256)) * 4)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lut.csv: is not UTF-8 text" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lut.csv"]
