"""``RunOptions``: where and how an operation's units run, given once.

Every operation of :mod:`landmark_unify.ops` takes ``run=RunOptions(...)`` (or the same fields as
keywords, ``engine="dask", workers=4``, gathered into one by :meth:`RunOptions.of`) and passes the object
down; the CLI builds it once from ``--engine``, ``--workers``, ``--scheduler``, ``--partition-rows``,
``--single-file`` and ``--quiet`` (:func:`landmark_unify.cli_base.run_options`). The engine is resolved
(its class looked up, or the engine object given) when the options are made, so a bad engine name fails
before anything is read, and whether its units run in this process is asked in one place
(:attr:`RunOptions.in_process`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ..manifest import DEFAULT_ROWS_PER_PARTITION
from .base import Engine, EngineError


@dataclass(frozen=True)
class RunOptions:
    """The engine settings of one run.

    engine: ``"local"``, ``"dask"`` (any registered name) or a started :class:`Engine` (left open);
    workers: threads (local) or worker processes (dask), None for the engine's default; scheduler: a dask
    scheduler address; rows_per_partition: faces per unit of operations that slice a manifest;
    single_file: with a dataset output, also write the single-file form here; progress: draw progress
    (``landmark_unify.progress``); engine_options: further keyword arguments of the engine's constructor.
    """

    engine: str | Engine = "local"
    workers: int | None = None
    scheduler: str | None = None
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION
    single_file: str | os.PathLike | None = None
    progress: bool = True
    engine_options: Mapping | None = None
    engine_class: type = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from . import engine_class

        if isinstance(self.engine, Engine):
            cls = type(self.engine)
        else:
            cls = engine_class(self.engine)  # an unknown name is an EngineError here, once
        object.__setattr__(self, "engine_class", cls)
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise EngineError(f"workers must be a whole number >= 1 or None; got {self.workers!r}")
        if isinstance(self.rows_per_partition, bool) or not isinstance(self.rows_per_partition, int) \
                or self.rows_per_partition < 1:
            raise EngineError(f"rows_per_partition must be a whole number >= 1; got {self.rows_per_partition!r}")

    #: the field names, which :meth:`of` and :meth:`take` accept as keywords
    FIELDS = ("engine", "workers", "scheduler", "rows_per_partition", "single_file", "progress", "engine_options")

    @classmethod
    def of(cls, run: RunOptions | None = None, **fields) -> RunOptions:
        """``run`` with ``fields`` replaced (``RunOptions(**fields)`` when ``run`` is None). A keyword that is
        not a field is a TypeError naming it."""
        unknown = sorted(set(fields) - set(cls.FIELDS))
        if unknown:
            raise TypeError(f"unknown engine setting(s) {unknown}; valid: {list(cls.FIELDS)}")
        if run is None:
            return cls(**fields)
        return dataclasses.replace(run, **fields) if fields else run

    @classmethod
    def take(cls, run: RunOptions | None, kwargs: dict) -> tuple[RunOptions, dict]:
        """Split ``kwargs`` into the engine settings (over ``run``) and the rest."""
        mine = {k: kwargs[k] for k in cls.FIELDS if k in kwargs}
        rest = {k: v for k, v in kwargs.items() if k not in mine}
        return cls.of(run, **mine), rest

    def replace(self, **fields) -> RunOptions:
        return self.of(self, **fields)

    @property
    def in_process(self) -> bool:
        """Whether the units run in this process (``Engine.in_process`` of the resolved engine)."""
        return bool(self.engine.in_process if isinstance(self.engine, Engine) else self.engine_class.in_process)

    @contextlib.contextmanager
    def start(self) -> Iterator[Engine]:
        """The engine for one run, started from the resolved class and closed afterwards (an engine object
        given as ``engine`` is used as it is and left open)."""
        if isinstance(self.engine, Engine):
            yield self.engine
            return
        options = dict(self.engine_options or {})
        if self.scheduler is not None:
            options["scheduler"] = self.scheduler
        eng = self.engine_class(workers=self.workers, **options)
        try:
            yield eng
        finally:
            eng.close()

    @contextlib.contextmanager
    def started(self) -> Iterator[RunOptions]:
        """These options with the engine started once (for a run of several steps: the steps share it)."""
        with self.start() as eng:
            yield self.replace(engine=eng)


__all__ = ["RunOptions"]
