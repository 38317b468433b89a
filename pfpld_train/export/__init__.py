"""Export of the PFPLD network: ONNX, Caffe (written by this project), an NNIE package, int8 checks.

Modules: :mod:`.onnx_export` (checkpoint loading, ONNX export, parity runners), :mod:`.caffe_proto`
(Caffe schema subset), :mod:`.caffe_convert` (ONNX -> Caffe), :mod:`.caffe_export` (files, reference
comparison), :mod:`.nnie_check` (NNIE constraints), :mod:`.nnie_package` (cfg, calibration, README),
:mod:`.quant` (int8 simulation), :mod:`.faces` (real face crops), :mod:`.pipeline` (one call per format).
"""

from __future__ import annotations

import importlib

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

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
