"""`costmodel search` on tiny runs (one training epoch, a few HALOC steps): the output folder and its report,
same seed => same report, an infeasible budget, Ctrl-C, and the other model and data sources."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import haloc_core.pipeline as pipeline
from costmodels.cli.main import main
from haloc_core.data import CIFAR_RECORD, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, DataError, load_cifar10
from haloc_core.model import ModelError, module_with_weights

TINY = ["--arch", "eyeriss", "--model", "digits-cnn", "--data", "digits", "--steps", "4", "--warmup-steps", "1",
        "--train-epochs", "1", "--finetune-epochs", "1", "--no-cache"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timing"}


def test_tiny_search_writes_the_folder_and_is_reproducible(capsys, tmp_path):
    cache = tmp_path / "models"
    args = [*TINY, "--budget", "0.5", "--seed", "3", "--model-cache", str(cache)]
    code, out, err = run(capsys, "search", *args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "haloc" in out and "budget met: True" in out and "haloc search:" in err   # progress on stderr
    folder = tmp_path / "a"
    for name in ("report.json", "report.md", "ranks.json", "weights/haloc.pt", "plots/probabilities.png",
                 "plots/cost.png", "plots/ranks.png", "plots/accuracy_vs_cost.png"):
        assert (folder / name).is_file(), name
    report = json.loads((folder / "report.json").read_text())
    assert set(report["ranks"]) == {"features.3", "features.7", "features.10", "features.14"}
    assert all(r is None or (len(r) == 2 and r[0] >= 8) for r in report["ranks"].values())
    assert report["budget_met"] is True and report["cycles"] <= report["eps_cycles"]
    assert report["eps_cycles"] == pytest.approx(0.5 * report["original_cycles"])
    assert report["original_cycles"] == 18624 and report["energy_pj"] < report["original_energy_pj"]
    assert 0 <= report["accuracy"]["before_finetune"] <= 1 and report["accuracy"]["after_finetune"] > 0.5
    assert report["hyperparameters"]["haloc"]["steps"] == 4 and report["hyperparameters"]["haloc"]["lambda"] == 1.0
    assert "search_s" not in json.dumps(_without_timing(report)) and report["timing"]["haloc_search_s"] >= 0
    state = torch.load(folder / "weights" / "haloc.pt", weights_only=True)
    assert any(key.endswith("core.weight") for key in state) or all(r is None for r in report["ranks"].values())
    assert json.loads((folder / "ranks.json").read_text()) == report["ranks"]
    # the second run takes the trained model from the cache and must give the same report
    code, out, err = run(capsys, "search", *args, "--out", str(tmp_path / "b"))
    assert code == 0 and "from the cache" in err
    again = json.loads((tmp_path / "b" / "report.json").read_text())
    assert _without_timing(again) == _without_timing(report)
    assert (tmp_path / "b" / "report.md").read_text() == (folder / "report.md").read_text()


def test_infeasible_budget_names_the_cheapest_cost(capsys, tmp_path):
    code, _, err = run(capsys, "search", *TINY, "--no-model-cache", "--budget", "0.05", "--out", str(tmp_path / "x"))
    assert code == 2 and "cheapest" in err and "2560" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_no_folder_and_keeps_the_old_one(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "write_outputs", interrupt)
    code, _, err = run(capsys, "search", *TINY, "--no-model-cache", "--method", "uniform", "--budget", "0.5",
                       "--out", str(out))
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old.txt").is_file()


def test_finished_run_replaces_an_old_folder(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    code, out_text, err = run(capsys, "search", *TINY, "--no-model-cache", "--method", "uniform", "--budget", "0.3",
                              "--objective", "energy", "--hooi-iterations", "2", "--out", str(out))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "uniform" and report["objective"] == "energy" and report["eps_cycles"] is None
    assert report["energy_pj"] <= report["eps"] and report["budget_met"]
    assert report["hyperparameters"]["hooi_iterations"] == 2
    assert not (out / "old.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_flags_are_one_line_errors(capsys, tmp_path):
    code, _, err = run(capsys, "search", *TINY, "--no-model-cache", "--budget", "0.5", "--steps", "3",
                       "--warmup-steps", "3", "--out", str(tmp_path / "x"))
    assert code == 2 and "--warmup-steps" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--budget", "0.5", "--out", str(tmp_path / "x"), "--method", "magic"])
    assert exit_info.value.code == 2


def _fake_cifar(folder, records: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE):
        data = rng.integers(0, 256, size=(records, CIFAR_RECORD), dtype=np.uint8)
        data[:, 0] = rng.integers(0, 10, size=records)
        (folder / name).write_bytes(data.tobytes())


def test_cifar10_binary_folder(tmp_path):
    _fake_cifar(tmp_path / "cifar", records=4)
    data = load_cifar10(tmp_path / "cifar")
    assert data.train.images.shape == (18, 3, 32, 32) and len(data.val) == 2 and len(data.test) == 4
    raw = (tmp_path / "cifar" / CIFAR_TEST_FILE).read_bytes()
    assert int(data.test.labels[1]) == raw[CIFAR_RECORD]
    red = raw[CIFAR_RECORD + 1] / 255.0
    assert float(data.test.images[1, 0, 0, 0]) == pytest.approx((red - 0.4914) / 0.2470, abs=1e-5)
    (tmp_path / "cifar" / CIFAR_TEST_FILE).write_bytes(raw[:-5])
    with pytest.raises(DataError, match="whole number"):
        load_cifar10(tmp_path / "cifar")
    with pytest.raises(DataError, match="missing"):
        load_cifar10(tmp_path)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)


class _NotAStateDict:
    pass


def test_module_factory_with_a_weights_file(tmp_path):
    torch.manual_seed(0)
    net = _Net()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded = module_with_weights(_Net, tmp_path / "w.pt", torch.device("cpu"))
    assert torch.equal(loaded.conv.weight, net.conv.weight)
    torch.save({"x": _NotAStateDict()}, tmp_path / "pickle.pt")
    with pytest.raises(ModelError, match="safely"):
        module_with_weights(_Net, tmp_path / "pickle.pt", torch.device("cpu"))
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="does not fit"):
        module_with_weights(_Net, tmp_path / "wrong.pt", torch.device("cpu"))
