"""Engines that run the operations' units: ``local`` (this process) and ``dask`` (a cluster).

An engine is one class (:class:`~landmark_unify.engines.base.Engine`) registered here by name; every
operation and every command option works on each of them. To add one (say Ray), subclass ``Engine``,
implement ``map``, and call :func:`register_engine`.
"""
from __future__ import annotations

import contextlib
import importlib

from .base import SCHEDULER_ENV, Engine, EngineError, peak_rss
from .run_options import RunOptions

#: Registered engines: name -> "module:Class" (imported on first use, so dask loads only when asked for).
_REGISTRY: dict[str, str | type] = {
    "local": "landmark_unify.engines.local:LocalEngine",
    "dask": "landmark_unify.engines.dask:DaskEngine",
}


def engine_names() -> tuple[str, ...]:
    """The names ``engine=`` and ``--engine`` accept."""
    return tuple(_REGISTRY)


def register_engine(name: str, cls: type | str) -> None:
    """Make ``engine=name`` build ``cls(workers=..., scheduler=..., **options)``."""
    _REGISTRY[name] = cls


def engine_class(name: str) -> type:
    target = _REGISTRY.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}; valid: {list(_REGISTRY)}")
    if isinstance(target, str):
        module, cls = target.split(":")
        target = getattr(importlib.import_module(module), cls)
    return target


def get_engine(engine: str | Engine = "local", workers: int | None = None, scheduler: str | None = None,
               **options) -> Engine:
    """An engine by name, or ``engine`` itself when it is already one."""
    if isinstance(engine, Engine):
        return engine
    cls = engine_class(engine)
    if scheduler is not None:
        options["scheduler"] = scheduler
    return cls(workers=workers, **options)


@contextlib.contextmanager
def engine_context(engine: str | Engine = "local", workers=None, scheduler=None, **options):
    """Start an engine for one run and close it afterwards (an engine object passed in is left open)."""
    owned = not isinstance(engine, Engine)
    eng = get_engine(engine, workers, scheduler, **options)
    try:
        yield eng
    finally:
        if owned:
            eng.close()


__all__ = ["Engine", "EngineError", "RunOptions", "SCHEDULER_ENV", "engine_context", "engine_names", "get_engine", "peak_rss",
           "register_engine"]
