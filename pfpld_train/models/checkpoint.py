"""Checkpoint files: atomic writes, ``weights_only`` loads, model weights from several layouts.

A checkpoint written by :mod:`pfpld_train.train.loop` is a plain dict of tensors, numbers, strings, lists and
dicts (so ``torch.load(..., weights_only=True)`` reads it):

``{"format": "pfpld_train.checkpoint/1", "model": state_dict, "optimizer": ..., "scheduler": ...,
"scaler": ..., "epoch": int, "step": int, "best_nme": float, "rng": {...}, "config": {...},
"history": [...]}``

:func:`model_state_dict` also accepts a bare ``state_dict`` and the ``{"state_dict": ...}`` /
``{"plfd_backbone": ...}`` wrappers of published PFPLD checkpoints, with or without ``module.`` prefixes.
"""

from __future__ import annotations

import os
from pathlib import Path

from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.io import atomic_path

__all__ = ["CheckpointError", "checkpoint_pose_trained", "load_checkpoint", "load_pfpld", "model_state_dict",
           "pfpld_weights", "save_checkpoint"]

FORMAT = "pfpld_train.checkpoint/1"


class CheckpointError(LandmarkUnifyError):
    """A checkpoint cannot be read or does not hold PFPLD weights."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temporary file in the same folder, then rename)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


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
    check_format(obj.get("format"), path)
    return obj


def check_format(found, path) -> None:
    """A CheckpointError for a checkpoint of this trainer's format in a later version than :data:`FORMAT`
    (its entries may mean what this version does not know) or in no version at all; a checkpoint without
    our ``format`` (another trainer's) passes."""
    family, _, version = FORMAT.rpartition("/")
    if not isinstance(found, str) or not found.startswith(family + "/"):
        return
    got = found[len(family) + 1:]
    if not (got.isascii() and got.isdigit()):
        raise CheckpointError(f"{path}: checkpoint format {found!r} is not {family}/<version>")
    if int(got) > int(version):
        raise CheckpointError(f"{path}: checkpoint format {found} is newer than this pfpld_train reads (up to "
                              f"{FORMAT}); upgrade pfpld_train to read it")


_WRAPPERS = ("model", "state_dict", "plfd_backbone", "pfld_backbone")


def model_state_dict(obj: dict, where: str = "checkpoint", key: str | None = None) -> tuple[dict, str | None]:
    """The model ``state_dict`` inside a loaded checkpoint and the entry it came from (None: bare).

    ``key`` names the entry; otherwise a bare state_dict (every value a tensor) is taken as it is, else the
    first of ``model``, ``state_dict``, ``plfd_backbone``, ``pfld_backbone`` that holds a dict. ``module.``
    prefixes (DataParallel) are stripped. :class:`CheckpointError` naming the entries found otherwise.
    """
    import torch

    entries = sorted(map(str, obj))[:12]
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{where}: no entry {key!r}; entries: {entries}")
        entry, sd = key, obj[key]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        entry, sd = None, obj
    else:
        entry = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if entry is None:
            raise CheckpointError(f"{where}: no 'model' or 'state_dict' entry and not a bare state_dict; "
                                  f"entries: {entries}")
        sd = obj[entry]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{where}: entry {entry!r} is not a state_dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}, entry


def pfpld_weights(path: str | os.PathLike, key: str | None = None) -> tuple[dict, str | None]:
    """A checkpoint file's PFPLD weights, checked: ``(state_dict, entry)``.

    Missing and unexpected keys, shape mismatches and non-finite values are each listed in the
    :class:`CheckpointError`; a missing ``num_batches_tracked`` counter is filled in.
    """
    import torch

    from ..models.pfpld import PFPLD

    sd, entry = model_state_dict(load_checkpoint(path), where=str(path), key=key)
    expected = PFPLD().state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs network {tuple(v.shape)}"
                  for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:6]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:6]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es), e.g. {mismatched[:4]}")
    if problems:
        raise CheckpointError(f"{path}: not a PFPLD state_dict (entry {entry!r}): " + "; ".join(problems))
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: non-finite values in {bad[:6]}")
    for k, v in expected.items():
        sd.setdefault(k, v)
    return sd, entry


def checkpoint_pose_trained(path: str | os.PathLike) -> bool:
    """Whether the checkpoint's pose branch was trained: False where our trainer recorded that no training
    face had a pose (``pose_trained`` in the checkpoint); True for older and foreign checkpoints."""
    obj = load_checkpoint(path)
    return bool(obj.get("pose_trained", True)) if obj.get("format") == FORMAT else True


def load_pfpld(path: str | os.PathLike, device: str = "cpu", key: str | None = None):
    """A :class:`pfpld_train.models.pfpld.PFPLD` in eval mode with the checkpoint's weights (checked, strict).
    Its ``pose_trained`` attribute says whether the pose output means anything (:func:`checkpoint_pose_trained`)."""
    from ..models.pfpld import PFPLD

    model = PFPLD()
    model.load_state_dict(pfpld_weights(path, key)[0], strict=True)
    model.pose_trained = checkpoint_pose_trained(path)
    return model.to(device).eval()
