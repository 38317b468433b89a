"""300W-LP and AFLW2000-3D ``.mat`` labels (read with ``scipy.io.loadmat``).

300W-LP (kind ``300wlp``), root = the 300W_LP folder::

    {AFW,HELEN,IBUG,LFPW}[_Flip]/NAME.{jpg,mat}     pt2d (2, 68), Pose_Para (1, 7), ...
    landmarks/<SUBSET>/NAME_pts.mat                  pts_2d, pts_3d (68, 2), where present

Points: ``pts_2d`` of the landmarks file when present (schema ``ibug68``: a 2D outline jaw), else
``pt2d`` (schema ``ibug68_3d``: the jaw is the projection of 3D model points). Option ``points``
picks ``pt2d``, ``pts_2d`` or ``pts_3d`` explicitly. Split ``train``.

AFLW2000-3D (kind ``aflw2000``), root = the folder of ``imageNNNNN.{jpg,mat}``: ``pt3d_68`` (3, 68), x and
y rows, schema ``ibug68_3d``. Kind ``aflw2000-21`` (option ``points=pt2d``) reads ``pt2d`` (2, 21) in the
``aflw21`` schema instead, where x = -1 marks a missing point. Split ``test``.

Coordinates are MATLAB's 1-based pixels: 1 is subtracted. ``Pose_Para`` = [pitch, yaw, roll (radians),
tx, ty, tz, scale] gives pitch, yaw, roll in degrees (wrapped into [-180, 180)).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LandmarkUnifyError, ParseError
from ._base import FLOAT32_MAX, ErrorSink, FaceRecord, Unit, find_image, plan_files, read_files, rel, sorted_files

FILES_PER_UNIT = 500
NOT_SUBSETS = ("landmarks", "Code", "code")
#: valid values of the option ``points``
POINTS_300WLP = ("auto", "pt2d", "pts_2d", "pts_3d")
POINTS_AFLW2000 = ("pt3d_68", "pt2d")


def plan_300wlp(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    return plan_files(source, "300wlp", root, sorted_files(root, "*/*.mat", exclude_dirs=NOT_SUBSETS), options,
                      FILES_PER_UNIT, "no 300W-LP .mat files found: expected {AFW,HELEN,IBUG,LFPW}[_Flip]/*.mat")


def plan_aflw2000(source: str, root: Path, options: dict, chunk_bytes: int | None = None, kind: str = "aflw2000") -> list[Unit]:
    return plan_files(source, kind, root, sorted_files(root, "*.mat"), options, FILES_PER_UNIT,
                      "no AFLW2000-3D .mat files found in the root")


def load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises many types (ValueError, TypeError, MatReadError, OSError)
        raise ParseError(path, f"cannot read .mat file: {type(exc).__name__}: {exc}", field="file") from None


def get_array(mat: dict, name: str, shape: tuple[int, ...], path: Path, allow_missing: bool = False) -> np.ndarray:
    if name not in mat:
        raise ParseError(path, f"variable {name!r} is missing", key=name, field=name)
    arr = np.asarray(mat[name])
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ParseError(path, f"variable {name!r} is not numeric (dtype {arr.dtype})", key=name, field=name) from None
    if arr.shape != shape:
        raise ParseError(path, f"variable {name!r} has shape {arr.shape}; expected {shape}", key=name, field=name)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ParseError(path, f"not a finite number: {str(float(arr[idx]))!r} at {list(idx)}", key=name, field=f"{name}{list(idx)}")
    big = np.abs(arr) > FLOAT32_MAX
    if big.any():
        idx = tuple(int(i) for i in np.argwhere(big)[0])
        raise ParseError(path, f"out of range (beyond float32): {str(float(arr[idx]))!r} at {list(idx)}", key=name,
                         field=f"{name}{list(idx)}")
    return arr


#: the most a ``Pose_Para`` angle may be, in degrees: an angle a little past half a turn is wrapped (a
#: fit's output may run past +-180), one beyond a turn and a half is no head pose but a broken value
MAX_POSE_DEGREES = 540.0


def pose_degrees(mat: dict, path: Path) -> np.ndarray:
    """(3,) float64 pitch, yaw, roll in degrees from ``Pose_Para``, wrapped into [-180, 180); an angle beyond
    :data:`MAX_POSE_DEGREES` is a ParseError naming the file and the angle, never wrapped."""
    p = get_array(mat, "Pose_Para", (1, 7), path)[0, :3]
    deg = np.degrees(p)
    wild = np.flatnonzero(~(np.abs(deg) <= MAX_POSE_DEGREES))
    if wild.size:
        j = int(wild[0])
        raise ParseError(path, f"{('pitch', 'yaw', 'roll')[j]} of {p[j]:g} radians ({deg[j]:g} degrees) is beyond a "
                               f"turn and a half (+-{MAX_POSE_DEGREES:g} degrees); not a head pose",
                         key="Pose_Para", field=f"Pose_Para[0, {j}]")
    return (deg + 180.0) % 360.0 - 180.0 if (np.abs(deg) > 180.0).any() else deg


def _read_mat_faces(unit: Unit, sink: ErrorSink, split: str, points) -> list[FaceRecord]:
    """One face per ``.mat`` file of the unit: ``points(root, f, path, mat)`` returns ``(points (K, 2)
    0-based, schema, origin_file, origin_key, identity)``; the pose is ``Pose_Para``. A file that cannot be
    read goes to ``sink``."""
    def read_one(root: Path, f: str, path: Path) -> FaceRecord:
        mat = load_mat(path)
        pose = pose_degrees(mat, path)
        if (np.abs(np.degrees(mat["Pose_Para"][0, :3].astype(np.float64))) > 180.0).any():
            sink.note("Pose_Para angles beyond 180 degrees wrapped into [-180, 180)")
        pts, schema, origin, key, identity = points(root, f, path, mat)
        img = find_image(path.parent, path.stem)
        return FaceRecord(
            points=pts, schema=schema, split=split,
            image_path=rel(img, root) if img is not None else Path(f).with_suffix(".jpg").as_posix(),
            origin_file=origin, origin_key=key, identity=identity, pose=pose,
        )

    return read_files(unit, sink, read_one)


def read_300wlp(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    choice = unit.opts.get("points", "auto")
    if choice not in POINTS_300WLP:
        raise LandmarkUnifyError(f"300wlp option points={choice!r}; valid: {', '.join(POINTS_300WLP)}")

    def points(root: Path, f: str, path: Path, mat: dict):
        lm_rel = f"landmarks/{Path(f).parent.name}/{path.stem}_pts.mat"
        if choice in ("pts_2d", "pts_3d") or (choice == "auto" and (root / lm_rel).is_file()):
            var = "pts_3d" if choice == "pts_3d" else "pts_2d"
            pts = get_array(load_mat(root / lm_rel), var, (68, 2), root / lm_rel) - 1.0
            return pts, ("ibug68" if var == "pts_2d" else "ibug68_3d"), lm_rel, var, f
        return get_array(mat, "pt2d", (2, 68), path).T - 1.0, "ibug68_3d", f, "pt2d", f

    return _read_mat_faces(unit, sink, "train", points)


def read_aflw2000(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    choice = unit.opts.get("points", "pt3d_68")
    if choice not in POINTS_AFLW2000:
        raise LandmarkUnifyError(f"aflw2000 option points={choice!r}; valid: {', '.join(POINTS_AFLW2000)}")

    def points(root: Path, f: str, path: Path, mat: dict):
        if choice == "pt3d_68":
            pts, schema = get_array(mat, "pt3d_68", (3, 68), path)[:2].T - 1.0, "ibug68_3d"
        else:
            raw = get_array(mat, "pt2d", (2, 21), path).T
            pts, schema = raw - 1.0, "aflw21"
            pts[(raw < 0).any(axis=1)] = np.nan
        return pts, schema, f, choice, f"{f}:{choice}"

    return _read_mat_faces(unit, sink, "test", points)
