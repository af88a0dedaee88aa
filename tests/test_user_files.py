"""The hostile-file reader under every file the CLI reads: folders, devices, size, encoding, YAML bombs."""

from __future__ import annotations

import pytest

from costmodels.user_files import MAX_YAML_DEPTH, InputFileError, load_yaml_file, parse_yaml, read_user_bytes

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"


def test_reads_a_plain_yaml_file(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("problem: {C: 3}\n")
    assert load_yaml_file(path) == {"problem": {"C": 3}}


@pytest.mark.parametrize("text, problem", [
    (BOMB, "alias '\\*a' is not allowed"),
    ("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "nested deeper"),
    ("a: [1, 2\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_refuses_hostile_yaml(text, problem):
    with pytest.raises(InputFileError, match=problem):
        parse_yaml(text, "f.yaml")


def test_refuses_folders_devices_large_and_binary_files(tmp_path):
    with pytest.raises(InputFileError, match="is a folder"):
        read_user_bytes(tmp_path)
    with pytest.raises(InputFileError, match="not a regular file"):
        read_user_bytes("/dev/zero")
    with pytest.raises(InputFileError, match="no such file"):
        read_user_bytes(tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match="files up to 100 bytes"):
        read_user_bytes(big, max_bytes=100)
    utf16 = tmp_path / "u16.yaml"
    utf16.write_text("problem: {}\n", encoding="utf-16")
    with pytest.raises(InputFileError, match="not UTF-8 text"):
        load_yaml_file(utf16)


def test_json_errors_and_deep_nesting_are_one_line():
    from costmodels.user_files import parse_json

    assert parse_json('{"a": [1]}', "f.json") == {"a": [1]}
    with pytest.raises(InputFileError, match="f.json: not valid JSON"):
        parse_json("{", "f.json")
    with pytest.raises(InputFileError, match="f.json: JSON nested too deeply"):
        parse_json("[" * 100000 + "]" * 100000, "f.json")
