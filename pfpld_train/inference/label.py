"""Machine labels for photos: find the faces, run a landmark model, write a manifest marked as such.

The models (:func:`load_labeller`):

- one of our checkpoints (``.pt`` or a ``fit`` output folder) or any 98-point ONNX model (with its input
  convention: ``--preset``, or ``--channel-order/--mean/--scale``), run by :func:`predict_image` exactly as
  ``pfpld_train predict`` runs it (box crop, then ``refine`` passes on the standard crop of its own
  landmarks); a model with a pose output gives the pose (``pose_source = "model"``);
- ``fan2d`` / ``fan3d``: the 2D / 3D FAN of the optional ``face-alignment`` package
  (``pip install -e ".[face-alignment]"``), 68 points (``ibug68``: the visible 2D outline; ``ibug68_3d``:
  the x, y of the 3D points, a projected jaw). face-alignment downloads its weights at run time; here they
  are read from a local folder (``weights_dir``) or the torch hub cache (``torch.hub.get_dir()/checkpoints``),
  never downloaded: a missing file is a :class:`LabelError` naming it (:data:`FAN_FILES`). With ``fan3d`` the
  pose is the rotation of the shipped 3D face fitted to the 3D points (Kabsch with scale,
  :func:`pose_from_points3d`).

Faces come from the bundled RetinaFace detector (:class:`RetinaFaceDetector`), best score first. The
manifest is written by :func:`landmark_unify.ops.label.write_machine_labels` (``label_source = "machine"``,
``label_model`` = the model's name).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.core.maps import to_canonical
from landmark_unify.core.pose import euler_from_matrix
from landmark_unify.errors import ErrorPolicy, LandmarkUnifyError
from landmark_unify.face_models import load_face_model
from landmark_unify.images import read_image
from landmark_unify.ops.label import LabelledFace
from landmark_unify.progress import Progress
from landmark_unify.readers import shown_path, sorted_files

from ..evaluation.evaluate import load_model
from .predict import RetinaFaceDetector, predict_image

__all__ = ["FAN_FILES", "FAN_KINDS", "IMAGE_SUFFIXES", "FanLabeller", "LabelError", "ModelLabeller",
           "fan_weight_paths", "find_images", "label_images", "load_labeller", "model_name", "pose_from_points3d"]

#: the weight files each FAN needs (the names face-alignment 1.x downloads them under)
FAN_FILES = {"fan2d": ("2DFAN4-11f355bf06.pth.tar",),
             "fan3d": ("3DFAN4-7835d9f11d.pth.tar", "depth-2a464da4ea.pth.tar")}
FAN_KINDS = tuple(FAN_FILES)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class LabelError(LandmarkUnifyError):
    """A model, its weights or the images to label cannot be used."""


def find_images(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named, and those under named folders (recursively, by suffix, sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():  # linked folders followed; a loop, or a name that is not UTF-8, is an error naming it
            out += [f for f in sorted_files(p, "**/*") if f.suffix.lower() in IMAGE_SUFFIXES]
        elif p.is_file():
            try:
                str(p).encode("utf-8")
            except UnicodeEncodeError:
                raise LabelError(f"{shown_path(p)}: the file name is not UTF-8; rename it") from None
            out.append(p)
        else:
            raise LabelError(f"{shown_path(p)}: no such image or folder")
    return out


# --- models -------------------------------------------------------------------------------------------------

class ModelLabeller:
    """One of our checkpoints or a 98-point ONNX model (any callable of :func:`load_model`)."""

    schema = "wflw98"

    def __init__(self, model, name: str, refine: int = 1) -> None:
        self.model, self.name, self.refine = model, name, int(refine)

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(M, 98, 2)`` pixels and ``(M, 3)`` pose degrees (None without a pose output) for ``boxes``."""
        faces = predict_image(self.model, image, boxes=boxes, refine=self.refine)
        pts = np.stack([f.landmarks for f in faces]) if faces else np.zeros((0, 98, 2), np.float32)
        if not faces or any(f.pose is None for f in faces):
            return pts, None
        return pts, np.stack([f.pose for f in faces])


def fan_weight_paths(kind: str, weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """The weight files of FAN ``kind`` (:data:`FAN_FILES`) in ``weights_dir``, else in the torch hub cache;
    a :class:`LabelError` naming the missing files and the folders looked in."""
    import torch

    folders = [Path(weights_dir)] if weights_dir is not None else [Path(torch.hub.get_dir()) / "checkpoints"]
    found, missing = [], []
    for name in FAN_FILES[kind]:
        hit = next((f / name for f in folders if (f / name).is_file()), None)
        (found if hit else missing).append(hit or name)
    if missing:
        raise LabelError(f"{kind}: weight file(s) {', '.join(map(str, missing))} not found in "
                         f"{', '.join(map(str, folders))}. face-alignment downloads them at run time, which is not "
                         f"done here: fetch them where there is a network (face-alignment's models_urls) and pass "
                         f"their folder with --fan-weights, or put them in the torch hub cache")
    return found


class FanLabeller:
    """face-alignment's FAN (2D or 3D) on given boxes, with its own crop and heatmap decoding."""

    #: RetinaFace boxes: face-alignment's scale for its own RetinaFace detector
    REFERENCE_SCALE = 165.0

    def __init__(self, kind: str, weights_dir: str | os.PathLike | None = None, device: str = "cpu",
                 flip_input: bool = True) -> None:
        if kind not in FAN_FILES:
            raise LabelError(f"unknown FAN {kind!r}; valid: {list(FAN_FILES)}")
        try:
            import face_alignment
            from face_alignment.models import FAN, ResNetDepth
        except ImportError as exc:
            raise LabelError(f"{kind} needs the optional face-alignment package (pip install -e "
                             f"\".[face-alignment]\"): {exc}") from None
        import torch

        paths = fan_weight_paths(kind, weights_dir)
        self.kind, self.device, self.flip_input = kind, device, flip_input
        self.schema = "ibug68" if kind == "fan2d" else "ibug68_3d"
        self.name = f"face-alignment {face_alignment.__version__} {paths[0].name.split('-')[0]}"
        self.net = FAN(4)
        self.net.load_state_dict(torch.load(paths[0], map_location=device, weights_only=True))
        self.net.to(device).eval()
        self.depth = None
        if kind == "fan3d":
            state = torch.load(paths[1], map_location=device, weights_only=False)
            state = state.get("state_dict", state)
            self.depth = ResNetDepth()
            self.depth.load_state_dict({k.replace("module.", ""): v for k, v in state.items()})
            self.depth.to(device).eval()

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(M, 68, 2)`` pixels (and, for fan3d, the pose of :func:`pose_from_points3d`)."""
        import torch
        from face_alignment import utils as fu

        pts_all, z_all = [], []
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
            center = np.array([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0])
            center[1] -= (y2 - y1) * fu.CENTER_Y_OFFSET
            scale = (x2 - x1 + y2 - y1) / self.REFERENCE_SCALE
            crop = fu.crop(image, center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0
            inp = torch.from_numpy(crop)[None].to(self.device)
            with torch.inference_mode():
                out = self.net(inp)
                out = (out[-1] if isinstance(out, list) else out).detach()
                if self.flip_input:
                    flipped = self.net(fu.flip(inp))
                    out = out + fu.flip((flipped[-1] if isinstance(flipped, list) else flipped).detach(),
                                        is_label=True)
                hm = out.float().cpu().numpy()
                pts, pts_img, _ = fu.get_preds_fromhm(hm, center, scale)
                pts = pts.reshape(fu.NUM_LANDMARKS, 2) * 4
                pts_img = pts_img.reshape(fu.NUM_LANDMARKS, 2)
                if self.depth is not None:
                    heat = np.zeros((fu.NUM_LANDMARKS, fu.CROP_RESOLUTION, fu.CROP_RESOLUTION), np.float32)
                    for j in range(fu.NUM_LANDMARKS):
                        if pts[j, 0] > 0 and pts[j, 1] > 0:
                            heat[j] = fu.draw_gaussian(heat[j], pts[j], 2)
                    d = self.depth(torch.cat([inp, torch.from_numpy(heat)[None].to(self.device)], 1))
                    z_all.append(d.float().cpu().numpy().reshape(-1) * (fu.SCALE_FACTOR * scale / fu.CROP_RESOLUTION))
            # face-alignment's pixels are 1-based (its crop and transform count from 1): to 0-based
            pts_all.append(pts_img.astype(np.float64) - 1.0)
        if not pts_all:
            return np.zeros((0, 68, 2), np.float32), None
        pts = np.stack(pts_all).astype(np.float32)
        if self.depth is None:
            return pts, None
        return pts, pose_from_points3d(np.concatenate([pts, np.stack(z_all)[..., None]], -1), self.schema)


def pose_from_points3d(points3d: np.ndarray, schema: str = "ibug68_3d", face_model=None) -> np.ndarray:
    """``(M, 3)`` pitch, yaw, roll degrees (the project's convention) of faces given as ``(M, K, 3)`` image
    x, y (down) and depth in pixels, in layout ``schema``: the rotation that best aligns the shipped 3D
    face (``face_model``) to the points (Kabsch with scale, over the points both have). Depth may point
    either way: it is taken as pointing toward the camera when the nose tip comes out in front of the
    eye corners that way. NaN for a face with fewer than 6 usable points."""
    model = face_model or load_face_model()
    p = np.asarray(points3d, np.float64)
    xy, ok = to_canonical(p[..., :2].astype(np.float32), schema, policy="strict")
    zz, _ = to_canonical(np.stack([p[..., 2], np.zeros_like(p[..., 2])], -1).astype(np.float32), schema,
                         policy="strict")
    lay = get_layout("wflw98")
    nose, eyes = lay.index("nose_bridge_3"), [lay.index("eye_l_outer"), lay.index("eye_r_outer")]
    out = np.full((len(p), 3), np.nan)
    for i in range(len(p)):
        use = ok[i] & model.has_point & np.isfinite(xy[i]).all(1)
        if use.sum() < 6:
            continue
        z = zz[i, :, 0].astype(np.float64)
        if np.isfinite(z[[nose, *eyes]]).all() and z[nose] < z[eyes].mean():
            z = -z
        cam = np.stack([xy[i, :, 0], -xy[i, :, 1], z], 1)[use]  # x right, y up, z toward the camera
        mod = model.points[use]
        a, b = cam - cam.mean(0), mod - mod.mean(0)
        u, _, vt = np.linalg.svd(a.T @ b)  # cam ~ s * Q @ mod, Q = R^T
        d = np.sign(np.linalg.det(u @ vt))
        q = u @ np.diag([1.0, 1.0, d]) @ vt
        out[i] = euler_from_matrix(q.T[None])[0]
    return out.astype(np.float32)


def model_name(spec: str | os.PathLike) -> str:
    """The ``label_model`` of a model file: its name, or ``FOLDER/best.pt`` for a fit output."""
    p = Path(spec)
    if p.is_dir() or p.name in ("best.pt", "last.pt"):  # a fit folder: name it by the folder
        folder = p if p.is_dir() else p.parent
        return f"{folder.name}/{p.name if not p.is_dir() else 'best.pt'}"
    return p.name


def load_labeller(spec: str | os.PathLike, *, device: str = "cpu", weights_dir=None, refine: int = 1,
                  name: str | None = None, **onnx_options):
    """A labeller for ``spec``: ``fan2d`` / ``fan3d`` (:class:`FanLabeller`), else our checkpoint or an ONNX
    model through :func:`pfpld_train.evaluation.evaluate.load_model` (:class:`ModelLabeller`).
    ``name``: the ``label_model`` written (default: the file's name, or the fit folder's)."""
    if str(spec) in FAN_FILES:
        lab = FanLabeller(str(spec), weights_dir=weights_dir, device=device)
    else:
        lab = ModelLabeller(load_model(spec, device=device, **onnx_options), model_name(spec), refine=refine)
    if name:
        lab.name = name
    return lab


def label_images(labeller, images: Sequence[str | os.PathLike], *, detector: RetinaFaceDetector | None = None,
                 max_faces: int | None = None, on_error: str = "raise", progress: bool = False):
    """Detect and label the faces of ``images``. Returns ``(faces, counts, skipped)``: a list of
    :class:`landmark_unify.ops.label.LabelledFace`, counts of images read, without a face and unreadable,
    and the ``(image, reason)`` of each unreadable image (``on_error="skip"``; ``"raise"`` stops there: the
    :class:`~landmark_unify.errors.ErrorPolicy` of the command)."""
    policy = ErrorPolicy(on_error)
    detector = detector or RetinaFaceDetector()
    faces = []
    counts = {"images": 0, "no_face": 0, "unreadable": 0, "faces": 0}
    bar = Progress(total=len(images), desc="label", unit="images", enabled=progress)
    for path in images:
        bar.update(1)
        try:
            image = read_image(path)
        except LandmarkUnifyError as exc:
            policy(exc, image=str(path))  # raises under "raise"
            counts["unreadable"] += 1
            continue
        counts["images"] += 1
        boxes, scores, _ = detector.detect(image)
        if max_faces is not None:
            boxes, scores = boxes[:max_faces], scores[:max_faces]
        if not len(boxes):
            counts["no_face"] += 1
            continue
        pts, pose = labeller.predict(image, boxes)
        h, w = image.shape[:2]
        for j in range(len(boxes)):
            faces.append(LabelledFace(Path(path), j, pts[j], labeller.schema,
                                      pose=None if pose is None else pose[j], score=float(scores[j]),
                                      width=int(w), height=int(h)))
        counts["faces"] += len(boxes)
        bar.set_postfix_str(f"{counts['faces']} faces")
    bar.close()
    return faces, counts, [(rec["image"], f"{rec['path']}: {rec['reason']}" if rec["path"] else rec["reason"])
                           for rec in policy.skipped]
