"""Prediction on photos: the bundled RetinaFace detector, landmarks and pose per face, overlays
(:mod:`.predict`). Names are exported lazily."""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "DETECTOR_DIR": ".predict",
    "Face": ".predict",
    "PredictError": ".predict",
    "RetinaFaceDetector": ".predict",
    "draw_overlay": ".predict",
    "pose_axes": ".predict",
    "predict_image": ".predict",
    "write_predictions": ".predict",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
