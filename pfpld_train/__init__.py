"""pfpld_train: the PFPLD landmark and head-pose network trained on landmark-unify manifests.

Public names are imported lazily from their modules, so ``import pfpld_train`` stays cheap (no torch,
OpenCV or onnx until a name that needs them is used).
"""
from __future__ import annotations

from landmark_unify.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # network and crop
    "PFPLD": "model",
    "standard_crop_params": "crop",
    "crop_image": "crop",
    "crop_to_image": "crop",
    # data and training
    "FaceDataset": "data",
    "build_cache": "data",
    "TrainConfig": "train",
    "fit": "train",
    # evaluation and prediction
    "load_model": "evaluate",
    "evaluate_manifest": "evaluate",
    "RetinaFaceDetector": "predict",
    "predict_image": "predict",
    # export
    "export_onnx": "export.onnx_export",
    "export_caffe": "export.caffe_export",
    "quantize_check": "export.quant",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
