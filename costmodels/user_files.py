"""Reading files a user hands us, treating each as hostile: regular files only, a size limit, UTF-8, and
YAML without aliases or absurd nesting, so a bad file is a one-line error, never a hang, a memory
blow-up or a traceback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from costmodels.errors import CostModelError

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_YAML_DEPTH = 64
_MAX_MESSAGE = 300
# libyaml's parser when PyYAML has it (ten times faster on a spec's energy table); same safe constructor
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputFileError(CostModelError):
    """A user file that cannot be read or parsed; the message names the file and what is wrong."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_user_bytes(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; devices, pipes, folders and larger files are refused
    before anything is read."""
    name = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except OSError as exc:
        raise InputFileError(name, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputFileError(name, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(name, "is not a regular file (a device, pipe or socket); give a file")
    if info.st_size > max_bytes:
        raise InputFileError(name, f"is {info.st_size:,} bytes; files up to {max_bytes:,} bytes are read")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InputFileError(name, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InputFileError(name, f"grew past {max_bytes:,} bytes while being read")
    return data


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text (a BOM is allowed); anything else is refused with the offset of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(source, f"is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                                     "binary or UTF-16 files are not read") from None


def read_user_text(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    return decode_text(read_user_bytes(path, max_bytes), str(path))


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` of ``text`` (libyaml's parser when available) after a scan of its events: aliases
    (the billion-laughs expansion) and nesting deeper than ``MAX_YAML_DEPTH`` are refused before any
    document is built."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise InputFileError(source, f"YAML alias '*{_short(str(event.anchor))}' is not allowed "
                                             "(aliases and anchors are refused: write the values out)")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise InputFileError(source, f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise InputFileError(source, f"not valid YAML: {_short(' '.join(str(exc).split()))}") from None
    except RecursionError:
        raise InputFileError(source, "YAML nested too deeply") from None


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` whose failures, deep nesting included, are one-line errors naming ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(source, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InputFileError(source, "JSON nested too deeply") from None


def load_yaml_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> Any:
    return parse_yaml(read_user_text(path, max_bytes), str(path))


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."
