"""The public pose fit: :func:`landmark_unify.core.pose.estimate_pose` with the shipped face by default.

The core's fit is pure and takes its face model; here ``model=None`` means the face shipped with the
package (:func:`~landmark_unify.face_models.default_face_model`, read once per process), and numpy's
OpenBLAS is held to one thread while the fit runs (:class:`landmark_unify.blas.SingleThreadBLAS`).
"""
from __future__ import annotations

from ..blas import SingleThreadBLAS
from ..core import pose as core_pose
from . import default_face_model


def estimate_pose(points98, valid98=None, *, model: core_pose.FaceModel | None = None, **options):
    """Head pose ``(N, 3)`` float32 pitch, yaw, roll in degrees of each face from its canonical landmarks
    (NaN where unknown). ``model``: the mean 3D face, default the shipped one. The other options and the
    result are those of :func:`landmark_unify.core.pose.estimate_pose`."""
    with SingleThreadBLAS():
        return core_pose.estimate_pose(points98, valid98, model=model or default_face_model(), **options)


def estimate_pose_pnp(points98, valid98=None, image_size=None, *, model: core_pose.FaceModel | None = None,
                      **options):
    """The ``cv2.solvePnP`` baseline, :func:`landmark_unify.core.pose.estimate_pose_pnp`, with the shipped
    face by default."""
    return core_pose.estimate_pose_pnp(points98, valid98, image_size, model=model or default_face_model(), **options)
