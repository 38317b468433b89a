"""Lazy public names for a package: ``name -> submodule``, imported on first access (PEP 562)."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """Return ``(__getattr__, __dir__, __all__)`` for ``package`` whose public names live in submodules.

    ``exports`` maps a public name to its submodule, relative to ``package`` (``"maps"`` or ``".maps"``).
    ``__version__`` is listed when the package defines it."""
    public = sorted(exports) + (["__version__"] if "__version__" in namespace else [])

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module("." + module.lstrip("."), package), name)
        namespace[name] = value
        return value

    def __dir__():
        return public

    return __getattr__, __dir__, public
