"""Run the three forms of the network on the same ``(N, 3, 112, 112) float32`` batch and compare them.

:func:`torch_outputs` (PyTorch), :func:`onnx_outputs` (onnxruntime, CPU), :func:`caffe_outputs` (OpenCV
dnn on the Caffe files); :func:`max_abs_diff` compares two results output by output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models.metadata import OUTPUT_NAMES
from .errors import ExportError

__all__ = ["caffe_outputs", "max_abs_diff", "onnx_outputs", "torch_outputs"]


def torch_outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch forward on ``(N, 3, 112, 112) float32`` -> ``{"pose": (N, 3), "landmarks": (N, 196)}``."""
    import torch

    with torch.no_grad():
        pose, lms = model.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return {"pose": pose.numpy(), "landmarks": lms.numpy()}


def onnx_outputs(path: str | Path, x: np.ndarray, batch: int | None = None,
                 names: list[str] | None = None) -> dict[str, np.ndarray]:
    """onnxruntime (CPU) on ``x``; run in chunks of ``batch`` (all at once by default). ``names``: the
    outputs to return (default: all)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    names = list(names) if names is not None else [o.name for o in sess.get_outputs()]
    step = batch or len(x) or 1
    chunks = [sess.run(names, {name: np.ascontiguousarray(x[i:i + step], dtype=np.float32)})
              for i in range(0, len(x), step)]
    return {n: np.concatenate([c[j] for c in chunks]) for j, n in enumerate(names)}


def caffe_outputs(prototxt: str | Path, caffemodel: str | Path, x: np.ndarray,
                  outputs=OUTPUT_NAMES) -> dict[str, np.ndarray]:
    """OpenCV dnn (``readNetFromCaffe``) on ``x``, one face at a time (the prototxt has batch 1)."""
    import cv2

    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as exc:
        raise ExportError(f"{prototxt}: OpenCV dnn cannot load the Caffe model: {exc}") from exc
    res: dict[str, list] = {o: [] for o in outputs}
    for i in range(len(x)):
        net.setInput(np.ascontiguousarray(x[i:i + 1], dtype=np.float32))
        for o, v in zip(outputs, net.forward(list(outputs))):
            res[o].append(v.reshape(1, -1))
    return {o: np.concatenate(v) for o, v in res.items()}


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Per output: ``max |a - b|`` over the batch (shapes must agree)."""
    out = {}
    for k in a:
        if k not in b or a[k].shape != b[k].shape:
            raise ExportError(f"output {k!r}: shapes differ ({a[k].shape} vs {b.get(k, np.empty(0)).shape})")
        out[k] = float(np.abs(a[k].astype(np.float64) - b[k]).max())
    return out
