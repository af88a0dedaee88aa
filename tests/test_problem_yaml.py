from pathlib import Path

import pytest

from costmodels.errors import WorkloadFileError
from costmodels.problems.workloads import Workload
from costmodels.timeloop.problem_yaml import problem_yaml, read_problem, write_problem

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference" / "workloads"


def reference_files():
    files = sorted(REFERENCE.glob("*.yaml"))
    assert files, f"reference workloads missing under {REFERENCE}"
    return files


@pytest.mark.parametrize("path", reference_files(), ids=lambda p: p.stem)
def test_generated_file_is_byte_identical_to_what_timeloop_ran(path):
    assert problem_yaml(read_problem(path)) == path.read_text()


def test_round_trip(tmp_path):
    w = Workload(C=96, M=160, R=3, S=5, N=2, P=7, Q=9, Wstride=2, Hstride=1, Wdilation=1, Hdilation=2)
    assert read_problem(write_problem(w, tmp_path / "w.yaml")) == w
    assert not list(tmp_path.glob(".*tmp"))


def test_reference_shapes_parse_to_expected_workload():
    w = read_problem(REFERENCE / "r18_l3c1_orig_3x3s2_128_256.yaml")
    assert (w.C, w.M, w.R, w.S, w.P, w.Q, w.Wstride, w.Hstride) == (128, 256, 3, 3, 14, 14, 2, 2)


@pytest.mark.parametrize("text,field", [
    ("problem: {instance: {C: 0, M: 1}}", "problem.instance.C"),
    ("problem: {instance: {C: 1, K: 3}}", "problem.instance.K"),
    ("problem: {shape: {name: GEMM}, instance: {C: 1}}", "problem.shape.name"),
    ("nothing: 1", "problem"),
    ("problem: [1, 2", "not valid YAML"),
])
def test_bad_problem_files_name_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(WorkloadFileError) as info:
        read_problem(path)
    assert str(path) in str(info.value) and field in str(info.value)
