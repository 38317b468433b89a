"""What an engine is: something that runs a picklable function over a list of work units.

Operations (``landmark_unify.ops``) are written once, as per-unit pure functions, and take the engine as a
parameter (``engine="local"``, ``engine="dask"`` or an :class:`Engine` object), the way a dataset library
takes ``num_proc``: where the units run is never part of the operation.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterator, Sequence

from ..errors import LandmarkUnifyError

#: Environment variable naming a dask scheduler address used when ``scheduler`` is not given.
SCHEDULER_ENV = "LANDMARK_UNIFY_SCHEDULER"


class EngineError(LandmarkUnifyError):
    """The engine could not complete a run (a worker died too often, the cluster went away, ...)."""


class Engine:
    """Base class of the engines. A subclass sets :attr:`name` and implements :meth:`map`.

    ``in_process``: the units run in this process, so a unit's result (an Arrow table) reaches the caller
    without being written to disk first; the runner then streams it straight into the output. Engines
    whose workers are other processes or machines leave it False: their workers write the unit's rows as
    parts of a staged dataset and send back only a small record.
    """

    name = "engine"
    workers = 1
    in_process = False

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        """Yield ``(index, fn(index, item))`` for every item, in any order; ``describe(index)`` names a unit
        in error messages."""
        raise NotImplementedError

    def worker_peak_rss(self) -> dict:
        """Peak resident memory of each worker in bytes, by worker name."""
        return {}

    def close(self) -> None:
        """Release the engine's resources (a cluster it started, ...)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux ``ru_maxrss`` is in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
