"""Progress of long work, the one door of both CLIs.

On a terminal a :class:`Progress` is a tqdm bar that redraws in place. Anywhere else (a log file, a pipe,
a notebook capturing stderr) redrawn frames would run into the summary and the logs, so it draws nothing
while running and writes one line when it closes: what was counted, in how long, at what rate::

    build.parquet: 1966 faces in 0.2 s (9.83k faces/s)

What a bar counts (``n``) is decided by the code and can be asserted; the frames a terminal happens to
see depend on speed and cannot.
"""
from __future__ import annotations

import sys
import time


def _on_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _rate(n: float, seconds: float) -> str:
    rate = n / seconds if seconds > 0 else float("inf")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale and rate != float("inf"):
            return f"{rate / scale:.3g}{suffix}"
    return "inf" if rate == float("inf") else f"{rate:.3g}"


class Progress:
    """A count of work done, shown as a bar on a terminal and as one closing line elsewhere.

    ``unit`` is the plural noun counted (``"faces"``, ``"images"``); ``enabled=False`` shows nothing.
    ``extra`` sets the text after the count (``set_postfix_str``). Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, *, total: int | None = None, desc: str = "", unit: str = "items", enabled: bool = True,
                 initial: int = 0, leave: bool = False, stream=None):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit.strip(), enabled
        self.n = initial
        self._initial = initial
        self._extra = ""
        self._stream = sys.stderr if stream is None else stream
        self._t0 = time.perf_counter()
        self._closed = False
        self._bar = None
        if enabled and _on_terminal(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {self.unit}", unit_scale=True, initial=initial,
                             leave=leave, file=self._stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix_str(self, text: str) -> None:
        self._extra = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def summary(self) -> str:
        """The closing line: ``DESC: N UNIT in T s (R UNIT/s)[, EXTRA]``."""
        seconds = time.perf_counter() - self._t0
        done = self.n - self._initial
        head = f"{self.desc}: " if self.desc else ""
        of = f"/{self.total}" if self.total is not None and self.total != self.n else ""
        tail = f", {self._extra}" if self._extra else ""
        return f"{head}{self.n}{of} {self.unit} in {seconds:.1f} s ({_rate(done, seconds)} {self.unit}/s){tail}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print(self.summary(), file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable, *, total: int | None = None, **kwargs):
    """Iterate over ``iterable``, counting one per item in a :class:`Progress`."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    with Progress(total=total, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)
