"""`make results` end to end, reduced: every part of results/reproduce.sh on a small scale, into a temporary
folder, with the toolkit's own commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_reduced_results_pipeline(tmp_path):
    env = {**os.environ, "RESULTS_DIR": str(tmp_path / "results"), "REDUCED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHON": sys.executable, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run(["bash", str(ROOT / "results" / "reproduce.sh")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results"
    figure2 = (out / "figure2" / "resnet20" / "report.md").read_text()
    for arch in ("eyeriss", "simba_like"):
        assert f"## Heat map `layer3_0_conv2-{arch}.csv`" in figure2
    assert "Kendall tau of MACs vs latency" in figure2
    table3 = (out / "table3" / "resnet20-20.00M.md").read_text()
    assert all(f"| {method} |" in table3 for method in ("original", "uniform", "hardware-aware"))
    crossprice = (out / "specificity" / "digits-cnn-crossprice.md").read_text().splitlines()
    assert len(crossprice) == 4 and "test accuracy" in crossprice[0]
    assert all("over budget" not in row.split(" | ")[i + 1]            # a target's own choice fits its budget
               for i, row in enumerate(crossprice[2:]))
    assert (out / "specificity" / "digits-eyeriss" / "report.md").is_file()
    comparison = (out / "search" / "digits_comparison.md").read_text()
    assert "HALOC - uniform after fine-tune" in comparison
    assert "== done" in run.stdout
