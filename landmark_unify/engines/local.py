"""The local engine: units run in this process, in order. The reference path; no extra dependency."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from .base import Engine, peak_rss


class LocalEngine(Engine):
    """Runs units one after the other in this process and yields them in unit order.

    The runner overlaps the next unit's work with the Parquet write of the previous one (pyarrow writes
    without holding the GIL), so a local run keeps both cores of a small machine busy.
    """

    name = "local"
    in_process = True

    def __init__(self, workers: int | None = None, **_options) -> None:
        self.workers = 1

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        for i, item in enumerate(items):
            yield i, fn(i, item)

    def worker_peak_rss(self) -> dict:
        return {f"local-{os.getpid()}": peak_rss()}
