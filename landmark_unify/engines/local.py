"""The local engine: units run in this process, on a few threads, and come back in unit order.

The reference path; no extra dependency. Two units are worked on at once by default: while one holds the
GIL in NumPy and Python code, the other parses in pyarrow's CSV reader or decodes images in OpenCV,
which release it, and the runner's writer thread encodes Parquet, which releases it too. So a local run
keeps both cores of a small machine busy, with memory bounded by the few units in flight.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .base import Engine, peak_rss

#: Threads of the local engine when ``workers`` is not given.
DEFAULT_THREADS = 2


class LocalEngine(Engine):
    """Runs units in this process on ``workers`` threads (default :data:`DEFAULT_THREADS`, at most the
    number of cores) and yields them in unit order; ``workers=1`` runs them one after the other."""

    name = "local"
    in_process = True

    def __init__(self, workers: int | None = None, **_options) -> None:
        n = int(workers) if workers else min(DEFAULT_THREADS, os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        self.workers = n

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        if self.workers == 1:
            for i, item in enumerate(items):
                yield i, fn(i, item)
            return
        # at most workers + 1 units in flight: one waiting to be taken while the others run
        with ThreadPoolExecutor(self.workers, thread_name_prefix="landmark-unify") as pool:
            pending: deque = deque()
            items = iter(enumerate(items))
            try:
                for i, item in items:
                    pending.append((i, pool.submit(fn, i, item)))
                    if len(pending) > self.workers:
                        j, fut = pending.popleft()
                        yield j, fut.result()
                while pending:
                    j, fut = pending.popleft()
                    yield j, fut.result()
            finally:
                for _, fut in pending:
                    fut.cancel()

    def worker_peak_rss(self) -> dict:
        return {f"local-{os.getpid()}": peak_rss()}
