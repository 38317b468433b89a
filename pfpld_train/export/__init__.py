"""Export of the PFPLD network: ONNX, Caffe (written by this project), an NNIE package, int8 checks.

Subpackages, one per target: :mod:`.onnx` (:mod:`.onnx.export`: checkpoint loading, ONNX export),
:mod:`.caffe` (:mod:`.caffe.proto` Caffe schema subset, :mod:`.caffe.convert` ONNX -> Caffe,
:mod:`.caffe.export` files and reference comparison), :mod:`.nnie` (:mod:`.nnie.check` NNIE constraints,
:mod:`.nnie.package` cfg, calibration, README, :mod:`.nnie.quant` int8 simulation). Shared:
:mod:`.faces` (real face crops), :mod:`.parity` (run and compare the forms), :mod:`.overlay`,
:mod:`.errors`, and :mod:`.pipeline` (one call per format).
"""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "ExportError": ".errors",
    "load_checkpoint": ".onnx.export",
    "export_onnx": ".onnx.export",
    "onnx_to_caffe": ".caffe.convert",
    "export_caffe": ".caffe.export",
    "compare_prototxt": ".caffe.export",
    "check_nnie": ".nnie.check",
    "NnieLimits": ".nnie.check",
    "quantize_check": ".nnie.quant",
    "read_faces": ".faces",
    "Preprocess": ".faces",
    "export_onnx_dir": ".pipeline",
    "export_caffe_dir": ".pipeline",
    "export_nnie_dir": ".pipeline",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
