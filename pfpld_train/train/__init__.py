"""Training: the loop (:mod:`.loop`: :class:`TrainConfig`, :func:`fit`) and the loss (:mod:`.loss`); checkpoint
files are :mod:`pfpld_train.models.checkpoint`. Names are exported lazily (no torch until used)."""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "METRIC_FIELDS": ".loop",
    "RESUME_OVERRIDES": ".loop",
    "TrainConfig": ".loop",
    "TrainError": ".loop",
    "WarmupCosine": ".loop",
    "fit": ".loop",
    "mean_face_nme": ".loop",
    "LossConfig": ".loss",
    "pfpld_loss": ".loss",
    "point_weights": ".loss",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
