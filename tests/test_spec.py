import shutil
from pathlib import Path

import pytest
import yaml

from costmodels.errors import SpecError, UnknownNameError
from costmodels.timeloop.spec import SPECS_ROOT, available_targets, load_spec


@pytest.fixture(scope="module")
def eyeriss():
    return load_spec("eyeriss")


def test_eyeriss_hierarchy_matches_the_reference_design(eyeriss):
    assert [level.name for level in eyeriss.storage] == ["psum_spad", "weights_spad", "ifmap_spad", "DummyBuffer",
                                                        "shared_glb", "DRAM"]
    sizes = {level.name: level.size_words for level in eyeriss.storage}
    assert sizes == {"psum_spad": 16, "weights_spad": 192, "ifmap_spad": 12, "DummyBuffer": 16,
                     "shared_glb": 65536, "DRAM": None}
    assert (eyeriss.compute.instances, eyeriss.compute.mesh_x, eyeriss.compute.mesh_y) == (168, 14, 12)
    glb = eyeriss.level("shared_glb")
    assert (glb.block_size, glb.read_bandwidth, glb.write_bandwidth) == (4, 16, 16)
    assert glb.keep == {"Inputs", "Outputs"} and glb.bypass == {"Weights"}
    assert eyeriss.level("DummyBuffer").bypass == {"Inputs", "Outputs", "Weights"}


def test_fanouts_give_a_14_by_12_array(eyeriss):
    names = [level.name for level in eyeriss.storage]
    assert eyeriss.fanout(names.index("shared_glb")) == (14, 1)
    assert eyeriss.fanout(names.index("DummyBuffer")) == (1, 12)
    assert eyeriss.fanout(names.index("psum_spad")) == (1, 1)


def test_energy_table_charges_the_most_expensive_variant(eyeriss):
    assert eyeriss.compute.mac_energy == 2.2
    assert eyeriss.level("weights_spad").read_energy == 1.586
    assert eyeriss.level("shared_glb").write_energy == 75.215
    assert eyeriss.level("DRAM").read_energy == 512


def test_constraints_are_parsed(eyeriss):
    (spatial,) = eyeriss.constraints_for("DummyBuffer", "spatial")
    assert spatial.split == 4 and spatial.permutation == tuple("NPQRSCM")
    assert spatial.factor_map == {"N": 1, "P": 1, "Q": 1, "R": 1, "S": 0}
    sources = {(c.target, c.source) for c in eyeriss.constraints_for("shared_glb", "temporal")}
    assert sources == {("shared_glb", "mapspace")}
    assert eyeriss.metrics == ("delay", "energy")
    assert eyeriss.clock_hz == 200e6


def test_available_and_unknown_targets():
    assert "eyeriss" in available_targets()
    with pytest.raises(UnknownNameError, match="available: .*eyeriss"):
        load_spec("nosuch")


@pytest.fixture
def spec_copy(tmp_path):
    folder = tmp_path / "eyeriss"
    shutil.copytree(SPECS_ROOT / "eyeriss", folder)
    return folder


def edit(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))


def test_hash_changes_with_any_spec_file(spec_copy, eyeriss):
    assert load_spec(spec_copy).content_hash == eyeriss.content_hash
    edit(spec_copy / "ERT.yaml", lambda d: d["ERT"]["tables"][0]["actions"][0].update(energy=2.3))
    assert load_spec(spec_copy).content_hash != eyeriss.content_hash


GLB = ("architecture", "subtree", 0, "subtree", 0, "local", 0, "attributes")


def _set(document, path, key, value):
    node = document
    for step in path:
        node = node[step]
    node[key] = value


@pytest.mark.parametrize("file,change,field", [
    ("target.yaml", lambda d: d["target"].pop("clock_hz"), "target.clock_hz"),
    ("target.yaml", lambda d: d["target"].update(clock_hz=-1), "target.clock_hz"),
    ("target.yaml", lambda d: d["target"]["files"].update(energy="missing.yaml"), "target.files.energy"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "memory_depth", "big"),
     "architecture.subtree[0].subtree[0].local[0].attributes.memory_depth"),
    ("arch/eyeriss_like.yaml", lambda d: d["architecture"].update(version=0.4), "architecture.version"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][0].update(target="nolevel"),
     "architecture_constraints.targets[0].target"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][5].update(factors="N=1 Z=2"),
     "architecture_constraints.targets[5].factors"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][0].update(bypass=["Psums"]),
     "architecture_constraints.targets[0].bypass"),
    ("mapper/mapper.yaml", lambda d: d["mapper"].update({"optimization-metrics": ["speed"]}),
     "mapper.optimization-metrics"),
    ("ERT.yaml", lambda d: d["ERT"]["tables"][0]["actions"][0].update(energy="x"), "ERT.tables[0].actions[0].energy"),
])
def test_malformed_spec_names_file_and_field(spec_copy, file, change, field):
    edit(spec_copy / file, change)
    with pytest.raises(SpecError) as info:
        load_spec(spec_copy)
    assert info.value.file.endswith(file) and info.value.field == field


def test_missing_energy_entry_is_reported(spec_copy):
    edit(spec_copy / "ERT.yaml", lambda d: d["ERT"]["tables"].pop(3))  # ifmap_spad
    with pytest.raises(SpecError, match="ifmap_spad.*no entry in the energy table"):
        load_spec(spec_copy)


def test_unreadable_yaml_is_reported(spec_copy):
    (spec_copy / "mapper" / "mapper.yaml").write_text("mapper: [unclosed")
    with pytest.raises(SpecError, match="mapper.yaml.*not valid YAML"):
        load_spec(spec_copy)


# --- every number of every spec file is checked; unmodelled features are refused -------------------------
PE_IFMAP = ("architecture", "subtree", 0, "subtree", 0, "subtree", 0, "local", 0, "attributes")
PE_IFMAP_FIELD = "architecture.subtree[0].subtree[0].subtree[0].local[0].attributes"


@pytest.mark.parametrize("file,change,field,value", [
    ("target.yaml", lambda d: d["target"].update(clock_hz=float("nan")), "target.clock_hz", "nan"),
    ("target.yaml", lambda d: d["target"].update(clock_hz=float("inf")), "target.clock_hz", "inf"),
    ("target.yaml", lambda d: d["target"].update(clock_hz="fast"), "target.clock_hz", "'fast'"),
    ("target.yaml", lambda d: d["target"].update(clock_hz=True), "target.clock_hz", "True"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "read_bandwidth", float("nan")),
     "architecture.subtree[0].subtree[0].local[0].attributes.read_bandwidth", "nan"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "write_bandwidth", 0),
     "architecture.subtree[0].subtree[0].local[0].attributes.write_bandwidth", "0"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, PE_IFMAP, "meshX", 14.5), f"{PE_IFMAP_FIELD}.meshX", "14.5"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, PE_IFMAP, "meshX", "abc"), f"{PE_IFMAP_FIELD}.meshX", "'abc'"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, PE_IFMAP, "block-size", 0), f"{PE_IFMAP_FIELD}.block-size", "0"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, PE_IFMAP, "word-bits", -16), f"{PE_IFMAP_FIELD}.word-bits", "-16"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, PE_IFMAP, "memory_depth", float("inf")),
     f"{PE_IFMAP_FIELD}.memory_depth", "inf"),
    ("ERT.yaml", lambda d: d["ERT"]["tables"][0]["actions"][0].update(energy=float("nan")),
     "ERT.tables[0].actions[0].energy", "nan"),
    ("ERT.yaml", lambda d: d["ERT"]["tables"][0]["actions"][0].update(energy=-1.0),
     "ERT.tables[0].actions[0].energy", "-1.0"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][5].update(split=1.5),
     "architecture_constraints.targets[5].split", "1.5"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "n_banks", 3.5),
     "architecture.subtree[0].subtree[0].local[0].attributes.n_banks", "3.5"),
    ("arch/eyeriss_like.yaml", lambda d: d["architecture"]["subtree"][0].update(attributes={"datawidth": "wide"}),
     "architecture.subtree[0].attributes.datawidth", "'wide'"),
    ("mapper/mapper.yaml", lambda d: d["mapper"].update(timeout=float("nan")), "mapper.timeout", "nan"),
    ("mapper/mapper.yaml", lambda d: d["mapper"].update({"victory-condition": -1}), "mapper.victory-condition", "-1"),
])
def test_numbers_are_finite_and_in_range(spec_copy, file, change, field, value):
    edit(spec_copy / file, change)
    with pytest.raises(SpecError) as info:
        load_spec(spec_copy)
    assert info.value.file.endswith(file) and info.value.field == field
    assert info.value.problem.startswith(f"{value} is not allowed; allowed: ")


@pytest.mark.parametrize("file,change,field", [
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "multiple-buffering", 2),
     "architecture.subtree[0].subtree[0].local[0].attributes.multiple-buffering"),
    ("arch/eyeriss_like.yaml", lambda d: _set(d, GLB, "shared_bandwidth", 8),
     "architecture.subtree[0].subtree[0].local[0].attributes.shared_bandwidth"),
    ("arch/eyeriss_like.yaml", lambda d: d["architecture"]["subtree"][0]["local"][0].update(network="noc"),
     "architecture.subtree[0].local[0].network"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][0].update(type="utilization"),
     "architecture_constraints.targets[0].type"),
    ("constraints/eyeriss_like_arch_constraints.yaml",
     lambda d: d["architecture_constraints"]["targets"][5].update(no_multicast_no_reduction=True),
     "architecture_constraints.targets[5].no_multicast_no_reduction"),
])
def test_unmodelled_features_are_refused_by_name(spec_copy, file, change, field):
    edit(spec_copy / file, change)
    with pytest.raises(SpecError, match="not modelled") as info:
        load_spec(spec_copy)
    assert info.value.field == field


def test_folder_without_target_yaml_is_reported_as_the_missing_file(spec_copy):
    (spec_copy / "target.yaml").unlink()
    with pytest.raises(SpecError) as info:
        load_spec(spec_copy)
    assert info.value.file == str(spec_copy / "target.yaml") and "missing" in info.value.problem


@pytest.mark.parametrize("path", ["/etc/passwd", "../../outside.yaml", "arch/../../ERT.yaml"])
def test_spec_files_must_stay_inside_the_folder(spec_copy, path):
    (spec_copy.parent / "outside.yaml").write_text("ERT: {tables: []}")
    edit(spec_copy / "target.yaml", lambda d: d["target"]["files"].update(energy=path))
    with pytest.raises(SpecError) as info:
        load_spec(spec_copy)
    assert info.value.field == "target.files.energy"
    assert "absolute" in info.value.problem or "outside the spec folder" in info.value.problem


def test_dram_without_read_write_energy_is_refused(spec_copy):
    # Timeloop's built-in estimate that the model reproduces covers SRAM-like levels, not DRAM.
    def access_only(document):
        for table in document["ERT"]["tables"]:
            if table["name"].endswith("DRAM"):
                table["actions"] = [{"name": "access", "energy": 1.0}]
    edit(spec_copy / "ERT.yaml", access_only)
    with pytest.raises(SpecError, match="lacks action 'read'"):
        load_spec(spec_copy)
