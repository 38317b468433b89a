"""pfpld_train: the PFPLD landmark and head-pose network trained on landmark-unify manifests.

Layout (imports run one way: ``commands`` -> ``export`` / ``evaluation`` / ``inference`` / ``train`` ->
``models`` / ``data`` -> the public ``landmark_unify`` API): :mod:`.data` (crops, manifest arrays,
augmentation, crop cache, dataset, sampler), :mod:`.models` (the network), :mod:`.train` (loop, loss,
checkpoints), :mod:`.evaluation` (metrics, evaluation), :mod:`.inference` (prediction on photos),
:mod:`.export` (``onnx``, ``caffe``, ``nnie``), :mod:`.commands` (the ``pfpld_train`` CLI).

Public names are imported lazily from their modules, so ``import pfpld_train`` stays cheap (no torch,
OpenCV or onnx until a name that needs them is used).
"""
from __future__ import annotations

from landmark_unify.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # network and crop
    "PFPLD": "models.pfpld",
    "standard_crop_params": "data.crop",
    "crop_image": "data.crop",
    "crop_to_image": "data.crop",
    # data and training
    "FaceDataset": "data.dataset",
    "build_cache": "data.cache",
    "TrainConfig": "train.loop",
    "fit": "train.loop",
    # evaluation and prediction
    "load_model": "evaluation.evaluate",
    "evaluate_manifest": "evaluation.evaluate",
    "RetinaFaceDetector": "inference.predict",
    "predict_image": "inference.predict",
    # export
    "export_onnx": "export.onnx.export",
    "export_caffe": "export.caffe.export",
    "quantize_check": "export.nnie.quant",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
