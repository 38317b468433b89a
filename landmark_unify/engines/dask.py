"""The dask engine: units run as ``dask.distributed`` tasks (the ``dask`` extra).

A ``LocalCluster`` of ``workers`` processes on 127.0.0.1 is started for the run, or an existing cluster is
used through its scheduler address. Workers must see the input files, the image roots and the output
directory at the same paths (``docs/guides/scale-out.md``). A worker killed mid-run is retried on another
worker by the scheduler (up to ``distributed.scheduler.allowed-failures`` times); beyond that the run fails
with :class:`EngineError`.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa

from .base import SCHEDULER_ENV, Engine, EngineError, peak_rss

#: Seconds to wait for a running scheduler to answer (an unreachable one is an error after this long).
CONNECT_TIMEOUT = 5.0
#: Seconds a run waits while the cluster has no worker at all (its workers died and none came back) before it
#: fails: tasks would wait for a worker forever. Long enough for a nanny to restart a killed worker.
WORKER_GRACE = 30.0
#: Seconds between two looks at the cluster's workers while no task completes.
_WATCH_EVERY = 0.5
_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")
_ADDRESS = re.compile(r"^(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(?P<port>[0-9]+))?/?$")


def check_scheduler_address(address: str, option: str = "--scheduler") -> str:
    """``address`` if it is a scheduler address (``tcp://HOST:PORT``, also ``tls://``, ``ucx://``, ``ws://``,
    ``wss://``, or ``HOST:PORT``), else an EngineError naming the option; checked before connecting."""
    text = str(address).strip()
    m = _ADDRESS.match(text)
    problem = None
    if not m:
        problem = "it is not of the form tcp://HOST:PORT"
    elif m["scheme"] and m["scheme"] not in _SCHEMES:
        problem = f"unknown protocol {m['scheme']!r} (known: {', '.join(_SCHEMES)})"
    elif m["scheme"] != "inproc" and m["port"] is None:
        problem = "it has no port (the scheduler's default is 8786: tcp://HOST:8786)"
    elif m["port"] is not None and not 0 < int(m["port"]) < 65536:
        problem = f"port {m['port']} is not between 1 and 65535"
    if problem:
        raise EngineError(f"{option}: bad scheduler address {address!r}: {problem}")
    return text


class DaskEngine(Engine):
    """Runs units as ``dask.distributed`` tasks, one task per unit, results returned as they complete.

    scheduler: address of a running scheduler (``tcp://host:8786``); when None, a ``LocalCluster`` of
    ``workers`` worker processes (one thread each) is started on 127.0.0.1 with the dashboard off, and
    closed with the engine. ``memory_limit`` is passed to the local workers (``"auto"`` by default).
    """

    name = "dask"
    in_process = False

    def __init__(self, workers: int | None = None, scheduler: str | None = None, memory_limit="auto",
                 timeout: float = 60.0, connect_timeout: float = CONNECT_TIMEOUT,
                 worker_grace: float = WORKER_GRACE) -> None:
        if not 0 < float(worker_grace) < float("inf"):
            raise ValueError(f"worker_grace must be a positive number of seconds; got {worker_grace}")
        self.worker_grace = float(worker_grace)
        from_env = not scheduler and bool(os.environ.get(SCHEDULER_ENV))
        scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        if scheduler is not None:  # a bad address is named before dask is even imported
            scheduler = check_scheduler_address(scheduler, f"${SCHEDULER_ENV}" if from_env else "--scheduler")
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EngineError(
                "engine 'dask' needs dask.distributed: pip install 'landmark-unify[dask]'"
            ) from None
        self._cluster = None
        if scheduler is None:
            n = int(workers or 1)
            if n < 1:
                raise ValueError(f"workers must be >= 1; got {workers}")
            import dask

            # dask's workers start with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's adaptive
            # mmap threshold: every decoded image buffer is then mmapped and unmapped, and image checks run
            # 2.2x slower than in a plain process (measured). Short-lived local workers do not need it.
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                    warnings.catch_warnings():
                # without a dashboard the scheduler still serves /health on 127.0.0.1 (8787, or any free port)
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                self._cluster = LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, memory_limit=memory_limit, silence_logs=40,
                )
            self.client = Client(self._cluster, timeout=timeout)
            # n processes share this machine's cores: give each worker's Arrow pool its share (dask already
            # sets OMP/MKL/OpenBLAS threads to 1 in its workers), or the workers oversubscribe the CPU
            self.client.run(_limit_arrow_threads, max(1, (os.cpu_count() or 1) // n))
        else:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"cannot reach the dask scheduler at {scheduler} within {connect_timeout:g} s "
                                  f"({type(exc).__name__}: {exc}); is it running, and is the address right?") from None
            if workers:
                try:
                    self.client.wait_for_workers(int(workers), timeout=timeout)
                except (OSError, TimeoutError) as exc:
                    self.close()
                    raise EngineError(f"the dask cluster at {scheduler} did not get {workers} workers within "
                                      f"{timeout:g} s: {exc}") from None
        self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"]) if _has_n_workers_kw(self.client) \
            else len(self.client.scheduler_info()["workers"])

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        token = uuid.uuid4().hex[:8]
        keys = [f"landmark-unify-{token}-{i:05d}" for i in range(len(items))]
        futures = self.client.map(fn, list(range(len(items))), list(items), key=keys, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            watch = _Watch(self, len(items))
            for fut in self._completed(as_completed(futures), watch):
                i = index[fut.key]
                try:
                    result = self._result(fut, watch)
                except KilledWorker as exc:
                    what = describe(i) if describe else f"unit {i}"
                    raise EngineError(
                        f"partition {i + 1} of {len(items)} ({what}) was running on a worker that died, and "
                        f"died again on each retry (dask gives up after "
                        f"distributed.scheduler.allowed-failures retries; last worker {exc.last_worker}); "
                        "the run is aborted and no output was written"
                    ) from None
                except Exception as exc:
                    if _is_comm_error(exc):
                        raise EngineError(f"lost the dask cluster while running partition {i + 1} of "
                                          f"{len(items)}: {exc}") from exc
                    raise  # the task's own error (e.g. a ParseError naming file, line and field), as it is
                yield i, result
        finally:
            self.client.cancel(futures)

    def _completed(self, done, watch: _Watch) -> Iterator:
        """The futures of ``done`` (an ``as_completed``) as they complete, while ``watch`` sees workers."""
        import time

        while not done.is_empty():
            if done.has_ready():
                watch.alive()
                yield from done.next_batch(block=False)
                continue
            time.sleep(0.02)
            watch.check(done.count())

    def _result(self, fut, watch: _Watch):
        """``fut.result()``, while ``watch`` sees workers: a result lost with its worker is computed again, and
        waits for a worker like a task that never ran."""
        while True:
            try:
                return fut.result(timeout=_WATCH_EVERY)
            except TimeoutError:
                watch.check(1, force=True)

    def _worker_count(self) -> int:
        try:
            info = self.client.scheduler_info(n_workers=-1) if _has_n_workers_kw(self.client) \
                else self.client.scheduler_info()
            return len(info.get("workers", {}))
        except Exception as exc:
            if _is_comm_error(exc) or isinstance(exc, OSError):
                raise EngineError(f"lost the dask cluster: {exc}") from None
            raise

    def worker_peak_rss(self) -> dict:
        return self.client.run(peak_rss)

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()


class _Watch:
    """Whether the cluster has workers while a run waits: an EngineError once it has had none for the
    engine's ``worker_grace`` seconds (tasks would wait for a worker forever)."""

    def __init__(self, engine: DaskEngine, total: int) -> None:
        import time

        self.engine, self.total = engine, total
        self.alone_since: float | None = None
        self.last_look = time.monotonic()

    def alive(self) -> None:
        self.alone_since = None

    def check(self, left: int, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self.last_look < _WATCH_EVERY:
            return
        self.last_look = now
        if self.engine._worker_count() > 0:
            self.alone_since = None
        elif self.alone_since is None:
            self.alone_since = now
        elif now - self.alone_since >= self.engine.worker_grace:
            raise EngineError(f"the dask cluster has had no worker for {self.engine.worker_grace:g} s with partitions "
                              f"of {self.total} still to run: its workers died or left and none came back (out of "
                              "memory? killed?); the run is aborted and no output was written")


def _limit_arrow_threads(n: int) -> int:
    pa.set_cpu_count(n)
    return n


def _has_n_workers_kw(client) -> bool:
    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _is_comm_error(exc: BaseException) -> bool:
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, CommClosedError | TimeoutError)
