"""Export of the PFPLD network: ONNX, Caffe (written by this project), an NNIE package, int8 checks.

Modules: :mod:`.onnx_export` (checkpoint loading, ONNX export, parity runners), :mod:`.caffe_proto`
(Caffe schema subset), :mod:`.caffe_convert` (ONNX -> Caffe), :mod:`.caffe_export` (files, reference
comparison), :mod:`.nnie_check` (NNIE constraints), :mod:`.nnie_package` (cfg, calibration, README),
:mod:`.quant` (int8 simulation), :mod:`.faces` (real face crops), :mod:`.pipeline` (one call per format).
"""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "ExportError": ".errors",
    "load_checkpoint": ".onnx_export",
    "export_onnx": ".onnx_export",
    "onnx_to_caffe": ".caffe_convert",
    "export_caffe": ".caffe_export",
    "compare_prototxt": ".caffe_export",
    "check_nnie": ".nnie_check",
    "NnieLimits": ".nnie_check",
    "quantize_check": ".quant",
    "read_faces": ".faces",
    "Preprocess": ".faces",
    "export_onnx_dir": ".pipeline",
    "export_caffe_dir": ".pipeline",
    "export_nnie_dir": ".pipeline",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)
