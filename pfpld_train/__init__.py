"""pfpld_train: the PFPLD landmark and head-pose network trained on landmark-unify manifests.

Public names are imported lazily from their modules, so ``import pfpld_train`` stays cheap (no torch,
OpenCV or onnx until a name that needs them is used).
"""
from __future__ import annotations

import importlib

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

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pfpld_train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
