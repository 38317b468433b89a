"""Int8 simulation: onnxruntime static quantization, and the accuracy drift it causes on real faces.

NNIE runs the network in 8-bit fixed point after its own calibration; the closest thing that runs here is
onnxruntime's static (QDQ) quantization calibrated on the same face crops. :func:`quantize_model` writes
the int8 model, :func:`drift` scores int8 against float32 and against the ground truth:

- NME: mean point error over valid points, normalised by the ground-truth outer eye-corner distance
  (points 60 and 72), in percent; failure rate: share of faces with NME > 10 %;
- landmark drift: the same normalised error between the int8 and the float32 predictions (mean, p95, max);
- pose drift: ``|int8 - fp32|`` per angle, in degrees when the pose output is in radians;
- cosine similarity of each int8 output vector with the fp32 one, per face (mean, min), the figure users
  of NNIE's mapper compare against Caffe.

:func:`quantize_check` runs the comparison for per-tensor and per-channel weight scales and several
calibration-set sizes. Arrays: crops ``(N, 112, 112, 3) uint8`` RGB, landmarks ``(N, 98, 2)`` crop units.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np

from ...evaluation.metrics import nme
from ..errors import ExportError
from ..faces import FaceSet, Preprocess
from ..parity import onnx_outputs

__all__ = ["quantize_model", "model_outputs", "drift", "quantize_check", "find_outputs"]

FAILURE_NME = 0.10


def find_outputs(model_path: str | Path, landmarks: str | int | None = None, pose: str | int | None = None) -> dict:
    """Names of the landmark and pose outputs of an ONNX model; each is given by name or index.

    Defaults: an output named ``landmarks`` (else the first with 196 values per face); ``pose`` (else the
    first with 3 values), or none. Also reports the batch size if the input's is fixed.
    """
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    outs = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    inits = {t.name for t in proto.graph.initializer}
    inp = [i for i in proto.graph.input if i.name not in inits][0]
    in_dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]

    def width(dims):
        return int(np.prod([d for d in dims[1:] if isinstance(d, int)])) if len(dims) > 1 else 0

    names = list(outs)

    def by_index(given, what):
        if isinstance(given, str) and given not in outs and given.strip().isdigit():
            given = int(given)
        if isinstance(given, int):
            if not 0 <= given < len(names):
                raise ExportError(f"{model_path}: output index {given} for {what} out of range; outputs: {names}")
            return names[given]
        return given

    landmarks, pose = by_index(landmarks, "landmarks"), by_index(pose, "pose")
    for given, what in ((landmarks, "landmarks"), (pose, "pose")):
        if given is not None and given not in outs:
            raise ExportError(f"{model_path}: no output {given!r} for {what}; outputs: {names}")
    lm = landmarks or ("landmarks" if "landmarks" in outs else next((n for n, d in outs.items() if width(d) == 196), None))
    if lm is None:
        raise ExportError(f"{model_path}: no landmark output (196 values); outputs: {outs}; name it with --landmarks-output")
    ps = pose or ("pose" if "pose" in outs else next((n for n, d in outs.items() if width(d) == 3 and n != lm), None))
    return {"input": inp.name, "input_shape": in_dims, "landmarks": lm, "pose": ps,
            "fixed_batch": in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None}


def model_outputs(model_path: str | Path, x: np.ndarray, names: list[str], batch: int | None = None) -> dict:
    """Run ``model_path`` on ``(N, 3, H, W) float32`` in chunks of ``batch``; outputs flattened per face."""
    out = onnx_outputs(model_path, x, batch, names=names)
    return {n: v.reshape(v.shape[0], -1).astype(np.float32) for n, v in out.items()}


def quantize_model(model_path: str | Path, calib_x: np.ndarray, out_path: str | Path, *,
                   per_channel: bool = False, method: str = "minmax", batch: int | None = None) -> Path:
    """Static int8 (QDQ, int8 weights, uint8 activations) quantization calibrated on ``calib_x``.

    ``calib_x``: ``(N, 3, H, W) float32`` network inputs. ``method``: ``minmax`` or ``percentile``
    (99.999th percentile of the activations). Returns ``out_path``.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    # (onnxruntime's Entropy method is left out: on the reference model it gave exactly the MinMax scales.)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ExportError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    if len(calib_x) == 0:
        raise ExportError("no calibration input")
    name = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    step = batch or 1

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(0, len(calib_x), step))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {name: np.ascontiguousarray(calib_x[i:i + step], dtype=np.float32)}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("root").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "int8.onnx"
        src = _opset_at_least(model_path, 13, Path(tmp) / "fp32_opset13.onnx")  # per-channel QDQ needs axis
        try:
            quantize_static(str(src), str(tmp_out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=methods[method])
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{model_path}: onnxruntime static quantization failed: {exc}") from exc
        tmp_out.replace(out_path)
    return out_path


def _opset_at_least(model_path: str | Path, opset: int, tmp_path: Path) -> Path:
    """``model_path`` itself, or a copy converted to ``opset`` when its default-domain opset is older."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(model_path))
    current = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if current >= opset:
        return Path(model_path)
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{model_path}: cannot upgrade opset {current} -> {opset} for quantization: {exc}") from exc
    onnx.save(converted, str(tmp_path))
    return tmp_path


def _stats(v: np.ndarray) -> dict:
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": None, "p95": None, "max": None}
    return {"mean": float(v.mean()), "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def _cosine(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-face cosine similarity of two ``(N, K)`` output arrays (the figure NNIE users compare): mean, min."""
    a64, b64 = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cos = np.where(den > 0, (a64 * b64).sum(1) / np.where(den > 0, den, 1), np.nan)
    ok = np.isfinite(cos)
    return {"mean": float(cos[ok].mean()) if ok.any() else None, "min": float(cos[ok].min()) if ok.any() else None}


def drift(fp32: dict, int8: dict, faces: FaceSet, landmarks: str, pose: str | None,
          pose_radians: bool = True) -> dict:
    """Accuracy of fp32 and int8 outputs on ``faces`` and the int8-vs-fp32 drift (module docstring)."""
    gt, valid = faces.landmarks, faces.valid
    p32 = fp32[landmarks].reshape(-1, 98, 2)
    p8 = int8[landmarks].reshape(-1, 98, 2)
    n32, n8 = nme(p32, gt, valid), nme(p8, gt, valid)
    d = nme(p8, p32, norm_points=gt)  # int8 against fp32 on every point, normalised by the ground truth
    ok = np.isfinite(n32)
    rep = {
        "faces": int(len(faces)),
        "faces_scored": int(ok.sum()),
        "nme_fp32_pct": float(100 * np.nanmean(n32)),
        "nme_int8_pct": float(100 * np.nanmean(n8)),
        "failure_rate_fp32_pct": float(100 * np.mean(n32[ok] > FAILURE_NME)),
        "failure_rate_int8_pct": float(100 * np.mean(n8[ok] > FAILURE_NME)),
        "landmark_drift_pct": {k: (None if v is None else 100 * v) for k, v in _stats(d).items()},
    }
    rep["cosine_int8_vs_fp32"] = {name: _cosine(fp32[name], int8[name]) for name in (landmarks, pose)
                                  if name is not None and name in fp32}
    if pose is not None and pose in fp32:
        k = 180.0 / math.pi if pose_radians else 1.0
        diff = np.abs(int8[pose] - fp32[pose]) * k
        rep["pose_drift_deg" if pose_radians else "pose_drift"] = {
            "mean_per_angle": [float(x) for x in diff.mean(0)],
            "mean": float(diff.mean()),
            "max": float(diff.max()),
        }
    return rep


def quantize_check(model_path: str | Path, eval_faces: FaceSet, calib_faces: FaceSet, preprocess: Preprocess, *,
                   calib_sizes=(None,), per_channel=(False, True), method: str = "minmax",
                   landmarks: str | None = None, pose: str | None = None, pose_radians: bool = True,
                   work_dir: str | Path | None = None, keep: bool = False) -> dict:
    """Quantize ``model_path`` for each calibration size and weight-scale mode; report drift on ``eval_faces``.

    ``calib_sizes``: numbers of calibration faces (first faces of ``calib_faces``; None = all).
    Returns ``{"model", "outputs", "preprocess", "fp32": {...}, "runs": [...]}``; each run has the mode,
    the calibration size and the :func:`drift` figures. The int8 models are kept in ``work_dir`` if ``keep``.
    """
    outs = find_outputs(model_path, landmarks, pose)
    names = [outs["landmarks"]] + ([outs["pose"]] if outs["pose"] else [])
    batch = outs["fixed_batch"]
    x_eval = preprocess(eval_faces.crops)
    x_calib_all = preprocess(calib_faces.crops)
    fp32 = model_outputs(model_path, x_eval, names, batch)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir) if work_dir is not None and keep else Path(tmp)
        for size in calib_sizes:
            n = len(calib_faces) if size is None else min(int(size), len(calib_faces))
            for pc in per_channel:
                q_path = wd / f"int8_{'per_channel' if pc else 'per_tensor'}_calib{n}.onnx"
                quantize_model(model_path, x_calib_all[:n], q_path, per_channel=pc, method=method, batch=batch)
                int8 = model_outputs(q_path, x_eval, names, batch)
                rep = drift(fp32, int8, eval_faces, outs["landmarks"], outs["pose"], pose_radians)
                runs.append({"weights": "per-channel" if pc else "per-tensor", "calibration_faces": n,
                             "method": method, **({"int8_model": str(q_path)} if keep else {}), **rep})
    return {"model": str(model_path), "outputs": outs, "preprocess": preprocess.as_dict(),
            "eval_faces": len(eval_faces), "calibration_pool": len(calib_faces), "runs": runs}
