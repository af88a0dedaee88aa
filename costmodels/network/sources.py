"""Where a network's conv layers come from: the built-in zoo, an ONNX file, or any importable
``torch.nn.Module`` factory."""

from __future__ import annotations

import importlib
from pathlib import Path

from costmodels.errors import CostModelError
from costmodels.network.layers import ConvLayer


def load_layers(model: str | None = None, onnx: str | Path | None = None, module: str | None = None,
                input_shape: tuple[int, ...] | None = None, batch: int = 1) -> tuple[str, list[ConvLayer]]:
    """Return (network name, layers) from exactly one source.

    ``module`` is ``package.module:callable`` returning an ``nn.Module``; it needs ``input_shape``.
    """
    given = [s for s in (model, onnx, module) if s is not None]
    if len(given) != 1:
        raise CostModelError("give exactly one of --model NAME, --onnx FILE or --module PKG.MOD:FACTORY")
    if model is not None:
        from costmodels.network.zoo import zoo_layers
        return model, zoo_layers(model, batch=batch)
    if onnx is not None:
        from costmodels.network.extract import layers_from_onnx
        return Path(onnx).stem, layers_from_onnx(onnx)
    assert module is not None
    if input_shape is None:
        raise CostModelError("--module needs --input-shape, e.g. 1,3,224,224")
    from costmodels.network.extract import layers_from_module
    return module.rpartition(":")[2], layers_from_module(_module_from_factory(module), input_shape)


def import_factory(spec: str):
    path, _, attr = spec.partition(":")
    if not path or not attr:
        raise CostModelError(f"--module '{spec}': expected PKG.MODULE:FACTORY")
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise CostModelError(f"--module '{spec}': cannot import '{path}': {exc}") from None
    except (Exception, SystemExit) as exc:   # the user's module fails as it loads: a syntax error, a raise
        raise CostModelError(f"--module '{spec}': importing '{path}' failed: {_one_line(exc)}") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise CostModelError(f"--module '{spec}': '{path}' has no attribute '{attr}'") from None
    if not callable(factory):
        raise CostModelError(f"--module '{spec}': '{attr}' is not callable")
    return factory


def _module_from_factory(spec: str):
    """The ``nn.Module`` the factory returns; whatever else happens in the user's code is their error."""
    import torch

    factory = import_factory(spec)
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
        raise CostModelError(f"--module '{spec}': the factory failed: {_one_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise CostModelError(f"--module '{spec}': the factory returned a {type(model).__name__}, not a "
                             f"torch.nn.Module")
    return model


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
