"""ONNX export: checkpoint loading with clear errors."""

from __future__ import annotations

import pytest
import torch
from pfpld_support import run_cli, single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import export as cmd
from pfpld_train.export.errors import ExportError
from pfpld_train.export.onnx.export import load_checkpoint
from pfpld_train.models.pfpld import build_model


def test_bad_checkpoints_fail_clearly(tmp_path):
    sd = build_model().state_dict()
    cases = {
        "missing.pt": (None, "not found"),
        "list.pt": ([1, 2], "expected a dict"),
        "nokey.pt": ({"optimizer": {"lr": 1}}, "no 'model' or 'state_dict'"),
        "keys.pt": ({"model": {k.replace("conv1", "convX"): v for k, v in sd.items()}}, "missing key"),
        "shape.pt": ({"model": {**sd, "fc.weight": torch.zeros(10, 176)}}, "shape mismatch"),
        "nan.pt": ({"model": {**sd, "fc.bias": torch.full((196,), float("nan"))}}, "non-finite"),
    }
    for name, (obj, message) in cases.items():
        if obj is not None:
            torch.save(obj, tmp_path / name)
        with pytest.raises(ExportError, match=message):
            load_checkpoint(tmp_path / name)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExportError, match="weights-only"):
        load_checkpoint(tmp_path / "junk.pt")
    assert run_cli(cmd, [str(tmp_path / "shape.pt"), "--format", "onnx", "-o", str(tmp_path / "o")]) == 1
    model, info = load_checkpoint(_save(tmp_path / "bare.pt", {f"module.{k}": v for k, v in sd.items()}))
    assert info["entry"] is None and info["tensors"] == len(sd)


def _save(path, obj):
    torch.save(obj, path)
    return path
