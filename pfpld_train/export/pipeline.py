"""One call per export format, each writing its files and a ``report.json`` of everything it checked.

- :func:`export_onnx_dir`: ``pfpld.onnx`` + parity with PyTorch (onnxruntime, batch 1 and batched).
- :func:`export_caffe_dir`: the ONNX model, then ``pfpld.prototxt`` + ``pfpld.caffemodel`` + parity with
  PyTorch through OpenCV's dnn module + structural comparison with a reference prototxt.
- :func:`export_nnie_dir`: the Caffe export, the NNIE compatibility check, the mapper ``.cfg``, the
  calibration crops, the int8 simulation and the board README.

A parity failure (max abs difference above ``tol``) raises :class:`ExportError` after the report is
written, so the files can be inspected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landmark_unify.io import write_bytes_atomic

from .caffe.convert import onnx_to_caffe
from .caffe.export import compare_prototxt, export_caffe
from .errors import ExportError
from .faces import PFPLD_PREPROCESS, FaceSet, photo_crops, read_faces
from .nnie.check import NnieLimits, check_nnie, format_issues
from .nnie.package import read_calibration_images, write_board_readme, write_calibration_images, write_cfg
from .nnie.quant import drift, model_outputs, quantize_model
from .onnx.export import export_onnx
from .overlay import draw_crops
from .parity import caffe_outputs, max_abs_diff, onnx_outputs, torch_outputs

__all__ = ["parity_batch", "export_onnx_dir", "export_caffe_dir", "export_nnie_dir", "write_report"]

DEFAULT_TOL = 1e-4


def write_report(path: Path, report: dict) -> None:
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    write_bytes_atomic((json.dumps(clean, indent=2, default=str) + "\n").encode(), path)


def parity_batch(faces: list[str | Path] = (), photos: list[str | Path] = (), n: int = 16,
                 seed: int = 0) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Network inputs ``(N, 3, 112, 112) float32`` (RGB / 255) for parity checks, and where they came from.

    Up to ``n`` standard crops from each manifest / WFLW list in ``faces``, plus the centre crops of
    ``photos``. With neither, a seeded random batch (stated as such in the description). The third value
    is the ``(N, 112, 112, 3) uint8`` RGB crops (None for the random batch).
    """
    crops, what = [], []
    for f in faces:
        fs = read_faces(f, limit=n)
        crops.append(fs.crops)
        what.append(f"{len(fs)} face crops from {f}")
    if photos:
        crops.append(photo_crops(photos))
        what.append(f"{len(photos)} photo crops")
    if not crops:
        rng = np.random.default_rng(seed)
        return rng.random((4, 3, 112, 112), dtype=np.float32), "4 random inputs (no real faces given)", None
    crops = np.concatenate(crops)
    return PFPLD_PREPROCESS(crops), "; ".join(what), crops


def _check_tol(report: dict, key: str, diffs: dict, tol: float) -> None:
    report.setdefault("parity", {})[key] = {k: float(f"{v:.3g}") for k, v in diffs.items()}
    if max(diffs.values()) > tol:
        report.setdefault("failures", []).append(f"{key}: max abs difference {max(diffs.values()):.3g} > {tol}")


def export_onnx_dir(model, out_dir: str | Path, x: np.ndarray, source: str, *, stem: str = "pfpld",
                    tol: float = DEFAULT_TOL, report: dict | None = None) -> dict:
    """Write ``out_dir/stem.onnx`` and check it against PyTorch on ``x`` (see module docstring).

    ``model`` may also be the path of an ONNX file: it is checked and copied, and becomes the reference
    the Caffe model is compared with.
    """
    out_dir = Path(out_dir)
    report = {} if report is None else report
    onnx_path = out_dir / f"{stem}.onnx"
    report["parity_inputs"] = f"{len(x)} inputs: {source}"
    if isinstance(model, (str, Path)):  # an ONNX model given instead of a checkpoint: the reference is itself
        import onnx

        proto = onnx.load(str(model))
        try:
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{model}: onnx.checker rejected the model: {exc}") from exc
        write_bytes_atomic(proto.SerializeToString(), onnx_path)
        report["onnx"] = {"path": str(onnx_path), "source": str(model), "checker": "passed"}
        report["_ref"] = onnx_outputs(onnx_path, x, batch=1)
        return report
    report["onnx"] = export_onnx(model, onnx_path)
    ref = torch_outputs(model, x)
    _check_tol(report, "onnx_vs_torch", max_abs_diff(ref, onnx_outputs(onnx_path, x)), tol)
    _check_tol(report, "onnx_batch1_vs_torch", max_abs_diff(ref, onnx_outputs(onnx_path, x, batch=1)), tol)
    report["_ref"] = ref
    return report


def export_caffe_dir(model, out_dir: str | Path, x: np.ndarray, source: str, *, stem: str = "pfpld",
                     tol: float = DEFAULT_TOL, reference_prototxt: str | Path | None = None,
                     report: dict | None = None, overlay_crops: np.ndarray | None = None) -> dict:
    """ONNX export, then the Caffe files from it, OpenCV parity and the reference comparison.

    With ``overlay_crops`` (the RGB crops behind ``x``), the Caffe model's landmarks are drawn on them
    (``overlay_caffe.png``).
    """
    out_dir = Path(out_dir)
    if report is None or "onnx" not in report:
        report = export_onnx_dir(model, out_dir, x, source, stem=stem, tol=tol, report=report)
    caffe = export_caffe(out_dir / f"{stem}.onnx", out_dir, stem)
    report["_conversion"] = caffe.pop("_conversion")
    report["caffe"] = caffe
    conv = report["_conversion"]
    names = list(report["_ref"])
    blobs = [conv.blob_of[n] for n in names]
    got = caffe_outputs(caffe["prototxt"], caffe["caffemodel"], x, outputs=blobs)
    got = {n: got[b].reshape(report["_ref"][n].shape) for n, b in zip(names, blobs)}
    key = "caffe_vs_onnx_source" if isinstance(model, (str, Path)) else "caffe_vs_torch"
    _check_tol(report, key, max_abs_diff(report["_ref"], got), tol)
    if overlay_crops is not None and "landmarks" in got:
        report["caffe"]["overlay"] = str(draw_crops(overlay_crops, got["landmarks"], out_dir / "overlay_caffe.png"))
    report["caffe"]["loaded_by"] = "cv2.dnn.readNetFromCaffe (OpenCV " + __import__("cv2").__version__ + ")"
    if reference_prototxt is not None and Path(reference_prototxt).is_file():
        report["caffe"]["reference_comparison"] = {"reference": str(reference_prototxt),
                                                   **compare_prototxt(caffe["prototxt"], reference_prototxt)}
    return report


def export_nnie_dir(model, out_dir: str | Path, x: np.ndarray, source: str, *, calib_faces: FaceSet,
                    holdout_faces: FaceSet | None = None, stem: str = "pfpld", tol: float = DEFAULT_TOL,
                    calib_format: str = "jpg", compile_mode: int = 0, reference_prototxt=None,
                    limits=None, report: dict | None = None, overlay_crops: np.ndarray | None = None) -> dict:
    """The NNIE package (module docstring of :mod:`pfpld_train.export.nnie.package`).

    Raises :class:`ExportError` when the NNIE check finds errors (after writing ``compatibility.*``).
    """
    import onnx

    out_dir = Path(out_dir)
    report = {} if report is None else report
    limits = limits or NnieLimits()
    # The compatibility check comes first: a model NNIE cannot take is reported, never exported.
    report = export_onnx_dir(model, out_dir, x, source, stem=stem, tol=tol, report=report)
    conv = onnx_to_caffe(onnx.load(str(out_dir / f"{stem}.onnx")), net_name=stem)
    issues = check_nnie(conv, limits)
    text = format_issues(issues)
    write_bytes_atomic((text + "\n").encode(), out_dir / "compatibility.txt")
    write_bytes_atomic((json.dumps(
        {"limits": limits.as_dict(), "issues": [i.as_dict() for i in issues]}, indent=2) + "\n").encode(), out_dir / "compatibility.json")
    report["nnie_check"] = {"errors": sum(i.severity == "error" for i in issues),
                            "warnings": sum(i.severity != "error" for i in issues),
                            "limits": limits.as_dict(), "file": str(out_dir / "compatibility.txt")}
    if report["nnie_check"]["errors"]:
        write_report(out_dir / "report.json", report)
        # the command fails and writes nothing (landmark_unify.outputs): every finding goes into the message
        raise ExportError("model violates NNIE constraints:\n" + text)
    report = export_caffe_dir(model, out_dir, x, source, stem=stem, tol=tol,
                              reference_prototxt=reference_prototxt, report=report, overlay_crops=overlay_crops)

    listing = write_calibration_images(calib_faces, out_dir / "calib", calib_format)
    report["calibration"] = {"images": len(calib_faces), "format": f"{calib_format}, 112 x 112, 8-bit RGB "
                             "content (stored as the image file's usual BGR)", "list": str(listing)}
    report["cfg"] = write_cfg(out_dir / f"{stem}.cfg", stem=stem, image_list=f"./calib/{listing.name}",
                              n_images=len(calib_faces), compile_mode=compile_mode)

    if holdout_faces is not None and len(holdout_faces) and {"landmarks", "pose"} <= set(report["_ref"]):
        calib_x = PFPLD_PREPROCESS(read_calibration_images(listing))  # exactly what the mapper will read
        q_path = out_dir / f"{stem}_int8_sim.onnx"
        quantize_model(out_dir / f"{stem}.onnx", calib_x, q_path, per_channel=False)
        hx = PFPLD_PREPROCESS(holdout_faces.crops)
        pose = "pose" if report["caffe"]["pose_trained"] else None  # an untrained pose has no drift to report
        names = ["landmarks", "pose"] if pose else ["landmarks"]
        rep = drift(model_outputs(out_dir / f"{stem}.onnx", hx, names), model_outputs(q_path, hx, names),
                    holdout_faces, "landmarks", pose, pose_radians=True)
        rep = {"simulation": "onnxruntime static QDQ, int8 per-tensor weights, uint8 activations, MinMax "
               f"calibration on the {len(calib_faces)} calib/ images", "int8_model": str(q_path), **rep}
        write_bytes_atomic((json.dumps(rep, indent=2) + "\n").encode(), out_dir / "int8_report.json")
        pose_drift = rep.get("pose_drift_deg")
        rep["summary"] = (f"on {rep['faces']} held-out faces: NME fp32 {rep['nme_fp32_pct']:.2f} % -> int8 "
                          f"{rep['nme_int8_pct']:.2f} %, landmark drift {rep['landmark_drift_pct']['mean']:.2f} % "
                          "of the eye distance, " + (f"pose drift {pose_drift['mean']:.2f} deg (mean)" if pose_drift
                                                      else "pose not compared (untrained pose branch)"))
        report["int8"] = rep
    write_board_readme(out_dir / "README.md", stem=stem, outputs_in_order=_prototxt_output_order(report),
                       report=report)
    return report


def _prototxt_output_order(report: dict) -> list[str]:
    conv = report.get("_conversion")
    if conv is None:
        return ["landmarks", "pose"]
    names = [layer.name for layer in conv.net.layer]
    return sorted(conv.outputs, key=names.index)
