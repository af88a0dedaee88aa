"""Run Timeloop's mapper or model through ``pytimeloop`` in this (child) process, like the executables:

    python -m costmodels.backends.pytimeloop_runner mapper|model FILE.yaml ...

The input files are merged into one configuration (top-level mappings merged, lists concatenated),
and the outputs (``timeloop-mapper.stats.txt`` / ``.map.yaml``, ``timeloop-model.stats.txt``) are
written to the current folder. The Timeloop backend starts this as a child process so that its time
limit and isolation hold for pytimeloop too.

pytimeloop's application API changed over time; ``detect_api`` tells which one is installed:

- ``yaml-str`` (timeloop-python as of 2023-07, the last for Timeloop v3): ``pytimeloop.app.ModelApp``
  and ``MapperApp`` take the configuration as a YAML string (``yaml_str_cfg``); their ``run()``
  returns result objects in memory, and ``run_subprocess(out_dir)`` runs the Timeloop tool, which
  writes its usual files to ``out_dir``. That is the path driven here, so it needs the tool on PATH.
- ``config-object`` (earlier releases): the apps are built from a ``pytimeloop.config.Config``, an
  output folder and the tool's name, and ``run()`` writes the files.

Anything else is not driven; the backend falls back to the executables and says why.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
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
        elif into[key] == value:   # e.g. each components file repeats ``version: 0.3``
            continue
        else:
            raise SystemExit(f"{source}: key '{key}' is given twice")


API_YAML_STR = "yaml-str"
API_CONFIG_OBJECT = "config-object"


def _first_parameter(cls: Any) -> str | None:
    try:
        parameters = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):   # a compiled class without a readable signature
        return None
    return parameters[0].name if parameters else None


def detect_api() -> tuple[str | None, str]:
    """The application API of the installed pytimeloop (``API_YAML_STR`` or ``API_CONFIG_OBJECT``),
    or None, with a one-line description or the reason it cannot be driven."""
    try:
        app = importlib.import_module("pytimeloop.app")
    except Exception as exc:   # not installed, or installed but broken
        return None, f"pytimeloop.app cannot be imported ({type(exc).__name__}: {exc})"
    model, mapper = getattr(app, "ModelApp", None), getattr(app, "MapperApp", None)
    if model is None or mapper is None:
        return None, "pytimeloop.app has no ModelApp/MapperApp (an API this toolkit does not drive)"
    first = _first_parameter(model)
    if first == "yaml_str_cfg":
        if not (callable(getattr(model, "run_subprocess", None)) and callable(getattr(mapper, "run_subprocess", None))):
            return None, "pytimeloop.app's ModelApp/MapperApp(yaml_str_cfg) lack run_subprocess (an API this " \
                         "toolkit does not drive)"
        configurator = importlib.util.find_spec("bindings") is not None
        return API_YAML_STR, ("pytimeloop.app ModelApp/MapperApp(yaml_str_cfg) (timeloop-python 2023 API"
                              f"{', bindings.config.Configurator' if configurator else ''})")
    try:
        importlib.import_module("pytimeloop.config").Config
    except Exception:
        return None, (f"pytimeloop.app.ModelApp takes '{first}', not a YAML string, and pytimeloop.config.Config "
                      f"is missing (an API this toolkit does not drive)")
    return API_CONFIG_OBJECT, "pytimeloop.config.Config with pytimeloop.app ModelApp/MapperApp (config, folder, name)"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("mapper", "model"):
        print("usage: python -m costmodels.backends.pytimeloop_runner mapper|model FILE.yaml ...", file=sys.stderr)
        return 2
    kind, files = argv[0], argv[1:]
    merged: dict[str, Any] = {}
    for path in files:
        with open(path) as handle:
            merge(merged, yaml.safe_load(handle), path)
    api, why = detect_api()
    if api is None:
        print(f"pytimeloop cannot run here: {why}", file=sys.stderr)
        return 2
    from pytimeloop import app as apps

    app_class = apps.MapperApp if kind == "mapper" else apps.ModelApp
    text = yaml.safe_dump(merged, sort_keys=False)
    if api == API_YAML_STR:
        app_class(text).run_subprocess(os.getcwd())
    else:
        from pytimeloop.config import Config

        app_class(Config(text, "yaml"), os.getcwd(), f"timeloop-{kind}").run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
