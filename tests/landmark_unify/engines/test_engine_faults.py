"""Faults: a dask worker process killed (SIGKILL) in the middle of a run. Either the scheduler retries its
partition elsewhere and the result equals the local one, or the run fails with EngineError and nothing
that looks like a dataset is left behind."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from landmark_unify import manifest as mf
from landmark_unify.engines import EngineError
from landmark_unify.engines.dask import DaskEngine
from landmark_unify.errors import ManifestError
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.runner import map_manifest

pytest.importorskip("distributed")


def slow_identity(seconds: float, df):
    """A per-row function that takes its time, so that a worker can be killed while it runs."""
    time.sleep(seconds)
    return df, {"rows": len(df)}


@pytest.fixture(scope="module", autouse=True)
def _ship_this_module_by_value():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def manifest_file(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "wflw.parquet"
    build_manifest([f"wflw={shared_data}/WFLW"], out, progress=False)
    return out


def kill_one_worker_when_busy(engine: DaskEngine, staging_parent: Path, out_name: str) -> threading.Thread:
    """SIGKILL one worker process once the run has written its first part."""
    pids = list(engine.worker_pids().values())

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(staging_parent.glob(f".{out_name}.staging-*/source=*/split=*/part-*.parquet")):
                break
            time.sleep(0.02)
        time.sleep(0.1)
        os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


def _meta(in_meta, sums):
    return dict(in_meta, command="test")


def test_killed_worker_is_retried_and_the_result_is_complete(manifest_file, tmp_path):
    engine = DaskEngine(workers=2)
    try:
        before = set(engine.worker_pids().values())
        out = tmp_path / "ds"
        killer = kill_one_worker_when_busy(engine, tmp_path, "ds")
        run = map_manifest(manifest_file, out, partial(slow_identity, 0.3), metadata=_meta, engine=engine,
                             rows_per_partition=100, progress=False)
        killer.join()
        after = set(engine.worker_pids().values())
    finally:
        engine.close()
    assert before - after, "no worker was killed during the run"
    assert run.units == 20 and run.extra["rows"] >= 1966  # a retried partition may count twice
    assert (out / mf.SUCCESS_FILE).exists() and mf.validate_dataset(out) == []
    a, b = mf.read_table(manifest_file), mf.read_dataset_table(out)
    assert a.num_rows == b.num_rows == 1966
    assert a.column("sample_id").equals(b.column("sample_id"))
    assert mf.dataframe_from_table(a)["landmarks"].map(lambda x: x.tobytes()).equals(
        mf.dataframe_from_table(b)["landmarks"].map(lambda x: x.tobytes()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_killed_worker_without_retries_fails_clearly_and_leaves_nothing(manifest_file, tmp_path):
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        engine = DaskEngine(workers=2)
        try:
            out = tmp_path / "ds"
            killer = kill_one_worker_when_busy(engine, tmp_path, "ds")
            with pytest.raises(EngineError, match="died") as info:
                map_manifest(manifest_file, out, partial(slow_identity, 0.3), metadata=_meta, engine=engine,
                               rows_per_partition=100, progress=False)
            killer.join()
        finally:
            engine.close()
    assert "no output was written" in str(info.value)
    time.sleep(0.5)  # tasks still running when the run was aborted must not re-create anything
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ManifestError):
        mf.read_dataset(out)


def test_driver_terminated_mid_run_leaves_nothing(manifest_file, tmp_path):
    """SIGTERM (or Ctrl-C) to the driver: the run aborts, its staging directory is removed."""
    import subprocess

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        "from landmark_unify.ops.runner import map_manifest\n"
        "def slow(df):\n"
        "    time.sleep(0.2)\n"
        "    return df, {}\n"
        "if __name__ == '__main__':\n"
        "    map_manifest(sys.argv[1], sys.argv[2], slow, metadata=lambda m, s: m, rows_per_partition=50,\n"
        "                   progress=False)\n")
    out = tmp_path / "out" / "ds"
    p = subprocess.Popen([sys.executable, str(script), str(manifest_file), str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.parent.glob(".ds.staging-*/source=*/split=*/part-*.parquet")):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "terminated by SIGTERM" in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # nothing left; the folder made for it goes too


@pytest.mark.timeout(300)  # a hang guard: the run must end (the grace it names is asserted below)
def test_a_run_whose_only_worker_dies_for_good_fails_within_the_grace(manifest_file, tmp_path):
    """The only worker killed and not restarted (as when its nanny cannot bring it back): no worker will ever
    run the waiting partitions. The run ends with an EngineError after the engine's grace (here 3 s), not
    never, and leaves nothing."""
    engine = DaskEngine(workers=1, worker_grace=3.0)
    try:
        workers = list(engine.worker_pids().values())
        for nanny in engine._cluster.workers.values():  # the nannies live in this process: none restarts
            async def never():
                return None

            nanny.instantiate = never
        out = tmp_path / "ds"

        def killer():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(tmp_path.glob(".ds.staging-*/source=*/split=*/part-*")):
                time.sleep(0.02)
            os.kill(workers[0], signal.SIGKILL)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        with pytest.raises(EngineError, match="no worker for 3 s") as info:
            map_manifest(manifest_file, out, partial(slow_identity, 0.3), metadata=_meta, engine=engine,
                         rows_per_partition=100, progress=False)
        t.join()
    finally:
        engine.close()
    assert "no output was written" in str(info.value)
    assert list(tmp_path.iterdir()) == []
