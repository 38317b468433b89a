"""Ctrl-C and SIGKILL on the trainer's long commands (fit, cache, export, label), in subprocesses, on purpose.

Each command is started in its own process group and signalled once a file shows it is at work (a staging
folder, a lock, a checkpoint): no sleeping for a guessed time. Ctrl-C (SIGINT to the group, as a terminal
sends it): exit 130, ``interrupted; ...`` and no traceback, nothing partial left (fit: the checkpoints it
kept, named, and a run that resumes). SIGKILL: the output as it was; the next run removes what the killed one
left and leaves nothing behind itself. A run that ends before the signal arrives must have exit 0 and its
whole output (the same contract)."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_corpus = Path(__file__).resolve().parents[2] / "landmark_unify" / "commands" / "fault_corpus.py"
_spec = importlib.util.spec_from_file_location("fault_corpus", _corpus)
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)

WAIT = 300  # seconds: generous; the tests wait on conditions, never on a time


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "pfpld_train.cli", *map(str, args)]


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=WAIT)


def _signal_when(args, ready, sig) -> tuple[int, str, bool]:
    """Start the command, send ``sig`` to its process group once ``ready()`` is true; (exit code, stderr,
    whether the signal was sent before it ended)."""
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    t0 = time.monotonic()
    sent = False
    while proc.poll() is None and time.monotonic() - t0 < WAIT:
        if ready():
            try:
                os.killpg(proc.pid, sig)
                sent = True
            except ProcessLookupError:
                pass
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, err, sent


def _hidden(folder: Path, name: str):
    return lambda: any(p.name.startswith(f".{name}.") for p in folder.iterdir())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A manifest of 4 faces with images, one of 120 faces whose images are big (slow to cache), a
    checkpoint and a tiny ONNX model."""
    import cv2
    import numpy as np
    import torch

    from landmark_unify.ops.build import build_manifest
    from pfpld_train.models.pfpld import PFPLD

    folder = tmp_path_factory.mktemp("kill")
    good = fc.good_manifest(folder / "good.parquet")
    src = fc.coco_source(folder / "big_src", n=120)
    big = np.full((1600, 1600, 3), 120, np.uint8)
    cv2.ellipse(big, (150, 160), (66, 80), 0, 0, 360, (200, 180, 160), -1)
    cv2.imwrite(str(folder / "big.jpg"), big)
    for i in range(120):  # one decode per path: 120 big decodes
        (src / f"face{i}.jpg").symlink_to(folder / "big.jpg")
    many = build_manifest([f"coco={src}"], folder / "many.parquet", progress=False).out
    ckpt = folder / "m.pt"
    torch.save({"model": PFPLD().state_dict()}, ckpt)
    sys.path.insert(0, str(Path(__file__).parent))
    from test_fault_corpus import tiny_onnx

    onnx = tiny_onnx(folder / "tiny.onnx", 0.0)
    return {"good": good, "many": many, "ckpt": ckpt, "onnx": onnx}


def _interrupted(code: int, err: str, sent: bool) -> bool:
    """True when Ctrl-C stopped the run (exit 130, the message, no traceback); False when it had ended."""
    assert "Traceback" not in err, err
    if code == 0:
        return False
    assert sent and code == 130 and "interrupted; " in err, err
    return True


def test_ctrl_c_and_kill_during_cache(data, tmp_path):
    out = tmp_path / "c"
    args = ["cache", data["many"], "-o", out, "-q", "--workers", "2"]
    code, err, sent = _signal_when(args, _hidden(tmp_path, "c"), signal.SIGINT)
    if _interrupted(code, err, sent):
        assert "nothing written" in err and not out.exists() and fc.temporaries(tmp_path) == []
    code, err, sent = _signal_when(args, _hidden(tmp_path, "c"), signal.SIGKILL)
    if code == -signal.SIGKILL:
        assert not out.exists()
    again = _run(*args, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "cached 120 of 120" in again.stdout and fc.temporaries(tmp_path) == []


def test_ctrl_c_and_kill_during_fit(data, tmp_path):
    import torch

    run = tmp_path / "r"
    args = ["fit", data["good"], "-o", run, "--epochs", "10000", "--batch-size", "2", "--workers", "0", "-q",
            "--checkpoint-every", "1"]
    code, err, sent = _signal_when(args, lambda: (run / "last.pt").exists(), signal.SIGINT)
    assert _interrupted(code, err, sent)
    assert "kept" in err and str(run / "last.pt") in err and fc.temporaries(tmp_path) == []
    step = int(torch.load(run / "last.pt", weights_only=True)["step"])
    code, err, sent = _signal_when(["fit", "-o", run, "--resume", "--workers", "0", "-q"],
                                   lambda: int(torch.load(run / "last.pt", weights_only=True)["step"]) > step + 1
                                   if (run / "last.pt").exists() else False, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    step = int(torch.load(run / "last.pt", weights_only=True)["step"])  # the last checkpoint is whole
    again = _run("fit", "-o", run, "--resume", "--workers", "0", "-q", "--max-steps", step + 1)
    assert again.returncode == 0, again.stderr
    assert int(torch.load(run / "last.pt", weights_only=True)["step"]) == step + 1
    assert fc.temporaries(tmp_path) == []


def test_ctrl_c_before_the_first_checkpoint_leaves_no_run_folder(data, tmp_path):
    run = tmp_path / "r"
    args = ["fit", data["many"], "-o", run, "--epochs", "1", "--batch-size", "120", "--workers", "0", "-q"]
    code, err, sent = _signal_when(args, lambda: (run / "config.json").exists(), signal.SIGINT)
    if _interrupted(code, err, sent):
        if "kept" in err:  # the epoch ended first: its checkpoint is kept
            assert (run / "last.pt").is_file()
        else:
            assert "nothing written" in err and not run.exists()
    assert fc.temporaries(tmp_path) == []


def test_ctrl_c_and_kill_during_export(data, tmp_path):
    out = tmp_path / "e"
    args = ["export", data["ckpt"], "--format", "onnx", "-o", out]
    code, err, sent = _signal_when(args, _hidden(tmp_path, "e"), signal.SIGINT)
    if _interrupted(code, err, sent):
        assert "nothing written" in err and not out.exists() and fc.temporaries(tmp_path) == []
    code, err, sent = _signal_when(args, _hidden(tmp_path, "e"), signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    assert not out.exists()
    again = _run(*args)
    assert again.returncode == 0, again.stderr
    assert "removed leftover" in again.stderr and (out / "pfpld.onnx").is_file()
    assert fc.temporaries(tmp_path) == []


def test_ctrl_c_and_kill_during_label(data, shared_data, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):  # photos with faces (the bundled detector finds them)
        shutil.copy(shared_data / "upstream_pfpld" / "sample.jpg", photos / f"sample{i}.jpg")
    out = tmp_path / "l.parquet"
    before = fc.snapshot(photos)
    args = ["label", photos, "-o", out, "--model", data["onnx"], "--preset", "pfpld", "-q"]
    code, err, sent = _signal_when(args, _hidden(tmp_path, "l.parquet"), signal.SIGINT)
    if _interrupted(code, err, sent):
        assert "nothing written" in err and not out.exists() and fc.temporaries(tmp_path) == []
    code, err, sent = _signal_when(args, _hidden(tmp_path, "l.parquet"), signal.SIGKILL)
    assert not out.exists() or code != -signal.SIGKILL
    again = _run(*args, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert out.is_file() and fc.temporaries(tmp_path) == []
    assert fc.snapshot(photos) == before  # the photos read are untouched
