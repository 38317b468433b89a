"""Score a landmark model on a manifest under the standard crop.

The model sees, for every face, the standard crop of :mod:`pfpld_train.data.crop` computed from the face's
ground-truth valid landmarks; its prediction is mapped back to image pixels and scored there with
:mod:`pfpld_train.evaluation.metrics` (NME normalised by the ground-truth outer-eye-corner distance, WFLW 60-72).

Models (:func:`load_model`):

- a checkpoint of ours (``.pt``, or any PFPLD ``state_dict``): RGB, ``x / 255``, pose in radians;
- any ONNX landmark model: input options (channel order, mean, scale), which output holds the 196
  landmark values (default: the first output with 196 values per face) and optionally which holds the
  pose (3 values, ``pose_units`` degrees or radians; default: an output named ``pose``). Options not given
  are read from the model's metadata properties (``channel_order``, ``mean``, ``scale``, ``pose_units``,
  or the ``pfpld_train.preprocess`` / ``pfpld_train.outputs`` entries our exporter writes) when it has
  them, else default to RGB, mean 0, scale 1/255, degrees.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmark_unify import manifest as mf
from landmark_unify.core.maps import finite_points
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.images import ImageError, read_image
from landmark_unify.manifest import image_paths, landmarks_array, valid_array
from landmark_unify.progress import Progress

from ..data.arrays import MAX_COORDINATE, pose_array
from ..data.crop import CROP_SIZE, crop_image, crop_to_image, face_crop_params
from ..models.checkpoint import load_pfpld
from ..models.metadata import INPUT_PRESETS, METADATA_OUTPUTS, METADATA_POSE_TRAINED, METADATA_PREPROCESS
from .metrics import POSE_MAX_ANGLE, nme, pose_error_summary, pose_errors, pose_in_range, summarize_nme

__all__ = [
    "EvaluationError",
    "EvaluationResult",
    "INPUT_PRESETS",
    "OnnxLandmarkModel",
    "TorchLandmarkModel",
    "evaluate_faces",
    "evaluate_manifest",
    "format_table",
    "load_model",
]

ATTRIBUTES = mf.ATTRIBUTES  # the WFLW attribute flags, declared once by the manifest



class EvaluationError(LandmarkUnifyError):
    """A model or the faces to score cannot be used."""


# --- models -------------------------------------------------------------------------------------------


class TorchLandmarkModel:
    """One of our checkpoints. ``__call__(crops (B,112,112,3) uint8 RGB) -> (landmarks (B,98,2) crop
    units, pose (B,3) degrees)``."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        import torch

        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise EvaluationError(f"device {device!r} requested but CUDA is not available to this torch build; "
                                  "use --device cpu")
        self.name = str(path)
        self.device = device
        self.model = load_pfpld(path, device)
        #: False when the checkpoint's pose branch was never trained: no pose is returned then.
        self.pose_trained = bool(getattr(self.model, "pose_trained", True))

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        from ..models.pfpld import pose_to_degrees

        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            pose, lm = self.model(x)
        if was_training:
            self.model.train()
        return _finite_outputs(
            self.name,
            lm.float().cpu().numpy().reshape(-1, 98, 2),
            pose_to_degrees(pose.float()).cpu().numpy() if self.pose_trained else None,
        )


class OnnxLandmarkModel:
    """An ONNX landmark model run with onnxruntime (CPU). See the module docstring for the options."""

    def __init__(
        self,
        path: str | os.PathLike,
        channel_order: str | None = None,
        mean: Sequence[float] | float | None = None,
        scale: Sequence[float] | float | None = None,
        landmarks_output: str | int | None = None,
        pose_output: str | int | None = None,
        pose_units: str | None = None,
        threads: int = 1,
        output: str | int | None = None,
    ) -> None:
        import onnxruntime as ort

        if landmarks_output is None:
            landmarks_output = output  # the older name of the option

        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if len(found) != 1:
                raise EvaluationError(f"{path}: expected exactly one .onnx file in the folder, found {len(found)} "
                                      f"{[f.name for f in found]}; pass the file itself")
            path = found[0]
        if not path.is_file():
            raise EvaluationError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EvaluationError(f"{path}: onnxruntime cannot load the model: {exc}") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        # Our exporter's metadata (pfpld_train.export): preprocessing and output units.
        try:
            pre = json.loads(meta.get(METADATA_PREPROCESS, "{}"))
            outs_doc = json.loads(meta.get(METADATA_OUTPUTS, "{}"))
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path}: the model's metadata {METADATA_PREPROCESS!r} or {METADATA_OUTPUTS!r} is "
                                  f"not valid JSON ({exc}); pass --preset or --channel-order, --mean, --scale") from None
        if not isinstance(pre, dict) or not isinstance(outs_doc, dict):
            raise EvaluationError(f"{path}: the model's metadata {METADATA_PREPROCESS!r} / {METADATA_OUTPUTS!r} must "
                                  "be JSON objects")
        if pre:
            meta.setdefault("channel_order", str(pre.get("color", "rgb")).lower())
            meta.setdefault("mean", pre.get("mean", 0.0))
            meta.setdefault("scale", pre.get("scale", 1.0 / 255.0))
        if "radians" in str(outs_doc.get("pose", "")):
            meta.setdefault("pose_units", "rad")
        self.name = str(path)
        # True when nothing says how the model wants its input: the caller should say so to the user.
        self.assumed_preprocessing = (channel_order is None and mean is None and scale is None
                                      and not {"channel_order", "mean", "scale"} & set(meta))
        self.channel_order = (channel_order or meta.get("channel_order", "rgb")).lower()
        if self.channel_order not in ("rgb", "bgr"):
            raise EvaluationError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        self.mean = _channel_values(mean if mean is not None else meta.get("mean", 0.0), "mean",
                                    "--mean" if mean is not None else f"{path}: metadata 'mean'")
        self.scale = _channel_values(scale if scale is not None else meta.get("scale", 1.0 / 255.0), "scale",
                                     "--scale" if scale is not None else f"{path}: metadata 'scale'")
        self.pose_units = (pose_units or meta.get("pose_units", "deg")).lower()
        if self.pose_units not in ("deg", "rad"):
            raise EvaluationError(f"pose_units must be 'deg' or 'rad', got {self.pose_units!r}")
        inp = self.session.get_inputs()
        if len(inp) != 1:
            raise EvaluationError(f"{path}: expected one input, found {[i.name for i in inp]}")
        self.input_name = inp[0].name
        self.fixed_batch = _check_input(path, inp[0])
        self.outputs = self.session.get_outputs()
        names = [o.name for o in self.outputs]
        if landmarks_output is None and "landmarks" in names:
            landmarks_output = "landmarks"
        #: False when our exporter recorded an untrained pose branch: the pose output is then not read.
        self.pose_trained = str(meta.get(METADATA_POSE_TRAINED, "true")).lower() != "false"
        if pose_output is None and "pose" in names and self.pose_trained:
            pose_output = "pose"
        self.output = _output_index(path, names, landmarks_output)
        self.pose_output = _output_index(path, names, pose_output)
        for idx, what, least in ((self.output, "landmarks", 196), (self.pose_output, "pose", 3)):
            if idx is not None:
                _check_output(path, self.outputs[idx], what, least)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(crops, dtype=np.float32)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        x = ((x - self.mean) * self.scale).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        if self.fixed_batch is not None and self.fixed_batch != n:  # batches of the model's size, the last padded
            b = self.fixed_batch
            parts = []
            for s in range(0, n, b):
                chunk = x[s : s + b]
                if chunk.shape[0] < b:
                    chunk = np.concatenate([chunk, np.zeros((b - chunk.shape[0],) + chunk.shape[1:], np.float32)])
                parts.append(self._run(chunk))
            outs = [np.concatenate([p[k] for p in parts])[:n] for k in range(len(parts[0]))]
        else:
            outs = self._run(x)
        flat = [np.asarray(o, np.float32).reshape(n, -1) for o in outs]
        idx = self.output
        if idx is None:
            idx = next((i for i, o in enumerate(flat) if o.shape[1] == 196), None)
            if idx is None:
                raise EvaluationError(f"{self.name}: no output with 196 values per face; pass "
                                      "landmarks_output=NAME (--landmarks-output)")
        if flat[idx].shape[1] != 196:
            raise EvaluationError(f"{self.name}: output {idx} has {flat[idx].shape[1]} values per face, not 196")
        pose = None
        if self.pose_output is not None:
            pose = flat[self.pose_output][:, :3]
            if self.pose_units == "rad":
                pose = pose * (180.0 / math.pi)
        return _finite_outputs(self.name, flat[idx].reshape(n, 98, 2), pose)


    def _run(self, x: np.ndarray) -> list:
        try:
            return self.session.run(None, {self.input_name: x})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EvaluationError(f"{self.name}: onnxruntime failed on a batch of shape {list(x.shape)}: {exc}") from None


#: ONNX element types of an output that is read as float32
_FLOAT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)")


def _check_input(path: Path, arg) -> int | None:
    """The model's input against what this code feeds: float32 crops ``(batch, 3, 112, 112)`` (NCHW). An
    EvaluationError saying what the model declares otherwise; returns the fixed batch size, or None."""
    shape = list(arg.shape)
    want = f"(batch, 3, {CROP_SIZE}, {CROP_SIZE}) float32 (NCHW)"
    if arg.type != "tensor(float)":
        raise EvaluationError(f"{path}: input {arg.name!r} is {arg.type}; this command feeds {want}")
    if len(shape) != 4:
        raise EvaluationError(f"{path}: input {arg.name!r} has {len(shape)} dimensions {shape}; this command feeds "
                              f"{want}")
    c = shape[1]
    if isinstance(c, int) and c != 3:
        if shape[3] == 3:
            why = "channels last (NHWC); export the model with channels first (NCHW)"
        else:
            why = f"{c} channel(s); the crops are colour images with 3"
        raise EvaluationError(f"{path}: input {arg.name!r} is {shape}: {why}. This command feeds {want}")
    for dim, size in (("height", shape[2]), ("width", shape[3])):
        if isinstance(size, int) and size != CROP_SIZE:
            raise EvaluationError(f"{path}: input {arg.name!r} is {shape}: {dim} {size}; the standard crop is "
                                  f"{CROP_SIZE}x{CROP_SIZE}")
    batch = shape[0]
    if isinstance(batch, int) and batch < 1:
        raise EvaluationError(f"{path}: input {arg.name!r} declares a batch of {batch}")
    return batch if isinstance(batch, int) else None


def _check_output(path: Path, arg, what: str, least: int) -> None:
    """The ``what`` output: a float tensor with ``least`` values per face (196 landmarks: exactly; pose: at
    least 3) where its shape is declared."""
    if arg.type not in _FLOAT_TYPES:
        raise EvaluationError(f"{path}: {what} output {arg.name!r} is {arg.type}; expected a float tensor")
    dims = list(arg.shape)[1:]
    if dims and all(isinstance(d, int) for d in dims):
        per_face = int(np.prod(dims))
        if (per_face != least) if what == "landmarks" else (per_face < least):
            raise EvaluationError(f"{path}: {what} output {arg.name!r} is {list(arg.shape)}: {per_face} values per "
                                  f"face; expected {least if what == 'landmarks' else f'at least {least}'}")


def _output_index(path: Path, names: list[str], ref: str | int | None) -> int | None:
    """Index of the output ``ref`` (a name, or an index as int or digit string), or None."""
    if ref is None:
        return None
    if isinstance(ref, str) and ref not in names and ref.strip().lstrip("-").isdigit():
        ref = int(ref)
    if isinstance(ref, str):
        if ref not in names:
            raise EvaluationError(f"{path}: no output named {ref!r}; outputs: {names}")
        return names.index(ref)
    if not 0 <= int(ref) < len(names):
        raise EvaluationError(f"{path}: output index {ref} out of range (model has {len(names)}: {names})")
    return int(ref)


def _finite_outputs(name: str, lm: np.ndarray, pose: np.ndarray | None):
    """``(lm, pose)`` unchanged when finite; an EvaluationError when the model gave NaN or infinite values
    (a broken or wrongly fed model must not score as 'no faces' with NaN metrics)."""
    for what, arr in (("landmark", lm), ("pose", pose)):
        if arr is not None and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr.reshape(arr.shape[0], -1))).any(1).sum())
            raise EvaluationError(f"{name}: the model's {what} output is not finite (NaN or inf) for {bad} of "
                                  f"{arr.shape[0]} faces; check the model and its input convention "
                                  "(--preset, --channel-order, --mean, --scale)")
    return lm, pose


def _channel_values(v, what: str, origin: str) -> np.ndarray:
    """Mean or scale of the input: one value or three (per channel), finite numbers (a scale not 0); an
    EvaluationError naming ``origin`` (the option or the model's metadata) otherwise."""
    try:
        vals = _floats(v)
    except (TypeError, ValueError, OverflowError):
        raise EvaluationError(f"{origin}: {what} must be one number or three (e.g. 127.5 or 123,117,104); "
                              f"got {v!r}") from None
    if len(vals) not in (1, 3):
        raise EvaluationError(f"{origin}: {what} must be one number or three (one per channel); got {len(vals)}: "
                              f"{v!r}")
    if not all(math.isfinite(x) for x in vals) or (what == "scale" and any(x == 0 for x in vals)):
        raise EvaluationError(f"{origin}: {what} must be finite{' and not 0' if what == 'scale' else ''}; got {v!r}")
    return np.asarray(vals, np.float32)


def _floats(v) -> list[float]:
    if isinstance(v, str):
        return [float(t) for t in v.replace(",", " ").split()]
    if np.ndim(v) == 0:
        return [float(v)]
    return [float(t) for t in v]


def load_model(spec: str | os.PathLike, device: str = "cpu", **onnx_options):
    """A callable model from a checkpoint (``.pt``/``.pth``) or an ONNX file / folder holding one."""
    p = Path(spec)
    if p.suffix == ".onnx" or (p.is_dir() and any(p.glob("*.onnx"))):
        return OnnxLandmarkModel(p, **{k: v for k, v in onnx_options.items() if v is not None})
    if p.is_dir():
        if not (p / "best.pt").is_file():
            hint = f"; {p / 'last.pt'} is there: pass it" if (p / "last.pt").is_file() else ""
            raise EvaluationError(f"{p}: a folder without best.pt or an .onnx file (fit writes best.pt after its "
                                  f"first full epoch){hint}")
        p = p / "best.pt"
    return TorchLandmarkModel(p, device=device)


# --- evaluation ---------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Per-face arrays and the summary dict (see :func:`evaluate_faces`)."""

    summary: dict
    nme: np.ndarray  # (N,) fraction, NaN where unscored
    pred: np.ndarray  # (N, 98, 2) image pixels, NaN where the face was not run
    pose_deg: np.ndarray | None = None  # (N, 3) degrees
    scored: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _iter_batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def evaluate_faces(
    model,
    paths: Sequence[str | os.PathLike | None],
    landmarks: np.ndarray,
    valid: np.ndarray,
    *,
    attributes: dict[str, np.ndarray] | None = None,
    groups: dict[str, np.ndarray] | None = None,
    pose_deg: np.ndarray | None = None,
    batch_size: int = 64,
    threshold: float = 0.1,
    pose_max_angle: float | None = POSE_MAX_ANGLE,
    progress: bool = True,
    where: str | os.PathLike | None = None,
) -> EvaluationResult:
    """Run ``model`` on the standard crop of every face and score it.

    Args:
        model: callable ``crops (B,112,112,3) uint8 RGB -> (landmarks (B,98,2) crop units, pose (B,3)
            degrees or None)`` (see :func:`load_model`).
        paths: image per face (None: not scored, counted as ``missing_image``).
        landmarks: ``(N, 98, 2)`` float32 ground truth, pixels, NaN where invalid.
        valid: ``(N, 98)`` bool; only valid points are scored.
        attributes: name -> ``(N,)`` bool mask (True: face is in that subset), e.g. WFLW attributes.
        groups: name -> ``(N,)`` bool mask, another breakdown (e.g. per source).
        pose_deg: ``(N, 3)`` ground-truth pitch, yaw, roll in degrees, NaN where unknown.
        pose_max_angle: faces whose ground truth has any |angle| above this (degrees) are counted and left
            out of the pose MAE: the AFLW2000-3D convention (default 99); None keeps every face. Angle
            errors wrap (179 vs -179 is 2 degrees).

    Returns:
        :class:`EvaluationResult`; ``summary`` holds ``overall``, ``by_attribute``, ``by_group``,
        ``pose_mae`` (degrees, or None), counts of skipped faces, all NME figures as fractions.
    """
    gt = np.asarray(landmarks, np.float32)
    valid = np.asarray(valid, bool)
    n = gt.shape[0]
    _check_inputs(gt, valid, paths, batch_size, threshold, pose_max_angle, where)
    usable = valid & finite_points(gt)
    has_points = usable.any(1)
    has_path = np.array([p is not None for p in paths], bool)
    pred, pred_pose, unreadable = _predict(model, paths, gt, usable, np.flatnonzero(has_points & has_path),
                                           batch_size, progress)
    scored = np.isfinite(pred).all((1, 2))
    face_nme = np.full(n, np.nan)
    if scored.any():
        face_nme[scored] = nme(pred[scored], gt[scored], usable[scored])

    summary: dict = {
        "faces_total": int(n),
        "faces_scored": int(np.isfinite(face_nme).sum()),
        "skipped": {
            "missing_image": int((~has_path).sum()),
            "image_not_found": sum(not Path(p).exists() for p in unreadable),
            "unreadable_image": sum(Path(p).exists() for p in unreadable),
            "no_valid_point": int((~has_points).sum()),
            "no_normalisation_pair": int((scored & ~np.isfinite(face_nme)).sum()),
        },
        "threshold": threshold,
        "normalisation": "ground-truth distance between points 60 and 72 (outer eye corners)",
        "crop": "standard crop from ground-truth landmarks (1.2x extent, 112 px)",
        "overall": summarize_nme(face_nme, threshold),
        "by_attribute": _breakdown(face_nme, attributes, threshold),
        "by_group": _breakdown(face_nme, groups, threshold),
        "pose_mae": _pose_summary(pred_pose, pose_deg, pose_max_angle),
    }
    if unreadable:
        summary["image_problem_examples"] = sorted(set(unreadable))[:5]
    return EvaluationResult(summary=summary, nme=face_nme, pred=pred,
                            pose_deg=pred_pose if np.isfinite(pred_pose).any() else None, scored=scored)


def _check_inputs(gt, valid, paths, batch_size, threshold, pose_max_angle, where) -> None:
    """Refuse inputs :func:`evaluate_faces` cannot score honestly, naming the first bad point."""
    n = gt.shape[0]
    if gt.shape != (n, 98, 2) or valid.shape != (n, 98) or len(paths) != n:
        raise EvaluationError(
            f"expected landmarks (N,98,2), valid (N,98) and N paths; got {gt.shape}, {valid.shape}, {len(paths)}"
        )
    if pose_max_angle is not None and not 0 < float(pose_max_angle) < math.inf:
        raise EvaluationError(f"pose_max_angle must be a number > 0 (or None: no limit); got {pose_max_angle}")
    if batch_size < 1 or not 0 < threshold < math.inf:
        raise EvaluationError(f"batch_size must be >= 1 and threshold a number > 0; got {batch_size}, {threshold}")
    with np.errstate(invalid="ignore"):
        bad = valid & (~np.isfinite(gt).all(-1) | (np.abs(np.nan_to_num(gt)) > MAX_COORDINATE).any(-1))
    if bad.any():  # a point marked valid must be a real point: never dropped silently from the score
        r, k = (int(i) for i in np.argwhere(bad)[0])
        raise EvaluationError(f"{where or 'ground truth'}: row {r}, point {k} is marked valid but is {gt[r, k].tolist()} (not "
                              f"finite, or beyond {MAX_COORDINATE:g} pixels); {int(bad.any(1).sum())} faces like it. "
                              "Check the manifest with `landmark_unify validate`")


def _load_or_none(path: str) -> np.ndarray | None:
    try:
        return read_image(path)
    except ImageError:
        return None


def _predict(model, paths, gt, usable, todo, batch_size: int, progress: bool):
    """Run ``model`` on the standard crop of the faces ``todo``: ``(pred (N, 98, 2) image pixels, pred_pose
    (N, 3) degrees, unreadable image paths)``, NaN for faces not predicted. Each image is decoded once,
    the faces of one image together; threads overlap JPEG decoding (GIL released)."""
    n = gt.shape[0]
    params = np.zeros((n, 3), np.int64)
    if todo.size:
        params[todo] = face_crop_params(gt[todo], usable[todo])
    pred = np.full((n, 98, 2), np.nan, np.float32)
    pred_pose = np.full((n, 3), np.nan, np.float32)
    unreadable: list[str] = []
    order = sorted(todo.tolist(), key=lambda i: str(paths[i]))
    cache: dict[str, np.ndarray | None] = {}
    with ThreadPoolExecutor(max_workers=2) as pool, Progress(total=len(order), desc="evaluate", unit="faces", enabled=progress) as bar:
        for sl in _iter_batches(len(order), batch_size):
            idx = order[sl]
            need = sorted({str(paths[i]) for i in idx} - set(cache))
            for p, img in zip(need, pool.map(_load_or_none, need)):
                cache[p] = img
            keep = [i for i in idx if cache[str(paths[i])] is not None]
            unreadable.extend(str(paths[i]) for i in idx if cache[str(paths[i])] is None)
            if keep:
                crops = np.stack([crop_image(cache[str(paths[i])], params[i]) for i in keep])
                lm, pose = model(crops)
                pred[keep] = crop_to_image(lm, params[keep])
                if pose is not None:
                    pred_pose[keep] = pose
            # Drop images no later face needs (faces are sorted by path).
            nxt = str(paths[order[sl.stop]]) if sl.stop < len(order) else None
            for p in list(cache):
                if p != nxt:
                    del cache[p]
            bar.update(len(idx))
    return pred, pred_pose, unreadable


def _breakdown(face_nme: np.ndarray, masks: dict[str, np.ndarray] | None, threshold: float) -> dict:
    """NME figures per named subset of faces (empty subsets left out)."""
    out = {}
    for name, mask in (masks or {}).items():
        m = np.asarray(mask, bool)
        if m.any():
            out[name] = summarize_nme(face_nme[m], threshold)
    return out


def _pose_summary(pred_pose: np.ndarray, pose_deg, max_angle: float | None) -> dict | None:
    """The pose MAE of the summary (:func:`~pfpld_train.evaluation.metrics.pose_errors`, the same count as
    training's ``val_pose_mae``), with the faces left out beyond ``max_angle``; None without a pose."""
    if pose_deg is None or not np.isfinite(pred_pose).any():
        return None
    g = np.asarray(pose_deg, np.float64)
    summary = pose_error_summary(pose_errors(pred_pose, g, max_angle))
    if summary is None:
        return None
    known = np.isfinite(g).all(1) & np.isfinite(pred_pose).all(1)
    return {**summary, "max_angle": max_angle, "left_out_beyond_max_angle": int((known & ~pose_in_range(g, max_angle)).sum())}


def evaluate_manifest(model, df, **kwargs) -> EvaluationResult:
    """:func:`evaluate_faces` over a manifest: a DataFrame (``landmark_unify.manifest.read``) or the path of
    a manifest file or partitioned dataset directory.

    Attribute subsets come from the ``attr_*`` columns (True rows), groups from ``source``, pose from
    ``pitch, yaw, roll`` (degrees, null where unknown).
    """
    if isinstance(df, (str, os.PathLike)):
        df = mf.read(df)
    attributes = {}
    for a in ATTRIBUTES:
        col = f"attr_{a}"
        if col in df.columns:
            attributes[a] = df[col].fillna(False).to_numpy(dtype=bool)
    groups = {}
    if "source" in df.columns and df["source"].nunique() > 1:
        for s in sorted(df["source"].unique()):
            groups[f"source={s}"] = (df["source"] == s).to_numpy()
    return evaluate_faces(
        model, image_paths(df), landmarks_array(df), valid_array(df),
        attributes=attributes, groups=groups, pose_deg=pose_array(df), **{"where": df.attrs.get("path"), **kwargs},
    )


def format_table(summary: dict) -> str:
    """A plain-text table of a summary from :func:`evaluate_faces` (NME, FR, AUC in percent)."""
    thr = summary.get("threshold", 0.1)
    head = f"{'subset':<24}{'faces':>7}{'NME %':>9}{f'FR@{thr:g} %':>11}{f'AUC@{thr:g}':>10}"
    lines = [head, "-" * len(head)]

    def row(name: str, s: dict) -> str:
        return f"{name:<24}{s['faces']:>7}{100 * s['nme']:>9.2f}{100 * s['failure_rate']:>11.2f}{s['auc']:>10.4f}"

    lines.append(row("all", summary["overall"]))
    for name, s in summary.get("by_attribute", {}).items():
        lines.append(row(name, s))
    for name, s in summary.get("by_group", {}).items():
        lines.append(row(name, s))
    pm = summary.get("pose_mae")
    if pm:
        lines.append("")
        lines.append(f"pose MAE (deg, {pm['faces']} faces): pitch {pm['pitch']:.2f}  yaw {pm['yaw']:.2f}  "
                     f"roll {pm['roll']:.2f}  mean {pm['mean']:.2f}")
        if pm.get("max_angle") is not None:
            lines.append(f"  ({pm.get('left_out_beyond_max_angle', 0)} faces with an angle beyond "
                         f"{pm['max_angle']:g} degrees left out, the AFLW2000-3D convention)")
    skipped = {k: v for k, v in summary.get("skipped", {}).items() if v}
    if skipped:
        lines.append("")
        lines.append("not scored: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    return "\n".join(lines)
