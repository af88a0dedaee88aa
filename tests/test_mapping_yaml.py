"""Timeloop mapping files: reading timeloop-mapper's own output, writing it back byte for byte, and
refusing malformed files with the file and field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmodels.errors import MappingError
from costmodels.problems.workloads import DIMENSIONS
from costmodels.timeloop.mapping import LevelMapping, Mapping
from costmodels.timeloop.mapping_yaml import mapping_yaml, read_mapping
from costmodels.timeloop.spec import load_spec

REFERENCE = Path(__file__).parent / "data" / "timeloop_reference" / "runs"
MAP_FILES = sorted(REFERENCE.glob("*/timeloop-mapper.map.yaml"))


@pytest.fixture(scope="module")
def spec():
    return load_spec("eyeriss")


def _factors(level_factors: tuple[int, ...]) -> dict[str, int]:
    return {d: f for d, f in zip(DIMENSIONS, level_factors) if f != 1}


@pytest.mark.parametrize("path", MAP_FILES, ids=lambda p: p.parent.name)
def test_reference_mappings_round_trip_exactly(path, spec):
    text = path.read_text()
    mapping = read_mapping(path, spec)
    assert mapping_yaml(mapping, spec) == text
    assert read_mapping(text, spec) == mapping


def test_fields_are_read_as_timeloop_means_them(spec):
    mapping = read_mapping(REFERENCE / "r18_l3ds_1x1s2_128_256" / "timeloop-mapper.map.yaml", spec)
    psum, weights, ifmap, dummy, glb, dram = mapping.levels
    assert [level.target for level in mapping.levels] == [level.name for level in spec.storage]
    assert _factors(psum.temporal) == {"M": 16} and psum.keep == {"Outputs"}
    assert _factors(dummy.spatial_y) == {"M": 2, "C": 4} and _factors(dummy.spatial_x) == {}
    assert dummy.keep == frozenset()
    # split 2 of permutation QMCRSNP: Q and M on X.
    assert _factors(glb.spatial_x) == {"M": 2, "Q": 7} and _factors(glb.spatial_y) == {}
    assert glb.spatial_order == tuple("QMCRSNP")
    assert _factors(glb.temporal) == {"M": 4, "P": 14} and glb.temporal_order == tuple("PMCRSNQ")
    assert _factors(dram.temporal) == {"C": 4, "Q": 2} and dram.temporal_order[:2] == ("C", "Q")
    assert dram.keep == {"Weights", "Inputs", "Outputs"}
    assert mapping.compact() == ("DRAM:Q2 DRAM:C4 shared_glb:M4 shared_glb:P14 shared_glb:M2sX shared_glb:Q7sX "
                                 "DummyBuffer:M2sY DummyBuffer:C4sY weights_spad:C8 psum_spad:M16")


def test_defaults_and_alternative_spellings(spec):
    text = """mapping:
  - target: DRAM
    type: temporal
    factors: C=4 Q2
    permutation: QC
  - target: shared_glb
    type: spatial
    factors: Q14
  - target: ifmap_spad
    type: bypass
    bypass: [Weights, Outputs]
"""
    psum, _, ifmap, _, glb, dram = read_mapping(text, spec).levels
    assert psum.keep == {"Weights", "Inputs", "Outputs"} and ifmap.keep == {"Inputs"}
    assert psum.temporal == (1,) * 7 and psum.temporal_order == DIMENSIONS
    assert _factors(dram.temporal) == {"C": 4, "Q": 2} and dram.temporal_order == tuple("QCMRSNP")
    assert _factors(glb.spatial_x) == {"Q": 14}       # no split: every dimension on X


def _level(target: str, spatial_x: dict[str, int], spatial_y: dict[str, int], order: str) -> LevelMapping:
    def factors(values: dict[str, int]) -> tuple[int, ...]:
        return tuple(values.get(d, 1) for d in DIMENSIONS)
    return LevelMapping(target, (1,) * 7, DIMENSIONS, factors(spatial_x), factors(spatial_y), tuple(order),
                        frozenset())


def test_writer_puts_x_loops_first(spec):
    mapping = read_mapping(REFERENCE / "r18_l3ds_1x1s2_128_256" / "timeloop-mapper.map.yaml", spec)
    levels = list(mapping.levels)
    levels[4] = _level("shared_glb", {"Q": 7}, {"M": 2}, "MQCRSNP")
    text = mapping_yaml(Mapping(tuple(levels)), spec)
    assert "    factors: C1 M2 R1 S1 N1 P1 Q7\n    permutation: QMCRSNP\n    split: 1\n" in text
    glb = read_mapping(text, spec).levels[4]
    assert _factors(glb.spatial_x) == {"Q": 7} and _factors(glb.spatial_y) == {"M": 2}
    levels[4] = _level("shared_glb", {"Q": 7}, {"Q": 2}, DIMENSIONS)
    with pytest.raises(MappingError, match="shared_glb: dimension Q is spread over both X and Y"):
        mapping_yaml(Mapping(tuple(levels)), spec)


def test_writer_without_spec_writes_only_used_fanouts(spec):
    mapping = read_mapping(MAP_FILES[0], spec)
    text = mapping_yaml(mapping)
    assert text.count("type: spatial") == 2 and text.count("type: temporal") == 6
    assert read_mapping(text, spec) == mapping


@pytest.mark.parametrize("text, message", [
    ("mapping: {}", r"field 'mapping': missing or not a list"),
    ("mapping:\n  - target: L2\n    type: temporal\n", r"field 'mapping\[0\].target': unknown level 'L2'; allowed: psum_spad"),
    ("mapping:\n  - target: DRAM\n    type: tiling\n", r"field 'mapping\[0\].type': 'tiling' is not allowed"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: C4 X2\n", r"mapping\[0\].factors': bad factor 'X2'"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: C0\n", r"bad factor 'C0'"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: C2 C2\n", r"bad factor 'C2'"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: [1]\n", r"'mapping\[0\].factors': expected a string"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: C1\n    permutation: CC\n",
     r"'mapping\[0\].permutation': 'CC' must list distinct dimensions"),
    ("mapping:\n  - target: DRAM\n    type: spatial\n    factors: C1\n    split: -1\n",
     r"'mapping\[0\].split': must be a non-negative integer"),
    ("mapping:\n  - target: DRAM\n    type: temporal\n    factors: C1\n  - target: DRAM\n    type: temporal\n"
     "    factors: C1\n", r"'mapping\[1\].type': a second temporal entry for DRAM"),
    ("mapping:\n  - target: DRAM\n    type: datatype\n    keep: [Weights]\n    bypass: [Weights]\n",
     r"'mapping\[0\]': Weights both kept and bypassed"),
    ("mapping:\n  - target: DRAM\n    type: datatype\n    keep: [Psums]\n", r"'mapping\[0\].keep': \['Psums'\]"),
    ("mapping:\n  - [DRAM]\n", r"'mapping\[0\]': expected a mapping with target and type"),
    ("mapping: [\n", r"not valid YAML"),
])
def test_malformed_files_name_file_and_field(tmp_path, spec, text, message):
    path = tmp_path / "bad.map.yaml"
    path.write_text(text)
    with pytest.raises(MappingError, match=f"^{path}: .*{message}"):
        read_mapping(path, spec)


def test_missing_file(tmp_path, spec):
    with pytest.raises(MappingError, match="nosuch.yaml: no such file"):
        read_mapping(tmp_path / "nosuch.yaml", spec)


def test_writer_refuses_what_the_architecture_cannot_hold(spec):
    mapping = read_mapping(MAP_FILES[0], spec)
    levels = list(mapping.levels)
    levels[0] = _level("psum_spad", {"M": 2}, {}, DIMENSIONS)
    with pytest.raises(MappingError, match="psum_spad: spatial factors where the architecture has no fan-out"):
        mapping_yaml(Mapping(tuple(levels)), spec)
    with pytest.raises(MappingError, match="are not the architecture's"):
        mapping_yaml(Mapping(mapping.levels[:5]), spec)
