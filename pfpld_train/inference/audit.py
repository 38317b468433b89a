"""Landmark models for ``landmark_unify audit --model``: what pfpld_train offers under landmark_unify's
``landmark_unify.landmark_models`` entry point (setup.cfg), so the audit runs our checkpoints, ONNX models
and FAN without landmark_unify importing the trainer.

A spec is ``PATH`` (our checkpoint, a fit folder, an ONNX model whose metadata states its input), ``PATH@PRESET``
(an ONNX model with one of :data:`pfpld_train.models.metadata.INPUT_PRESETS`, e.g.
``PFLD_GhostOne_112_1_opt_sim.onnx@pfld_ghostone``), or ``fan2d`` / ``fan3d``. Each face is run from its
box as ``predict`` runs it (box crop, one refine pass on the crop of its own landmarks).
"""
from __future__ import annotations

import numpy as np

from landmark_unify.images import read_image

from ..models.metadata import INPUT_PRESETS
from .label import FAN_KINDS, LabelError, load_labeller

__all__ = ["AuditLandmarkModel", "load_audit_model"]


class AuditLandmarkModel:
    """A labeller seen by the audit: ``name``, ``schema`` (its output layout) and :meth:`predict_file`."""

    def __init__(self, labeller, spec: str) -> None:
        self.labeller, self.spec = labeller, spec
        self.name, self.schema = labeller.name, labeller.schema

    def predict_file(self, path, boxes) -> np.ndarray:
        """``(M, K, 2)`` points for the faces in ``boxes`` (M, 4) of the image at ``path``; ImageError (a
        LandmarkUnifyError) when it is missing or cannot be decoded."""
        image = read_image(path)
        pts, _ = self.labeller.predict(image, np.asarray(boxes, np.float64))
        return np.asarray(pts)


def load_audit_model(spec: str, device: str = "cpu") -> AuditLandmarkModel:
    """The model of an audit ``--model`` spec (see the module docstring)."""
    path, _, preset = str(spec).partition("@")
    if path in FAN_KINDS:
        return AuditLandmarkModel(load_labeller(path, device=device), spec)
    opts = {}
    if preset:
        if preset not in INPUT_PRESETS:
            raise LabelError(f"--model {spec}: unknown preset {preset!r}; valid: {sorted(INPUT_PRESETS)}")
        opts = dict(zip(("channel_order", "mean", "scale"), INPUT_PRESETS[preset], strict=True))
    return AuditLandmarkModel(load_labeller(path, device=device, **opts), spec)
