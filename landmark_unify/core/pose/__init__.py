"""Head pose from 2D landmarks: a batched, weighted, robust fit of a mean 3D face.

Convention (the 300W-LP / AFLW2000-3D ``Pose_Para`` one, see ``docs/guides/pose.md``)
------------------------------------------------------------------------------
Angles are ``(pitch, yaw, roll)`` in degrees, in that order. With ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
and a model frame with x to the image right, y up and z toward the camera, a model point ``X``
projects to ``(u, v) = s * (R.T @ X)[:2] + t`` with ``v`` pointing up, i.e. image ``y = const - v``.
A horizontal flip of the image negates yaw and roll and keeps pitch.

Method (:func:`estimate_pose`)
------------------------------
1. A mean 3D face in the canonical 98-point layout (:class:`FaceModel`), made exactly left-right
   symmetric, centred and scaled to unit RMS radius. The caller passes it (``model=``;
   :func:`landmark_unify.load_face_model` gives the shipped MediaPipe face, or a published 68-point shape
   placed on the 98 points with the iBUG-68 map). Faces flagged ``projected`` (points projected from a
   fitted 3D face model) are fitted with the model's face for such points (``FaceModel.projected``).
2. Per face, a weighted affine camera is solved in closed form and projected to the nearest scaled
   orthographic camera (initialisation).
3. Gauss-Newton on a scaled-orthographic camera (rotation, scale, 2D shift) plus six regularised
   expression modes (vertical shifts of the lower lip, the upper lip, each brow and each upper eyelid
   in the face frame, Gaussian prior with sigma 0.1 face radii), with iteratively reweighted least
   squares (Huber weights at 1.345 robust residual scales) against a few bad points. Only valid points
   with a model point take part; a per-point prior weight (:data:`DEFAULT_POINT_WEIGHTS`) leaves out the
   sides of a 2D outline contour (:data:`PROJECTED_CONTOUR_WEIGHTS` for a projected 3D contour).
4. Faces with fewer than ``min_points`` usable points, none on the nose, or all of them on a line get
   NaN: an unknown pose, never a made-up one. A face model of zero size or on a line is refused.

:func:`estimate_pose_pnp` is a per-face ``cv2.solvePnP`` baseline with a pixel-space pinhole camera.

Modules: :mod:`.model` (the 3D face, point weights, expression modes), :mod:`.fit` (the batched fit),
:mod:`.rotation` (Euler angles, rotation updates), :mod:`.pnp` (the solvePnP baseline). These functions
are pure and need ``model=``; ``landmark_unify.estimate_pose`` (:mod:`landmark_unify.face_models.fit`)
defaults to the shipped face and holds BLAS to one thread while it runs.
"""
from __future__ import annotations

from .fit import (
    CHUNK,
    HUBER,
    ITERATIONS,
    MIN_POINTS,
    MIN_SCALE,
    MODE_SIGMA,
    NOISE_SIGMA,
    REFIT_ITERATIONS,
    estimate_pose,
)
from .model import (
    CHIN,
    DEFAULT_POINT_WEIGHTS,
    EXPRESSION_MODES,
    LID_POLYLINES,
    NOSE,
    PROJECTED_CONTOUR_SCHEMAS,
    PROJECTED_CONTOUR_WEIGHTS,
    FaceModel,
    PoseModelError,
    build_face_model,
    build_face_model_98,
    canonical_model_points,
)
from .pnp import estimate_pose_pnp
from .rotation import euler_from_matrix, faces_camera, matrix_from_euler

__all__ = ["CHIN", "CHUNK", "DEFAULT_POINT_WEIGHTS", "EXPRESSION_MODES", "HUBER", "ITERATIONS", "LID_POLYLINES",
           "MIN_POINTS", "MIN_SCALE", "MODE_SIGMA", "NOISE_SIGMA", "NOSE", "PROJECTED_CONTOUR_SCHEMAS",
           "PROJECTED_CONTOUR_WEIGHTS", "REFIT_ITERATIONS", "FaceModel", "PoseModelError", "build_face_model",
           "build_face_model_98", "canonical_model_points", "estimate_pose", "estimate_pose_pnp",
           "euler_from_matrix", "faces_camera", "matrix_from_euler"]
