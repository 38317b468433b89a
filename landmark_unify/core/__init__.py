"""The pure core: point layouts, maps onto the canonical layout, eye state and the pose fit.

Batched NumPy on ``(N, K, 2)`` arrays; no file or network I/O. Everything else of the package builds on it.
"""
from __future__ import annotations

from .eyes import CLOSED_THRESHOLD, EYE_STATES, eye_aspect_ratio, eye_columns, eye_state
from .layouts import CANONICAL, Layout, Point, get_layout, list_layouts
from .maps import compile_map, finite_points, flip, from_canonical, list_schemas, to_canonical
from .pose import FaceModel, build_face_model, estimate_pose, estimate_pose_pnp, matrix_from_euler

__all__ = ["CANONICAL", "CLOSED_THRESHOLD", "EYE_STATES", "FaceModel", "Layout", "Point", "build_face_model",
           "compile_map", "estimate_pose", "estimate_pose_pnp", "eye_aspect_ratio", "eye_columns", "eye_state",
           "finite_points", "flip", "from_canonical", "get_layout", "list_layouts", "list_schemas",
           "matrix_from_euler", "to_canonical"]
