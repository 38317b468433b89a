"""Rotations of the pose fit: Euler angles in the 300W-LP ``Pose_Para`` convention, the nearest scaled
rotation to an affine camera, and a rotation-vector update. Batched NumPy."""
from __future__ import annotations

import numpy as np


def euler_from_matrix(r: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` rotations ``R = Rz(roll) Ry(yaw) Rx(pitch)`` -> ``(N, 3)`` pitch, yaw, roll degrees."""
    pitch = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    yaw = np.arctan2(-r[:, 2, 0], np.hypot(r[:, 2, 1], r[:, 2, 2]))
    roll = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.degrees(np.stack([pitch, yaw, roll], 1))


def matrix_from_euler(angles: np.ndarray) -> np.ndarray:
    """``(N, 3)`` pitch, yaw, roll degrees -> ``(N, 3, 3)`` ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    a = np.radians(np.asarray(angles, dtype=np.float64).reshape(-1, 3))
    cp, sp, cy, sy, cr, sr = (f(a[:, i]) for i in range(3) for f in (np.cos, np.sin))
    one, zero = np.ones(len(a)), np.zeros(len(a))
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return rz @ ry @ rx


def faces_camera(angles: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the face at these ``(N, 3)`` pitch, yaw, roll degrees looks toward the camera (its
    forward axis, model z, has a positive camera z: ``R[2, 2] = cos(pitch) cos(yaw) > 0``). A fit that turns
    the face away is a face turned past profile, or a fit pulled there by points no face has: labels whose
    left and right are exchanged draw a mirror image, which only a face seen from behind projects to (every
    whole-face and brow-pair swap injected into the WFLW test faces; 2 of their 1966 untouched faces, both
    with their brows exchanged; 6 of the 1007 AFLW2000-3D dev faces, all turned 70-120 degrees). False where
    the pose is unknown (NaN)."""
    a = np.radians(np.asarray(angles, dtype=np.float64).reshape(-1, 3))
    with np.errstate(invalid="ignore"):
        return np.cos(a[:, 0]) * np.cos(a[:, 1]) > 0


def _nearest_scaled_rotation(a: np.ndarray):
    """Nearest scaled-orthographic camera to affine cameras ``a`` (2, 3, N), batch-last: rows
    ``Q2 = (a a^T)^(-1/2) a`` (the polar factor) completed to a rotation ``Q`` (3, 3, N), and the mean
    singular value ``s`` (N,)."""
    m00, m01, m11 = (a[0] * a[0]).sum(0), (a[0] * a[1]).sum(0), (a[1] * a[1]).sum(0)
    sd = np.sqrt(np.maximum(m00 * m11 - m01 * m01, 0.0))
    root = np.sqrt(np.maximum(m00 + m11 + 2 * sd, 1e-300))
    s = root / 2  # (sigma1 + sigma2) / 2, since (sigma1 + sigma2)^2 = tr + 2 sqrt(det)
    # (a a^T)^(1/2) = (m + sd I) / root; its inverse for a 2 x 2 matrix
    h00, h01, h11 = (m00 + sd) / root, m01 / root, (m11 + sd) / root
    q = np.empty((3,) + a.shape[1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        hdet = h00 * h11 - h01 * h01
        q[0] = (h11 * a[0] - h01 * a[1]) / hdet
        q[1] = (h00 * a[1] - h01 * a[0]) / hdet
    q[2] = np.cross(q[0], q[1], axis=0)
    return q, s



def _rotate_by(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``q @ expm([w]x)`` for batch-last rotations ``q`` (3, 3, N) and rotation vectors ``w`` (3, N)
    (Rodrigues: ``expm = cos t I + sin t / t [w]x + (1 - cos t) / t^2 w w^T``)."""
    x, y, z = w
    th2 = x * x + y * y + z * z
    th = np.sqrt(th2)
    small = th < 1e-8
    ths = np.where(small, 1.0, th)
    a = np.where(small, 1.0, np.sin(ths) / ths)
    b = np.where(small, 0.5, (1.0 - np.cos(ths)) / ths**2)
    c0 = 1.0 - b * th2
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    bxy, bxz, byz = bx * y, bx * z, by * z
    r = np.empty((3, 3, len(th)))
    r[0, 0], r[1, 1], r[2, 2] = c0 + bx * x, c0 + by * y, c0 + bz * z
    r[0, 1], r[1, 0] = bxy - az, bxy + az
    r[0, 2], r[2, 0] = bxz + ay, bxz - ay
    r[1, 2], r[2, 1] = byz - ax, byz + ax
    return np.einsum("ijn,jkn->ikn", q, r)
