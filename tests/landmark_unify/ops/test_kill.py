"""Killed at a random moment (SIGKILL: no clean-up of its own), a run leaves the previous output intact, and
the next run on the same output removes what the killed one left and leaves nothing behind itself:
build-manifest (local, one file), merge, and a dask build (a dataset). Subprocesses, on purpose."""
from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from landmark_unify.manifest import validate

_spec = importlib.util.spec_from_file_location(
    "fault_corpus", Path(__file__).resolve().parents[1] / "commands" / "fault_corpus.py")
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "landmark_unify.cli", *map(str, args)]


def _run(args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=timeout)


def _kill_at(args, after: float) -> None:
    """Start the command in its own process group and SIGKILL the group ``after`` seconds later."""
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def _snapshot(path: Path) -> dict:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _big_wflw(root: Path, n: int) -> Path:
    fc.wflw_source(root, n=n)
    return root


def _check_kills(args, out: Path, repeats: int, seed: int) -> None:
    t0 = time.perf_counter()
    first = _run(args)
    took = time.perf_counter() - t0
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)
    rng = random.Random(seed)
    for _ in range(repeats):  # each run also removes what the one before it left
        _kill_at(args, rng.uniform(0.3, 1.0) * took)  # from start-up to the commit
        assert _snapshot(out) == before, "a killed run changed the previous output"
    left = bool(fc.hidden_leftovers(out.parent, out.name))
    again = _run(args)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    if left:  # what the killed runs left, the next run removed, and said so
        assert "removed leftover" in again.stderr
    assert not fc.hidden_leftovers(out.parent, out.name), fc.hidden_leftovers(out.parent, out.name)
    assert validate(out) == []
    assert _snapshot(out) == before  # the same inputs: the same bytes


def test_killed_builds_leave_the_previous_output(tmp_path):
    src = _big_wflw(tmp_path / "wflw", 6000)
    out = tmp_path / "out" / "m.parquet"
    _check_kills(["build-manifest", "--source", f"wflw={src}", "-o", out, "-q"], out, repeats=4, seed=1)


def test_killed_merges_leave_the_previous_output(tmp_path):
    src = _big_wflw(tmp_path / "wflw", 4000)
    a = tmp_path / "a.parquet"
    assert _run(["build-manifest", "--source", f"wflw={src}", "-o", a, "-q"]).returncode == 0
    out = tmp_path / "out" / "merged.parquet"
    _check_kills(["merge", a, a, "-o", out, "-q", "--no-image-hash", "--partition-rows", "500"], out, repeats=3, seed=2)


def test_killed_dask_builds_leave_the_previous_dataset(tmp_path):
    pytest.importorskip("distributed")
    src = fc.hrnet_source(tmp_path / "hrnet", n=300)
    out = tmp_path / "out" / "ds"
    _check_kills(["build-manifest", "--source", f"hrnet-csv={src}", "-o", out, "-q", "--engine", "dask",
                  "--workers", "1"], out, repeats=2, seed=3)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_ctrl_c_during_a_build_on_every_engine(tmp_path, engine):
    """SIGINT to the process group (a terminal's Ctrl-C) once the run is at work (its lock or staging appears):
    exit 130, ``interrupted; nothing written``, no traceback (from the workers either), the earlier output
    as it was, nothing left beside it."""
    if engine == "dask":
        pytest.importorskip("distributed")
    src = _big_wflw(tmp_path / "wflw", 20000)
    out = tmp_path / "out" / ("m.parquet" if engine == "local" else "ds")
    args = ["build-manifest", "--source", f"wflw={src}", "-o", out, "-q", "--engine", engine]
    assert _run(args).returncode == 0
    before = _snapshot(out)
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and not fc.hidden_leftovers(out.parent, out.name) and time.monotonic() - t0 < 300:
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        assert err.strip().endswith("interrupted; nothing written"), err
    assert _snapshot(out) == before and not fc.hidden_leftovers(out.parent, out.name)
