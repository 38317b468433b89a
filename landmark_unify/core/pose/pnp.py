"""The ``cv2.solvePnP`` baseline of the pose fit (:func:`estimate_pose_pnp`), one face at a time."""
from __future__ import annotations

import numpy as np

from .fit import MIN_POINTS, MIN_SPREAD, _fit_inputs, spread_ratio
from .model import FaceModel
from .rotation import euler_from_matrix


def estimate_pose_pnp(points98, valid98=None, image_size=None, *, model: FaceModel | None = None,
                      point_weights=None, min_points: int = MIN_POINTS) -> np.ndarray:
    """Per-face ``cv2.solvePnP`` baseline, same convention and output as :func:`estimate_pose`.

    It uses the points :func:`estimate_pose` uses (``point_weights`` > 0), unweighted. The real 3D mean
    face (model units) is placed in OpenCV's camera frame (x right, y down, z away
    from the camera) and matched to the pixel landmarks with a pinhole camera: focal length = image
    width, principal point = image centre. ``image_size``: ``(W, H)`` or ``(N, 2)``; when None the
    principal point is the landmarks' centre and the focal length the largest image extent implied by
    them (twice the landmark span). Solver: ``SOLVEPNP_SQPNP`` then Levenberg-Marquardt refinement
    (SQPnP is globally optimal; the iterative solver
    lands in a wrong minimum on some faces). Solutions with the face behind the camera are rejected (NaN).
    """
    import cv2

    pts, model, _, use, enough = _fit_inputs(points98, valid98, model, point_weights, min_points)  # unweighted
    enough[enough] &= spread_ratio(pts[enough], use[enough]) >= MIN_SPREAD  # points on a line have no pose
    n = len(pts)
    if image_size is not None:
        size = np.broadcast_to(np.asarray(image_size, dtype=np.float64).reshape(-1, 2), (n, 2))
    flip = np.diag([1.0, -1.0, -1.0])  # model frame -> OpenCV camera axes (a proper rotation)
    obj_all = model.raw_points @ flip.T
    out = np.full((n, 3), np.nan)
    for i in np.flatnonzero(enough):
        m = use[i]
        img = np.ascontiguousarray(pts[i, m])
        if image_size is not None:
            w_img, h_img = size[i]
            f, cx, cy = w_img, (w_img - 1) / 2, (h_img - 1) / 2
        else:
            span = np.ptp(img, 0).max()
            f, (cx, cy) = 2 * span, img.mean(0)
        cam = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64)
        obj = np.ascontiguousarray(obj_all[m])
        okk, rvec, tvec = cv2.solvePnP(obj, img, cam, None, flags=cv2.SOLVEPNP_SQPNP)
        if okk:
            rvec, tvec = cv2.solvePnPRefineLM(obj, img, cam, None, rvec, tvec)
        if not okk or tvec[2, 0] <= 0:
            continue
        r_cv, _ = cv2.Rodrigues(rvec)
        # camera = R_cv F X; flipping camera y, z back: F R_cv F X = R^T X  =>  R = F R_cv^T F
        r = flip @ r_cv.T @ flip
        out[i] = euler_from_matrix(r[None])[0]
    return out.astype(np.float32)
