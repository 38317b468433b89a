"""Scoring landmark models: metrics (:mod:`.metrics`: NME, failure rate, AUC, pose MAE) and evaluation of a
checkpoint or an ONNX model on a manifest under the standard crop (:mod:`.evaluate`). Names are exported lazily."""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "ANGLE_NAMES": ".metrics",
    "MetricsError": ".metrics",
    "auc": ".metrics",
    "failure_rate": ".metrics",
    "nme": ".metrics",
    "point_errors": ".metrics",
    "pose_mae": ".metrics",
    "summarize_nme": ".metrics",
    "EvaluationError": ".evaluate",
    "EvaluationResult": ".evaluate",
    "INPUT_PRESETS": ".evaluate",
    "OnnxLandmarkModel": ".evaluate",
    "TorchLandmarkModel": ".evaluate",
    "evaluate_faces": ".evaluate",
    "evaluate_manifest": ".evaluate",
    "format_table": ".evaluate",
    "load_model": ".evaluate",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
