"""Checkpoint files: atomic writes, ``weights_only`` loads, model weights from several layouts.

A checkpoint written by :mod:`pfpld_train.train` is a plain dict of tensors, numbers, strings, lists and
dicts (so ``torch.load(..., weights_only=True)`` reads it):

``{"format": "pfpld_train.checkpoint/1", "model": state_dict, "optimizer": ..., "scheduler": ...,
"scaler": ..., "epoch": int, "step": int, "best_nme": float, "rng": {...}, "config": {...},
"history": [...]}``

:func:`model_state_dict` also accepts a bare ``state_dict`` and the ``{"state_dict": ...}`` /
``{"plfd_backbone": ...}`` wrappers of published PFPLD checkpoints, with or without ``module.`` prefixes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from landmark_unify.errors import LandmarkUnifyError

__all__ = ["CheckpointError", "load_checkpoint", "load_pfpld", "model_state_dict", "save_checkpoint"]

FORMAT = "pfpld_train.checkpoint/1"


class CheckpointError(LandmarkUnifyError):
    """A checkpoint cannot be read or does not hold PFPLD weights."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temporary file in the same folder, then rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """``torch.load(path, weights_only=True)``; typed error naming the file on failure."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt or unsafe files
        raise CheckpointError(f"{path}: cannot load as a weights-only checkpoint: {exc}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def model_state_dict(obj: dict, where: str = "checkpoint") -> dict:
    """The model ``state_dict`` inside a loaded checkpoint (see the module docstring for layouts)."""
    import torch

    for key in ("model", "state_dict", "plfd_backbone", "pfld_backbone"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where}: no model state_dict found (keys: {sorted(obj)[:8]})")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_pfpld(path: str | os.PathLike, device: str = "cpu"):
    """A :class:`pfpld_train.model.PFPLD` in eval mode with the checkpoint's weights (strict)."""
    from .model import PFPLD

    model = PFPLD()
    sd = model_state_dict(load_checkpoint(path), where=str(path))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the PFPLD network: {exc}") from None
    return model.to(device).eval()
