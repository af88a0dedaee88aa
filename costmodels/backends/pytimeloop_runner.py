"""Run Timeloop's mapper or model through ``pytimeloop`` in this (child) process, like the executables:

    python -m costmodels.backends.pytimeloop_runner mapper|model FILE.yaml ...

The input files are merged into one configuration (top-level mappings merged, lists concatenated),
and the outputs (``timeloop-mapper.stats.txt`` / ``.map.yaml``, ``timeloop-model.stats.txt``) are
written to the current folder. The Timeloop backend starts this as a child process so that its time
limit and isolation hold for pytimeloop too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import yaml


def merge(into: dict[str, Any], document: Any, source: str) -> None:
    if document is None:
        return
    if not isinstance(document, dict):
        raise SystemExit(f"{source}: expected a YAML mapping at the top level")
    for key, value in document.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            merge(into[key], value, f"{source}:{key}")
        elif isinstance(into[key], list) and isinstance(value, list):
            into[key] = into[key] + value
        else:
            raise SystemExit(f"{source}: key '{key}' is given twice")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("mapper", "model"):
        print("usage: python -m costmodels.backends.pytimeloop_runner mapper|model FILE.yaml ...", file=sys.stderr)
        return 2
    kind, files = argv[0], argv[1:]
    merged: dict[str, Any] = {}
    for path in files:
        with open(path) as handle:
            merge(merged, yaml.safe_load(handle), path)
    from pytimeloop.app import MapperApp, ModelApp
    from pytimeloop.config import Config

    config = Config(yaml.safe_dump(merged, sort_keys=False), "yaml")
    app_class = MapperApp if kind == "mapper" else ModelApp
    app = app_class(config, os.getcwd(), f"timeloop-{kind}")
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
