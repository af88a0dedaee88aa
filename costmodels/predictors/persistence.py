"""Save and load fitted predictors without pickle.

A predictor file is a zip archive holding ``metadata.json`` (format and version, the spec's name
and content hash, the feature list, each target's estimator and training size, library versions,
and whatever provenance the caller adds, such as the held-out accuracy) and one skops file per
target (``cycles.skops``, ``energy.skops``). skops stores an estimator as a JSON schema plus numpy
arrays and rebuilds only types it is told to trust; the loader accepts scikit-learn's default-trusted
types plus the explicit list ``TRUSTED_TYPES`` and refuses a file that needs any other.

Loading checks, before any estimator is read: that the file is a predictor file, that its format
version is one this toolkit reads, that it was fitted for the given spec (same content hash) and
on the features this toolkit computes. A predictor fitted on a measured device (``--backend
torch``) records the device fingerprint (CPU model or GPU name, torch and cuDNN versions, threads,
dtype, clock) and is refused for any other device or setting, and for a spec. Each failure is a ``PredictorFileError`` with a one-line
reason.
"""

from __future__ import annotations

import io
import json
import math
import platform
import warnings
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from costmodels.version import __version__
from costmodels.errors import CostModelError
from costmodels.predictors.features import FEATURES_VERSION
from costmodels.io_utils import atomic_write_bytes
from costmodels.predictors.device_features import DEVICE_FEATURES_VERSION, DeviceFeatureSet
from costmodels.predictors.estimators import (ESTIMATORS, Comparison, CostPredictor, Domain, Predictors, Target,
                                              targets_for)
from costmodels.problems.workloads import Workload
from costmodels.user_files import InputFileError, read_user_bytes

FORMAT = "haloc-costmodels-predictor"
FORMAT_VERSION = 1
METADATA = "metadata.json"
# Beyond skops' defaults (scikit-learn estimators, numpy arrays), the only type our estimators need.
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
MAX_PREDICTOR_BYTES = 256 * 1024 ** 2   # a forest fitted on many workloads runs to tens of MB
MAX_MEMBER_BYTES = 2 * MAX_PREDICTOR_BYTES   # unpacked; a zip bomb stops here


class PredictorFileError(CostModelError):
    """A predictor file that cannot be used here: not one, a newer format, another spec, other
    features, or a type outside the trusted list."""


@dataclass(frozen=True)
class LoadedPredictors:
    predictors: Predictors
    metadata: dict[str, Any]


def library_versions() -> dict[str, str]:
    import numpy
    import sklearn
    import skops

    return {"haloc-costmodels": __version__, "scikit-learn": sklearn.__version__, "skops": skops.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_predictors(path: str | Path, predictors: Predictors, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``predictors`` to ``path`` (atomically); ``provenance`` is stored as is in the metadata."""
    import skops.io

    path = Path(path)
    features = predictors.cycles.features
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": {"name": features.spec_name, "hash": features.spec_hash},
        **({"device": {"fingerprint": features.fingerprint}} if isinstance(features, DeviceFeatureSet) else {}),
        "features": {"version": _features_version(features), "digest": features.digest, "names": list(features.names)},
        "targets": {target: {"estimator": predictors[target].estimator_, "n_train": predictors[target].n_train_,
                             "domain": asdict(predictors[target].domain_),
                             "comparison": [asdict(c) for c in predictors[target].comparison_]}
                    for target in predictors.targets},
        "versions": library_versions(),
        "provenance": provenance or {},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA, json.dumps(metadata, indent=1) + "\n")
        for target in predictors.targets:
            archive.writestr(f"{target}.skops", skops.io.dumps(predictors[target].model_))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _open_archive(path: Path) -> zipfile.ZipFile:
    """The zip archive at ``path``, read whole through the bounded reader (a regular file of at most
    ``MAX_PREDICTOR_BYTES``)."""
    try:
        data = read_user_bytes(path, MAX_PREDICTOR_BYTES)
    except InputFileError as exc:
        raise PredictorFileError(str(exc)) from None
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise PredictorFileError(f"{path}: not a predictor file (expected a zip archive with {METADATA}, as "
                                 f"`costmodel fit` writes)") from None


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    """One member's bytes; a missing, oversized (a zip bomb) or corrupt member is a ``PredictorFileError``."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise PredictorFileError(f"{path}: not a predictor file (no member {name})") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise PredictorFileError(f"{path}: member {name} unpacks to {info.file_size:,} bytes; at most "
                                 f"{MAX_MEMBER_BYTES:,} are read")
    try:
        with archive.open(info) as handle:
            data = handle.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, EOFError, OSError) as exc:
        raise PredictorFileError(f"{path}: member {name} cannot be unpacked: {exc}") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise PredictorFileError(f"{path}: member {name} unpacks to more than {MAX_MEMBER_BYTES:,} bytes")
    return data


def _field(path: Path, metadata: dict[str, Any], name: str) -> dict[str, Any]:
    value = metadata.get(name) or {}
    if not isinstance(value, dict):
        raise PredictorFileError(f"{path}: {METADATA}: field '{name}' must be an object, got "
                                 f"{type(value).__name__}")
    return value


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a predictor file, checked for format and version only."""
    path = Path(path)
    with _open_archive(path) as archive:
        try:
            metadata = json.loads(_member(path, archive, METADATA))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise PredictorFileError(f"{path}: not a predictor file ({METADATA} is not JSON)") from None
    if not isinstance(metadata, dict):
        raise PredictorFileError(f"{path}: not a predictor file ({METADATA} is not an object)")
    if metadata.get("format") != FORMAT:
        raise PredictorFileError(f"{path}: not a predictor file (format {str(metadata.get('format'))[:80]!r}, "
                                 f"expected {FORMAT!r})")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PredictorFileError(f"{path}: format_version {str(version)[:80]!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise PredictorFileError(f"{path}: predictor format version {version} is newer than this toolkit reads "
                                 f"(up to {FORMAT_VERSION}); upgrade haloc-costmodels or refit with "
                                 f"`costmodel fit`")
    return metadata


def load_predictors(path: str | Path, spec: Target) -> LoadedPredictors:
    """Read a predictor file written by ``save_predictors`` for ``spec``; see the module docstring."""
    path = Path(path)
    metadata = read_metadata(path)
    made_for = _field(path, metadata, "spec")
    device = _field(path, metadata, "device")
    probe = CostPredictor(spec)
    if (device or isinstance(probe.features, DeviceFeatureSet)) and made_for.get("hash") != spec.content_hash:
        fitted_on = (f"measured device '{made_for.get('name')}' ({device.get('fingerprint')})" if device
                     else f"spec '{made_for.get('name')}'")
        here = (f"device '{spec.name}' ({probe.features.fingerprint})"
                if isinstance(probe.features, DeviceFeatureSet) else f"spec '{spec.name}'")
        raise PredictorFileError(f"{path}: fitted on {fitted_on}, not {here}; measurements do not carry over "
                                 f"between devices or settings: refit with `costmodel fit` on this target")
    if made_for.get("hash") != spec.content_hash:
        raise PredictorFileError(f"{path}: fitted for spec '{made_for.get('name')}' (hash {made_for.get('hash')}), "
                                 f"not '{spec.name}' (hash {spec.content_hash}); refit with "
                                 f"`costmodel fit --arch {spec.name}`")
    features = _field(path, metadata, "features")
    if features.get("digest") != probe.features.digest:
        raise PredictorFileError(f"{path}: fitted on features version {features.get('version')} "
                                 f"(digest {features.get('digest')}); this toolkit computes version "
                                 f"{_features_version(probe.features)} (digest {probe.features.digest}); refit with "
                                 f"`costmodel fit`")
    _warn_on_versions(path, _field(path, metadata, "versions"))
    targets = _field(path, metadata, "targets")
    loaded = {}
    with _open_archive(path) as archive:
        for target in targets_for(spec):
            info = targets.get(target)
            if not isinstance(info, dict) or f"{target}.skops" not in archive.namelist():
                raise PredictorFileError(f"{path}: no {target} predictor in the file")
            loaded[target] = _predictor(path, archive, spec, target, info)
    return LoadedPredictors(Predictors(loaded["cycles"], loaded.get("energy")), metadata)


def _features_version(features: Any) -> int:
    return DEVICE_FEATURES_VERSION if isinstance(features, DeviceFeatureSet) else FEATURES_VERSION


def _predictor(path: Path, archive: zipfile.ZipFile, spec: Target, target: str,
               info: dict[str, Any]) -> CostPredictor:
    """One target's predictor, checked to be what the metadata claims: a trusted estimator of the named
    kind, with typed metadata, that predicts a finite positive cost for a probe workload."""
    import skops.io

    member = f"{target}.skops"
    data = _member(path, archive, member)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:   # not a skops file: skops raises whatever its zip and JSON parsing meet
        raise PredictorFileError(f"{path}: {member} is not a skops file ({type(exc).__name__})") from None
    foreign = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if foreign:
        raise PredictorFileError(f"{path}: {member} needs types outside the trusted list: "
                                 f"{', '.join(foreign)}; refusing to load it")
    try:
        model = skops.io.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise PredictorFileError(f"{path}: {member} cannot be loaded ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:200]})") from None
    estimator = info.get("estimator")
    if estimator not in ESTIMATORS:
        raise PredictorFileError(f"{path}: {METADATA}: targets.{target}.estimator {str(estimator)[:80]!r} is not "
                                 f"one of {', '.join(ESTIMATORS)}")
    n_train = info.get("n_train", 0)
    if not isinstance(n_train, int) or isinstance(n_train, bool) or n_train < 0:
        raise PredictorFileError(f"{path}: {METADATA}: targets.{target}.n_train {str(n_train)[:80]!r} is not a "
                                 f"non-negative integer")
    try:
        domain = Domain(**info["domain"])
        comparison = tuple(Comparison(**row) for row in info.get("comparison") or ())
    except (KeyError, TypeError) as exc:
        raise PredictorFileError(f"{path}: metadata of the {target} predictor is incomplete: {exc}") from None
    numbers = [domain.lowest, domain.highest, domain.fallback] + [
        value for c in comparison for value in (c.mape, c.max_error, c.within_5, c.within_10, c.fit_s)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in (domain.lowest, domain.highest)):
        raise PredictorFileError(f"{path}: {METADATA}: targets.{target}: domain and comparison must hold finite "
                                 f"numbers (integer domain bounds)")
    predictor = CostPredictor.from_fitted(spec, target, estimator, model, n_train, domain, comparison)
    try:
        probe = predictor.predict([Workload(C=16, M=16, R=3, S=3, N=1, P=8, Q=8)])
    except Exception as exc:
        raise PredictorFileError(f"{path}: {member} is not a working {estimator} estimator for {target} "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if not (np.all(np.isfinite(probe)) and np.all(probe > 0)):
        raise PredictorFileError(f"{path}: {member} predicts {probe[0]!r} {target} for a probe workload; "
                                 f"expected a finite positive cost")
    return predictor


def _warn_on_versions(path: Path, versions: dict[str, Any]) -> None:
    """scikit-learn may change an estimator's internals between releases: say so, but let skops try."""
    import sklearn

    saved = str(versions.get("scikit-learn", ""))
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        warnings.warn(f"{path}: saved with scikit-learn {saved or 'unknown'}, loading with {sklearn.__version__}; "
                      f"refit if predictions look wrong", stacklevel=3)
