"""Label audit of a manifest: rank every face by how suspect its annotation is (``docs/spec/audit.md``).

Three passes, on any engine:

1. **Fit** (driver): shape models (:func:`landmark_unify.core.audit.fit_shape_model`) per source layout and
   yaw bin, on all faces or an even spread of ``fit_sample`` of them (every n-th row of a few slices), with
   a layout-wide and a pooled model for bins and layouts with too few faces; the box calibration per source
   and box kind; the valid-point share per layout.
2. **Score** (units): every slice of rows is scored against its models (points, parts, repairs, box,
   pose, eyes, mask; with ``models``, the disagreement with each landmark model, point by point) and its
   raw signals written as a part of a staged folder beside the output.
3. **Assemble** (driver): each signal is calibrated per source layout (robust z: median and upper tail of
   the signal over the audited faces), the findings named, mirrored pairs matched for ``flip_pose``, the
   model disagreement normalised by each model's typical error per point, and the output written in input
   row order with ``rank``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import manifest as mf
from ..core import audit as ca
from ..core.eyes import eye_aspect_ratio, eye_state, thresholds_for
from ..core.layouts import CANONICAL, get_layout
from ..core.pose import PROJECTED_CONTOUR_SCHEMAS, estimate_pose, faces_camera
from ..engines import RunOptions
from ..errors import ON_ERROR, LandmarkUnifyError
from ..face_models import load_face_model
from ..io import atomic_path, owned_name
from ..manifest.filters import filter_rows, parse_filter
from ..outputs import current, transactional
from ..progress import Progress

#: the findings vocabulary (docs/spec/audit.md)
FINDINGS = ("swapped_left_right", "reversed_order", "collapsed_ends", "outlier_point", "shifted_group", "wrong_face",
            "degenerate", "pose_mismatch", "flip_pose", "eye_state_mismatch", "mask_mismatch", "model_disagreement")
#: a signal whose calibrated z-score reaches this names its finding; a face whose suspicion reaches it is flagged
FLAG_Z = 5.0
#: suspicion of a degenerate face (no shape to score): this, or more than any other face's when that is higher
DEGENERATE_SUSPICION = 1000.0
#: suspicion of a face with a yes/no finding only (flip_pose, eye_state_mismatch, mask_mismatch, a side out of
#: left-right order, collapsed ends)
RULE_SUSPICION = FLAG_Z
#: yaw bin edges of the shape models, degrees
YAW_EDGES = (-45.0, -15.0, 15.0, 45.0)
#: faces the models are fitted on at most (beyond that an even spread of this many, :func:`_fit_frames`)
FIT_SAMPLE = 20_000
#: a dataset pose this far from the fit (degrees, largest of the three angles) and z >= FLAG_Z: pose_mismatch
MIN_POSE_DIFF = 10.0
#: two faces are a mirrored pair when their eye-corner-normalised shapes agree this well (RMS, IOD)
MIRROR_TOL = 0.02
#: a mirrored pair's yaw and roll must be negated within this many degrees
MIRROR_POSE_TOL = 5.0
#: a stored EAR this far from the one of the canonical points (same 8-point formula) is an eye_state_mismatch
EAR_TOL = 0.05
#: a point valid in fewer than this share of its layout's faces is a mask_mismatch where valid
MASK_RARE = 0.01
#: points whose z-score reaches this are listed in ``worst_points`` (at most WORST_POINTS of them)
POINT_FLAG = 4.0
WORST_POINTS = 5
#: a face's shape error is one point (``outlier_point``) when its worst point's z-score is this many times
#: the RMS z-score of the other points of its part; else it is the part's (``shifted_group``)
SINGLE_POINT_RATIO = 2.5
#: the signals from the points' shape, each a z-score against the shape models; one of them at FLAG_Z or more
#: names a shape finding (a repair's, ``outlier_point`` or ``shifted_group``)
SHAPE_SIGNALS = ("point", "part", "shift", "thickness", "push", "repair")
#: the canonical layout's group of the face's outline, the part a box holds the face by
CONTOUR = "contour"
#: the box finding is the contour's (``shifted_group``), not ``wrong_face``, where the points off the contour sit
#: in the box as most faces' do: their box z-score under this (on WFLW, contours pushed out of their box 0.1 IOD
#: score -0.6 to 0.3; another face's points 4 or more, 50-100 mostly)
INNER_BOX_Z = 2.5
#: the signals, in the order of their z columns
SIGNALS = SHAPE_SIGNALS + ("box", "pose", "model")
_KEY_DIMS = 12


class AuditError(LandmarkUnifyError):
    """The audit cannot run on this input (too few faces for a shape model, a model of another layout, ...)."""


# --- landmark models (the --model option) -----------------------------------------------------------------------

#: entry-point group through which an installed package offers landmark models to the audit; pfpld_train
#: registers ``pfpld_train.inference.audit:load_audit_model`` (setup.cfg), so this package never imports it
MODEL_GROUP = "landmark_unify.landmark_models"


def load_landmark_model(spec: str, device: str = "cpu"):
    """A landmark model for ``spec`` (``PATH``, ``PATH@PRESET``, ``fan2d``/``fan3d``) from the first package
    that offers one under :data:`MODEL_GROUP`. The model has ``name``, ``schema`` and
    ``predict_file(path, boxes) -> (M, K, 2)`` (raises LandmarkUnifyError on a missing or unreadable image)."""
    from importlib.metadata import distributions

    loaders = []
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == MODEL_GROUP and ep.name not in [n for n, _ in loaders]:
                loaders.append((ep.name, ep))
    if not loaders:
        raise AuditError(f"--model {spec}: no package offers landmark models (entry point group {MODEL_GROUP!r}); "
                         "install pfpld_train (pip install -e .) to audit with models")
    _, ep = sorted(loaders, key=lambda x: x[0])[0]
    model = ep.load()(spec, device=device)
    check_model_layout(model, spec)
    return model


def check_model_layout(model, spec: str) -> None:
    """Refuse a model whose outputs are not in a layout with a map onto the canonical one."""
    from ..core.maps import list_schemas

    schema = getattr(model, "schema", None)
    if schema not in list_schemas():
        raise AuditError(f"--model {spec}: outputs layout {schema!r}, which has no map onto {CANONICAL}; "
                         f"valid: {sorted(list_schemas())}")


_MODEL_CACHE: dict = {}


def _model(spec, device: str):
    """The loaded model of a spec (cached per process); a model object (``name``, ``schema``,
    ``predict_file``) passed by a Python caller is used as it is."""
    if not isinstance(spec, str):
        check_model_layout(spec, getattr(spec, "name", repr(spec)))
        return spec
    key = (spec, device)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_landmark_model(spec, device)
    return _MODEL_CACHE[key]


def model_points(model, spec: str, path, boxes: np.ndarray) -> np.ndarray:
    """``(M, 98, 2)`` canonical predictions of ``model`` for the faces in ``boxes`` of image ``path``
    (NaN where the model's layout has no such point). AuditError if it gives points of another layout."""
    from ..core.maps import to_canonical

    pts = np.asarray(model.predict_file(path, boxes), np.float64)
    layout = get_layout(CANONICAL if model.schema == CANONICAL else _schema_layout(model.schema))
    if pts.ndim != 3 or pts.shape[0] != len(boxes) or pts.shape[1:] != (layout.num_points, 2):
        raise AuditError(f"--model {spec}: predicted points of shape {pts.shape[1:]} for layout "
                         f"{model.schema!r} ({layout.num_points} points); a model of another layout cannot be "
                         "compared with the canonical points")
    if model.schema == CANONICAL:
        return pts
    out, _ = to_canonical(pts, model.schema, policy="strict")
    return np.asarray(out, np.float64)


def _schema_layout(schema: str) -> str:
    from ..core.maps import schema_layout

    lay = schema_layout(schema)
    return lay.name if hasattr(lay, "name") else str(lay)


# --- pass 1: fit ---------------------------------------------------------------------------------------------------

@dataclass
class AuditModel:
    """What the scoring units need: shape models by key, box calibration, valid shares, options."""

    shapes: dict
    box: dict  # {point set (_box_points): {box group: (centre, scale) of the box features}}
    valid_share: dict
    fallback: dict = field(default_factory=dict)
    where: str | None = None
    models: tuple = ()
    device: str = "cpu"
    roots: dict = field(default_factory=dict)
    manifest_path: str = ""
    on_error: str = "raise"

    def describe(self) -> dict:
        return {"shape_models": {k: m.to_dict() for k, m in sorted(self.shapes.items())},
                "fallback": dict(sorted(self.fallback.items()))}


#: the shape model of all the audited faces (every layout, every pose), and the bin label of a layout's model of
#: all poses (shape model keys are ``"{layout}|{bin}"``)
POOLED, ALL_POSES = "*", "all"


def yaw_bin(yaw: np.ndarray) -> np.ndarray:
    """``(N,)`` object: the yaw bin label of each face (:data:`ALL_POSES` where the yaw is unknown)."""
    edges = np.asarray(YAW_EDGES)
    labels = [f"<{edges[0]:g}"] + [f"{a:g}..{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + \
             [f">={edges[-1]:g}"]
    y = np.asarray(yaw, np.float64)
    b = np.searchsorted(edges, np.nan_to_num(y, nan=0.0), side="right")
    out = np.array(labels, dtype=object)[b]
    out[~np.isfinite(y)] = ALL_POSES
    return out


def _fit_pose(df: pd.DataFrame, points: np.ndarray, valid: np.ndarray, face_model) -> np.ndarray:
    """``(N, 3)`` the fitted pose of each face; NaN where there is none: too few points, or a fit that turned
    the face away from the camera (:func:`~landmark_unify.core.pose.faces_camera`: most often mirrored
    labels), whose yaw would pick the shape model of faces turned the other way. Such faces are scored by
    their layout's model of all poses."""
    if not len(df):
        return np.zeros((0, 3), np.float32)
    proj = df["source_schema"].isin(PROJECTED_CONTOUR_SCHEMAS).to_numpy()
    pose = estimate_pose(points, valid, model=face_model, projected=proj)
    pose[~faces_camera(pose)] = np.nan
    return pose


def rule_broken(points: np.ndarray, valid: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: faces that break a model-free rule of the points: degenerate, a side out of left-right
    order, or a loop's ends collapsed (:func:`~landmark_unify.core.audit.out_of_order`,
    :func:`~landmark_unify.core.audit.collapsed_ends`)."""
    if not len(points):
        return np.zeros(0, bool)
    return np.array([d is not None or bool(o) or bool(c) for d, o, c in zip(
        ca.degenerate(points, valid), ca.out_of_order(points, valid), ca.collapsed_ends(points, valid, yaw),
        strict=True)], bool)


def _read_frame(s: mf.RowSlice, where) -> pd.DataFrame:
    df = mf.dataframe_from_table(mf.read_slice(s))
    return filter_rows(df, where).reset_index(drop=True)


#: the fit sample is read from this many row slices at most, evenly spread over the input
FIT_SLICES = 8


def _fit_frames(slices: list, sample: int | None, where) -> list[pd.DataFrame]:
    """The faces the models learn from: every face when there are at most ``sample``; else an even spread
    of about ``sample`` faces, every n-th row of up to :data:`FIT_SLICES` evenly spread slices (a slice is a
    row group of 65536 faces: taking whole slices fitted on 65536 faces where 20000 were asked for)."""
    total = sum(s.length for s in slices)
    if sample is None or total <= sample:
        return [_read_frame(s, where) for s in slices]
    take = min(len(slices), FIT_SLICES)
    idx = np.unique(np.linspace(0, len(slices) - 1, take).round().astype(int))
    per = int(np.ceil(sample / len(idx)))
    frames = []
    for i in idx:
        df = _read_frame(slices[i], where)
        if len(df) > per:
            df = df.iloc[np.linspace(0, len(df) - 1, per).round().astype(np.intp)].reset_index(drop=True)
        frames.append(df)
    return frames


def fit_audit_model(frames: Sequence[pd.DataFrame], face_model=None) -> AuditModel:
    """Shape models, box calibration and valid shares from manifest DataFrames (the fit sample)."""
    face_model = face_model or load_face_model()
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if df is None or not len(df):
        raise AuditError("no faces to audit (the input, or the rows --where keeps, is empty)")
    pts = mf.landmarks_array(df).astype(np.float64)
    val = mf.valid_array(df)
    pose = _fit_pose(df, pts, val, face_model)
    # a face that breaks a model-free rule is a labelling error: it must not teach the shape models (a defect
    # common in one pose bin would otherwise become that bin's normal)
    broken = rule_broken(pts, val, pose[:, 1])
    learn = val & ~broken[:, None]
    bins = yaw_bin(pose[:, 1])
    schemas = df["source_schema"].astype(str).to_numpy(object)
    shapes, fallback = {}, {}
    single = len(set(schemas)) == 1
    try:
        shapes[POOLED] = ca.fit_shape_model(pts, learn, key=POOLED)
    except ValueError as exc:
        why = (f" ({int(broken.sum())} of its {len(df)} faces break a model-free rule: degenerate, a side out of "
               "left-right order or a loop's ends collapsed, and take no part in the fit)" if broken.any() else "")
        raise AuditError(f"too few faces to learn a shape model from this input{why}: {exc}. Audit a larger "
                         "manifest (or merge this one with others of the same layout first)") from None
    for schema in sorted(set(schemas)):
        sel = schemas == schema
        key = f"{schema}|{ALL_POSES}"
        try:
            # one layout: its model is the pooled one
            shapes[key] = shapes[POOLED] if single else ca.fit_shape_model(pts[sel], learn[sel], key=key)
        except ValueError as exc:
            fallback[key] = f"pooled model {POOLED!r}: {exc}"
            continue
        for b in sorted(set(bins[sel])):
            if b == ALL_POSES:
                continue
            kb = f"{schema}|{b}"
            sb = sel & (bins == b)
            try:
                shapes[kb] = ca.fit_shape_model(pts[sb], learn[sb], key=kb)
            except ValueError as exc:
                fallback[kb] = f"layout model {key!r}: {exc}"
    group = _box_group(df)
    bbox = mf.bbox_array(df)
    box = {which: _box_calibration(ca.box_features(pts, val & keep[None], bbox), group)
           for which, keep in _box_points().items()}
    valid_share = {s: val[schemas == s].mean(0).tolist() for s in sorted(set(schemas))}
    return AuditModel(shapes, box, valid_share, fallback)


def _box_points() -> dict[str, np.ndarray]:
    """The point sets whose place in the box is calibrated: ``all`` the points, and the ``inner`` ones (off the
    contour): a face whose inner points sit in its box as usual, all of them not, has its contour off the box."""
    groups = np.asarray(get_layout(CANONICAL).groups, dtype=object)
    return {"all": np.ones(len(groups), bool), "inner": groups != CONTOUR}


def _box_group(df: pd.DataFrame) -> np.ndarray:
    return (df["source"].astype(str) + "|" + df["bbox_source"].astype(str)).to_numpy(object)


def _box_calibration(feats: np.ndarray, group: np.ndarray) -> dict:
    """Per box group (source and box kind), the median and robust scale of each box feature."""
    out = {}
    for g in sorted(set(group)):
        f = feats[group == g]
        ok = np.isfinite(f).all(1)
        if ok.sum() < 2:
            continue
        centre = np.median(f[ok], 0)
        scale = np.quantile(np.abs(f[ok] - centre), 0.9, axis=0) / 1.645
        out[g] = (centre.tolist(), np.maximum(scale, BOX_MIN_SCALE).tolist())
    return out


def _box_z(feats: np.ndarray, group: np.ndarray, calibration: dict) -> np.ndarray:
    """``(N,)`` the largest robust z of a face's box features against its group's calibration (NaN: none)."""
    z = np.full(len(feats), np.nan)
    for g in sorted(set(group)):
        if g in calibration:
            sel = group == g
            centre, scale = (np.asarray(v) for v in calibration[g])
            z[sel] = np.nanmax(np.abs(feats[sel] - centre) / scale, 1)
    return z


#: lower bound of a box feature's scale (a box made from the points themselves fits them exactly)
BOX_MIN_SCALE = np.array([0.02, 0.02, 0.02, 0.02, 0.01])


def model_for(am: AuditModel, schema: str, b: str) -> tuple[str, ca.ShapeModel]:
    for key in (f"{schema}|{b}", f"{schema}|{ALL_POSES}", POOLED):
        if key in am.shapes:
            return key, am.shapes[key]
    raise AuditError("no shape model")  # unreachable: '*' always exists


# --- pass 2: score --------------------------------------------------------------------------------------------------

def _mirror_keys(points: np.ndarray, valid: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape descriptors of each face and of its mirror image, ``(N, 12)`` each: the points in the frame of
    the outer eye corners (origin between them, x along them, IOD 1), projected on fixed directions."""
    lay = get_layout(CANONICAL)
    a, b = lay.norm_indices
    flip = np.asarray(lay.flip_indices)

    def desc(p):
        z = p[..., 0] + 1j * p[..., 1]
        za, zb = z[:, a], z[:, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            q = (z - ((za + zb) / 2)[:, None]) * (np.conj(zb - za) / np.abs(zb - za) ** 2)[:, None]
        v = np.concatenate([q.real, q.imag], 1)
        return np.nan_to_num(v, nan=0.0)

    mirrored = points[:, flip].copy()
    mirrored[..., 0] = -mirrored[..., 0]
    proj = np.random.default_rng(0).standard_normal((2 * lay.num_points, _KEY_DIMS)) / np.sqrt(2 * lay.num_points)
    both = valid & valid[:, flip]
    p1 = np.where(both[..., None], points, np.nan)
    p2 = np.where(both[:, flip][..., None], mirrored, np.nan)
    return (desc(p1) @ proj).astype(np.float32), (desc(p2) @ proj).astype(np.float32)


def _angle_diff(a, b):
    return np.abs((np.asarray(a, np.float64) - np.asarray(b, np.float64) + 180.0) % 360.0 - 180.0)


def score_frame(df: pd.DataFrame, am: AuditModel, face_model=None) -> tuple[pa.Table, dict]:
    """The raw signals of the faces of one manifest DataFrame (a slice, filtered), as a staged table."""
    face_model = face_model or load_face_model()
    n = len(df)
    lay = get_layout(CANONICAL)
    names = np.array(lay.names, dtype=object)
    pts = mf.landmarks_array(df).astype(np.float64)
    val = mf.valid_array(df) & np.isfinite(pts).all(-1)
    bbox = mf.bbox_array(df).astype(np.float64)
    schemas = df["source_schema"].astype(str).to_numpy(object)
    pose = _fit_pose(df, pts, val, face_model) if n else np.zeros((0, 3))
    bins = yaw_bin(pose[:, 1]) if n else np.zeros(0, object)
    degen = ca.degenerate(pts, val) if n else np.zeros(0, object)
    crossed = [o or None for o in ca.out_of_order(pts, val)] if n else []
    collapsed = [c or None for c in ca.collapsed_ends(pts, val, pose[:, 1])] if n else []
    point_z = np.full((n, lay.num_points), np.nan)
    resid = np.full((n, lay.num_points), np.nan)
    s_point, s_part, s_shift, s_thick, s_push, s_repair = (np.full(n, np.nan) for _ in range(6))
    part_name = np.full(n, None, object)
    part_shift = np.full(n, np.nan)
    contour_shift = np.full(n, np.nan)  # the evidence of a contour the box finding names (below)
    repair_name = np.full(n, None, object)
    repair_findings = np.full(n, None, object)
    model_key = np.full(n, None, object)
    keys = np.array([model_for(am, s, b)[0] for s, b in zip(schemas, bins, strict=True)], dtype=object)
    ok_face = np.array([d is None for d in degen], bool)
    for key in sorted(set(keys[ok_face])) if n else []:
        sel = np.flatnonzero((keys == key) & ok_face)
        m = am.shapes[key]
        sc = ca.score_shapes(pts[sel], val[sel], m)
        model_key[sel] = key
        point_z[sel] = sc.point_z
        resid[sel] = np.hypot(sc.residual[..., 0], sc.residual[..., 1])
        with np.errstate(invalid="ignore"):
            s_point[sel] = np.where(sc.scored, ca.point_signal(sc.point_z), np.nan)
            s_part[sel] = np.where(sc.scored, np.nanmax(np.nan_to_num(sc.part_rms, nan=-np.inf), 1), np.nan)
            sz = np.nan_to_num(sc.part_shift_z, nan=-np.inf)
            s_shift[sel] = np.where(sc.scored, sz.max(1), np.nan)
            th = np.nan_to_num(np.abs(sc.part_thickness_z), nan=-np.inf)
            s_thick[sel] = np.where(sc.scored & np.isfinite(th).any(1), th.max(1), np.nan)
            pu = np.nan_to_num(ca.push_z(sc.part_shift_z, sc.part_thickness_z), nan=-np.inf)
            s_push[sel] = np.where(sc.scored & np.isfinite(pu).any(1), pu.max(1), np.nan)
            s_repair[sel] = np.where(sc.scored, sc.repair_drop, np.nan)
        both = np.maximum.reduce([np.nan_to_num(sc.part_rms, nan=0), np.nan_to_num(sc.part_shift_z, nan=0),
                                  np.nan_to_num(np.abs(sc.part_thickness_z), nan=0)])
        j = both.argmax(1)
        part_name[sel] = np.array(sc.parts, dtype=object)[j]
        part_shift[sel] = np.linalg.norm(np.nan_to_num(sc.part_shift[np.arange(len(sel)), j]), axis=-1)
        if CONTOUR in sc.parts:
            contour_shift[sel] = np.linalg.norm(sc.part_shift[:, sc.parts.index(CONTOUR)], axis=-1)
        for i, r in zip(sel, sc.repair, strict=True):
            if r >= 0:
                repair_name[i] = sc.repairs[r].name
                repair_findings[i] = list(sc.repairs[r].findings)
    worst = []
    worst_iod = np.full(n, np.nan)
    single = np.zeros(n, bool)
    part_of = {int(i): p.indices for p in ca.outline_parts(lay) for i in p.indices}
    for i in range(n):
        z = point_z[i]
        if not np.isfinite(z).any():
            worst.append([])
            continue
        order = np.argsort(-np.nan_to_num(z, nan=-1))[:WORST_POINTS]
        k0 = int(order[0])
        rest = np.array([z[j] for j in part_of[k0] if j != k0 and np.isfinite(z[j])])
        rest_rms = float(np.sqrt(np.mean(rest ** 2))) if rest.size else 0.0
        single[i] = z[k0] >= max(POINT_FLAG, SINGLE_POINT_RATIO * rest_rms)
        order = [k for k in order if z[k] >= max(POINT_FLAG, 0.5 * np.nanmax(z))]
        worst.append([str(names[k]) for k in order])
        worst_iod[i] = resid[i, order[0]] if order else np.nan
    # box
    group = _box_group(df) if n else np.zeros(0, object)
    feats = {which: ca.box_features(pts, val & keep[None], bbox) if n else np.zeros((0, 5))
             for which, keep in _box_points().items()}
    s_box, s_box_inner = (_box_z(feats[w], group, am.box.get(w, {})) for w in ("all", "inner"))
    outside = feats["all"][:, 4] if n else np.zeros(0)
    # pose
    own = df["pose_source"].isin(["dataset", "model"]).to_numpy(bool) if n else np.zeros(0, bool)
    given = np.stack([pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64) for c in ("pitch", "yaw", "roll")],
                     1) if n else np.zeros((0, 3))
    diff = _angle_diff(given, pose)
    pose_diff = np.where(own & np.isfinite(diff).all(1), np.nan_to_num(diff).max(1), np.nan) if n else np.zeros(0)
    # eyes
    eye_bad = _eye_mismatch(df, pts, val) if n else np.zeros(0, bool)
    # mask
    mask_bad = np.zeros(n, bool)
    for s in sorted(set(schemas)):
        share = np.asarray(am.valid_share.get(s, np.ones(lay.num_points)))
        sel = schemas == s
        mask_bad[sel] |= (val[sel] & (share < MASK_RARE)[None]).any(1)
    mask_bad |= _stacked_points(pts, val)
    # mirror keys (faces with their own pose only)
    k1, k2 = _mirror_keys(pts, val, None) if n else (np.zeros((0, _KEY_DIMS)), np.zeros((0, _KEY_DIMS)))
    # models
    extra = {"images_missing": 0, "images_read": 0}
    cols_model = {}
    image_status = np.full(n, None, object)
    skipped = []
    if am.models and n:
        dists, image_status, skipped = _model_distances(df, pts, val, bbox, am)
        for j in range(len(am.models)):
            cols_model[f"model_{j}"] = dists[j]
        extra["images_read"] = int((image_status == "ok").sum())
        extra["images_missing"] = int((image_status != "ok").sum())
    cols = {
        "sample_id": pa.array(df["sample_id"].astype(str).to_numpy(object) if n else [], pa.string()),
        "source": pa.array(df["source"].astype(str).to_numpy(object) if n else [], pa.string()),
        "split": pa.array(df["split"].astype(str).to_numpy(object) if n else [], pa.string()),
        "image_path": pa.array(df["image_path"].astype(str).to_numpy(object) if n else [], pa.string()),
        "source_schema": pa.array(schemas if n else [], pa.string()),
        "shape_model": pa.array(model_key, pa.string()),
        "s_point": pa.array(s_point), "s_part": pa.array(s_part), "s_shift": pa.array(s_shift),
        "s_thickness": pa.array(s_thick), "s_push": pa.array(s_push),
        "s_repair": pa.array(s_repair),
        "s_box": pa.array(s_box), "s_box_inner": pa.array(s_box_inner), "s_pose": pa.array(pose_diff),
        "degenerate": pa.array(degen, pa.string()),
        "repair": pa.array(repair_name, pa.string()),
        "repair_findings": pa.array(repair_findings, pa.list_(pa.string())),
        "out_of_order": pa.array(crossed, pa.list_(pa.string())),
        "collapsed_ends": pa.array(collapsed, pa.list_(pa.string())),
        "worst_points": pa.array(worst, pa.list_(pa.string())),
        "worst_point_iod": pa.array(worst_iod, pa.float32()),
        "part": pa.array(part_name, pa.string()),
        "part_shift_iod": pa.array(part_shift, pa.float32()),
        "contour_shift_iod": pa.array(contour_shift, pa.float32()),
        "points_outside_box": pa.array(outside, pa.float32()),
        "fit_pitch": pa.array(pose[:, 0], pa.float32()), "fit_yaw": pa.array(pose[:, 1], pa.float32()),
        "fit_roll": pa.array(pose[:, 2], pa.float32()),
        "given_yaw": pa.array(np.where(own, given[:, 1], np.nan), pa.float32()),
        "given_roll": pa.array(np.where(own, given[:, 2], np.nan), pa.float32()),
        "eye_mismatch": pa.array(eye_bad), "mask_mismatch": pa.array(mask_bad), "single_point": pa.array(single),
        "point_z": _fixed(point_z, lay.num_points),
        "point_iod": _fixed(resid, lay.num_points),
        "key": _fixed(np.where(own[:, None], k1, np.nan), _KEY_DIMS),
        "key_mirror": _fixed(np.where(own[:, None], k2, np.nan), _KEY_DIMS),
        "image_status": pa.array(image_status, pa.string()),
    }
    for name, d in cols_model.items():
        cols[name] = _fixed(d, lay.num_points)
    extra["skipped"] = skipped
    return pa.table(cols), extra


def _fixed(a: np.ndarray, k: int) -> pa.Array:
    flat = pa.array(np.asarray(a, np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, k)


def _stacked_points(pts: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Faces with valid points of three groups or more on the very same coordinates (a placeholder, not a
    click: a closed mouth legitimately puts lip points of one group on one spot)."""
    groups = np.array(get_layout(CANONICAL).groups, dtype=object)
    out = np.zeros(len(pts), bool)
    # only faces with any exact repeat need a closer look
    flat = np.where(val[..., None], pts, np.nan)
    srt = np.sort(flat[..., 0] * 1e6 + flat[..., 1], axis=1)
    cand = np.flatnonzero((np.diff(srt, axis=1) == 0).any(1))
    for i in cand:
        p = pts[i][val[i]]
        g = groups[val[i]]
        _, inv, counts = np.unique(p, axis=0, return_inverse=True, return_counts=True)
        for u in np.flatnonzero(counts >= 3):
            if len(set(g[inv.reshape(-1) == u])) >= 3:
                out[i] = True
    return out


def _eye_mismatch(df: pd.DataFrame, pts: np.ndarray, val: np.ndarray) -> np.ndarray:
    """The stored eye state disagrees with the stored EARs (at their formula's threshold), or a stored
    8-point EAR disagrees with the canonical points' by more than :data:`EAR_TOL`."""
    n = len(df)
    state = df["eye_state"].astype(object).to_numpy(object)
    formula = df["ear_formula"].astype(object).to_numpy(object)
    ear = np.stack([pd.to_numeric(df["ear_left"], errors="coerce").to_numpy(np.float64),
                    pd.to_numeric(df["ear_right"], errors="coerce").to_numpy(np.float64)], 1)
    known = np.array([isinstance(s, str) and s != "unknown" for s in state], bool) & np.isfinite(ear).all(1)
    expect = eye_state(ear, thresholds_for(formula)) if n else np.zeros(0, object)
    bad = known & (expect != state)
    canon = eye_aspect_ratio(pts, val).astype(np.float64)
    w8 = np.array([f == "wflw8" for f in formula], bool)
    with np.errstate(invalid="ignore"):
        bad |= w8 & (np.abs(canon - ear) > EAR_TOL).any(1)
    return bad


def _model_distances(df, pts, val, bbox, am: AuditModel):
    """Per model ``(N, 98)`` distances (IOD of the label) between the labels and the model's predictions;
    the image status of each face (``ok``, ``missing``, ``unreadable``) and skipped records."""
    n = len(df)
    lay = get_layout(CANONICAL)
    a, b = lay.norm_indices
    iod = np.linalg.norm(pts[:, a] - pts[:, b], axis=-1)
    paths = mf.image_paths(df, am.roots)
    status = np.full(n, "ok", object)
    dists = [np.full((n, lay.num_points), np.nan) for _ in am.models]
    skipped = []
    by_image: dict = {}
    for i, p in enumerate(paths):
        by_image.setdefault(str(p) if p is not None else None, []).append(i)
    for path, rows in by_image.items():
        if path is None or not Path(path).is_file():
            status[rows] = "missing"
            skipped += [{"sample_id": str(df["sample_id"].iloc[i]), "image": path, "reason": "image not found; "
                         "image signals skipped"} for i in rows]
            continue
        for j, spec in enumerate(am.models):
            model = _model(spec, am.device)
            try:
                pred = model_points(model, spec, path, bbox[rows])
            except AuditError:
                raise
            except LandmarkUnifyError as exc:
                status[rows] = "unreadable"
                skipped += [{"sample_id": str(df["sample_id"].iloc[i]), "image": path,
                             "reason": f"image unreadable ({exc}); image signals skipped"} for i in rows]
                break
            d = np.linalg.norm(pred - pts[rows], axis=-1) / iod[rows, None]
            dists[j][rows] = np.where(val[rows], d, np.nan)
    return dists, status, skipped


#: faces scored at once within a unit: the scoring's (N, 98) arrays are bounded by this, not by the unit
SCORE_CHUNK = 8192


def _score_task(am: AuditModel, staging: str, index: int, unit: mf.RowSlice):
    t0 = time.perf_counter()
    df = _read_frame(unit, am.where)
    path = Path(staging) / f"part-{index:06d}.parquet"
    read = missing = rows = 0
    skipped: list = []
    writer = None
    try:
        for start in range(0, max(len(df), 1), SCORE_CHUNK):  # each face is scored alone: chunks change nothing
            table, extra = score_frame(df.iloc[start:start + SCORE_CHUNK], am)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            read, missing, rows = read + extra["images_read"], missing + extra["images_missing"], rows + table.num_rows
            skipped += extra["skipped"]
    finally:
        if writer is not None:
            writer.close()
    return {"index": index, "path": str(path), "rows": rows, "seconds": time.perf_counter() - t0,
            "images_read": read, "images_missing": missing, "skipped": skipped}


# --- pass 3: assemble -------------------------------------------------------------------------------------------------

#: smallest scale of each signal in calibration, in the signal's own units (the shape and box signals are
#: z-scores already, the pose in degrees, the model a ratio to its typical error): a signal that is nearly
#: constant on the audited faces (a box made from the points themselves) must not turn noise into alarms
SIGNAL_MIN_SCALE = {**dict.fromkeys(SHAPE_SIGNALS, 1.0), "box": 1.0, "pose": 2.0, "model": 0.25}


#: a source layout with fewer audited faces is calibrated against all the faces
MIN_CALIBRATION_FACES = 30
#: signals calibrated by their MAD alone (light-tailed: a median over the face's points), robust to many
#: faces being wrong (a whole batch shifted): the upper-tail scale is for the heavy-tailed shape signals
MAD_SIGNALS = ("model",)


def calibrate(values: np.ndarray, groups: np.ndarray, min_scale: float = 0.0, tail: bool = True) -> np.ndarray:
    """Robust z-scores of a signal per group: ``(x - median) / scale`` with the scale from the upper tail
    (90th percentile minus the median, over 1.2816: a normal's), so a heavy-tailed signal is not over-read,
    never below 1.4826 MAD or ``min_scale`` (``tail=False``: the MAD alone). A group of fewer than
    :data:`MIN_CALIBRATION_FACES` faces is calibrated against all of them. NaN stays NaN."""
    out = np.full(len(values), np.nan)

    def centre_scale(v):
        med = np.median(v)
        scale = (np.quantile(v, 0.9) - med) / 1.2816 if tail else 0.0
        mad = 1.4826 * np.median(np.abs(v - med))
        return med, max(scale, mad, min_scale, 1e-9)

    fin = np.isfinite(values)
    if fin.sum() < 2:
        return out
    pooled = centre_scale(values[fin])
    for g in sorted(set(groups), key=str):
        sel = (groups == g) & fin
        # a group too small to have a distribution of its own is read against all the faces
        med, scale = centre_scale(values[sel]) if sel.sum() >= MIN_CALIBRATION_FACES else pooled
        out[sel] = (values[sel] - med) / scale
    return out


def _flip_pairs(key: np.ndarray, key_mirror: np.ndarray, yaw: np.ndarray, roll: np.ndarray, ids: np.ndarray):
    """Faces of a mirrored pair whose yaw and roll are not negated: ``{row: partner sample_id}``."""
    from scipy.spatial import cKDTree

    has = np.isfinite(key).all(1) & np.isfinite(key_mirror).all(1)
    rows = np.flatnonzero(has)
    out = {}
    if rows.size < 2:
        return out
    tree = cKDTree(key[rows].astype(np.float64))
    tol = MIRROR_TOL * np.sqrt(_KEY_DIMS / (2 * 98)) * 3
    hits = tree.query_ball_point(key_mirror[rows].astype(np.float64), r=tol)
    for ia, cand in enumerate(hits):
        a = rows[ia]
        for ib in cand:
            b = rows[ib]
            if b == a:
                continue
            bad = (abs(yaw[a] + yaw[b]) > MIRROR_POSE_TOL) or (abs(roll[a] + roll[b]) > MIRROR_POSE_TOL)
            if bad:
                out.setdefault(a, str(ids[b]))
    return out


AUDIT_SCHEMA_COLUMNS = (
    "sample_id", "rank", "suspicion", "findings", "point_suspicion", "source", "split", "image_path",
    "source_schema", "shape_model", "worst_points", "worst_point_iod", "part", "part_shift_iod", "repair",
    "out_of_order", "collapsed_ends", "points_outside_box", "pose_diff_deg", "fit_pitch", "fit_yaw", "fit_roll", "mirror_of",
    "image_status", "model_error_iod", *[f"z_{s}" for s in SIGNALS])


def assemble(parts: Sequence[str], output: str | os.PathLike, metadata: Mapping, models: Sequence[str] = ()) -> dict:
    """Calibrate, name the findings, rank, and write the audit output from the staged parts."""
    small = ["source_schema", *[f"s_{s}" for s in SHAPE_SIGNALS], "s_box", "s_box_inner", "s_pose", "degenerate", "repair",
             "repair_findings", "out_of_order", "collapsed_ends", "eye_mismatch", "mask_mismatch", "given_yaw", "given_roll", "key",
             "key_mirror", "sample_id", "single_point"]
    tabs = [pq.read_table(p, columns=small) for p in parts]
    t = pa.concat_tables(tabs) if tabs else None
    n = t.num_rows if t is not None else 0
    if n == 0:
        raise AuditError("no faces to audit (the input, or the rows --where keeps, is empty)")
    groups = t.column("source_schema").to_numpy(zero_copy_only=False).astype(object)
    z = {}
    for s in (*SHAPE_SIGNALS, "box"):
        z[s] = calibrate(t.column(f"s_{s}").to_numpy(zero_copy_only=False).astype(np.float64), groups,
                         SIGNAL_MIN_SCALE[s])
    # the box signal's finding: where the points off the contour sit in the box as the other faces' do, what
    # leaves the box is the contour (a shifted group), not the face (another face's points, a box off them)
    z_inner = calibrate(t.column("s_box_inner").to_numpy(zero_copy_only=False).astype(np.float64), groups,
                        SIGNAL_MIN_SCALE["box"])
    contour_off = np.isfinite(z_inner) & (z_inner < INNER_BOX_Z)
    shape_flag = np.nan_to_num(np.stack([z[s] for s in SHAPE_SIGNALS], 1), nan=0.0).max(1) >= FLAG_Z
    box_flag = np.nan_to_num(z["box"], nan=0.0) >= FLAG_Z
    contour_named = box_flag & contour_off & ~shape_flag  # the box finding names the part: the contour
    pose_diff = t.column("s_pose").to_numpy(zero_copy_only=False).astype(np.float64)
    z["pose"] = calibrate(pose_diff, groups, SIGNAL_MIN_SCALE["pose"])
    # models: each point's distance over that model's typical distance at the point (median over the faces)
    model_err = np.full(n, np.nan)
    model_pz = np.full((n, 98), np.nan) if models else None  # (N, 98) only where models score points
    z["model"] = np.full(n, np.nan)
    if models:
        face_stats = []
        for j in range(len(models)):
            d = np.concatenate([mf.fixed_to_numpy(pq.read_table(p, columns=[f"model_{j}"]).column(f"model_{j}"),
                                                  (98,), np.float32) for p in parts]).astype(np.float64)
            with np.errstate(invalid="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    typical = ca.nan_median(d, 0)
                    pz = d / np.maximum(typical, 1e-6)
                    model_pz = np.fmax(model_pz, pz)
                    face_stats.append(ca.nan_median(pz, 1))
                    model_err = np.fmax(model_err, ca.nan_median(d, 1))
        with np.errstate(invalid="ignore"):
            fs = np.nanmin(np.stack(face_stats), 0) if len(face_stats) > 1 else face_stats[0]
        z["model"] = calibrate(fs, np.zeros(n, object), SIGNAL_MIN_SCALE["model"], tail="model" not in MAD_SIGNALS)
    zs = np.stack([z[s] for s in SIGNALS], 1)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            susp = np.nanmax(zs, 1)
    susp = np.nan_to_num(susp, nan=0.0)
    degen = t.column("degenerate").to_pylist()
    top = max(DEGENERATE_SUSPICION, float(susp.max()) + 1.0)
    rep = t.column("repair_findings").to_pylist()
    crossed = t.column("out_of_order").to_pylist()
    collapsed = t.column("collapsed_ends").to_pylist()
    eye = t.column("eye_mismatch").to_numpy(zero_copy_only=False)
    mask = t.column("mask_mismatch").to_numpy(zero_copy_only=False)
    single = t.column("single_point").to_numpy(zero_copy_only=False)
    ids = t.column("sample_id").to_numpy(zero_copy_only=False).astype(object)
    key = mf.fixed_to_numpy(t.column("key"), (_KEY_DIMS,), np.float32)
    keym = mf.fixed_to_numpy(t.column("key_mirror"), (_KEY_DIMS,), np.float32)
    gy = t.column("given_yaw").to_numpy(zero_copy_only=False).astype(np.float64)
    gr = t.column("given_roll").to_numpy(zero_copy_only=False).astype(np.float64)
    flips = _flip_pairs(key, keym, gy, gr, ids)
    findings = []
    for i in range(n):
        f = []
        if degen[i] is not None:
            f.append("degenerate")
            susp[i] = top
        zi = {s: np.nan_to_num(z[s][i], nan=0.0) for s in SIGNALS}
        if shape_flag[i] and rep[i]:
            f += rep[i]
        elif shape_flag[i] or contour_named[i]:
            f.append("outlier_point" if shape_flag[i] and single[i] else "shifted_group")
        if box_flag[i] and not contour_off[i]:
            f.append("wrong_face")
        if zi["pose"] >= FLAG_Z and pose_diff[i] >= MIN_POSE_DIFF:
            f.append("pose_mismatch")
        if i in flips:
            f.append("flip_pose")
        if eye[i]:
            f.append("eye_state_mismatch")
        if mask[i]:
            f.append("mask_mismatch")
        if zi["model"] >= FLAG_Z:
            f.append("model_disagreement")
        if crossed[i]:
            f.append("swapped_left_right")
        if collapsed[i]:
            f.append("collapsed_ends")
        if set(f) & {"flip_pose", "eye_state_mismatch", "mask_mismatch"} or crossed[i] or collapsed[i]:
            susp[i] = max(susp[i], RULE_SUSPICION)
        findings.append([x for x in FINDINGS if x in f])
    order = np.lexsort((np.arange(n), -susp))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(1, n + 1)
    counts = {k: int(sum(k in f for f in findings)) for k in FINDINGS}
    meta = dict(metadata)
    meta["audit_counts"] = {"faces": n, "flagged": int((susp >= FLAG_Z).sum()), **counts}
    schema_meta = {b"landmark_unify_audit": json.dumps(meta, sort_keys=True, default=str).encode()}
    out = Path(output)
    off = 0
    with atomic_path(out) as tmp:
        writer = None
        try:
            for p in parts:
                part = pq.read_table(p)
                m = part.num_rows
                sl = slice(off, off + m)
                pz = mf.fixed_to_numpy(part.column("point_z"), (98,), np.float32).astype(np.float64)
                pz = np.fmax(pz, model_pz[sl]) if models else pz
                cols = {
                    "sample_id": part.column("sample_id"),
                    "rank": pa.array(rank[sl]),
                    "suspicion": pa.array(susp[sl]),
                    "findings": pa.array(findings[sl], pa.list_(pa.string())),
                    "point_suspicion": _fixed(pz, 98),
                    "source": part.column("source"), "split": part.column("split"),
                    "image_path": part.column("image_path"), "source_schema": part.column("source_schema"),
                    "shape_model": part.column("shape_model"), "worst_points": part.column("worst_points"),
                    "worst_point_iod": part.column("worst_point_iod"), "part": pa.array(np.where(contour_named[sl], CONTOUR,
                                                       part.column("part").to_numpy(zero_copy_only=False)), pa.string()),
                    "part_shift_iod": pa.array(np.where(contour_named[sl], part.column("contour_shift_iod").to_numpy(),
                                                        part.column("part_shift_iod").to_numpy()), pa.float32()),
                    "repair": part.column("repair"),
                    "out_of_order": part.column("out_of_order"),
                    "collapsed_ends": part.column("collapsed_ends"),
                    "points_outside_box": part.column("points_outside_box"),
                    "pose_diff_deg": pa.array(pose_diff[sl], pa.float32()),
                    "fit_pitch": part.column("fit_pitch"), "fit_yaw": part.column("fit_yaw"),
                    "fit_roll": part.column("fit_roll"),
                    "mirror_of": pa.array([flips.get(i) for i in range(off, off + m)], pa.string()),
                    "image_status": part.column("image_status"),
                    "model_error_iod": pa.array(model_err[sl], pa.float32()),
                }
                for s in SIGNALS:
                    cols[f"z_{s}"] = pa.array(z[s][sl], pa.float32())
                table = pa.table(cols).replace_schema_metadata(schema_meta)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                off += m
        finally:
            if writer is not None:
                writer.close()
    return meta["audit_counts"]


# --- the operation ------------------------------------------------------------------------------------------------------

@dataclass
class AuditResult:
    output: Path
    faces: int
    counts: dict
    skipped: list
    images_read: int
    images_missing: int
    fallback: dict
    seconds: dict

    def summary(self) -> str:
        found = ", ".join(f"{k} {v}" for k, v in self.counts.items() if k in FINDINGS and v)
        img = (f"; images: {self.images_read} faces scored by the models, {self.images_missing} without a readable "
               "image (image signals skipped)") if (self.images_read or self.images_missing) else ""
        return (f"{self.output}: {self.faces} faces audited, {self.counts.get('flagged', 0)} flagged (suspicion >= "
                f"{FLAG_Z:g}){': ' + found if found else ''}{img}")


@transactional
def audit_manifest(input: str | os.PathLike, output: str | os.PathLike, *, where=None,
                   models: Sequence[str] = (), device: str = "cpu", fit_sample: int | None = FIT_SAMPLE,
                   on_error: str = "raise", overwrite: bool = False, command: str | None = None,
                   run: RunOptions | None = None, **engine) -> AuditResult:
    """Audit the faces of ``input`` (file or dataset) and write one row per face to ``output`` (.parquet);
    see the module docstring and ``docs/spec/audit.md``. ``models``: landmark model specs
    (:func:`load_landmark_model`), checked before anything is scored. ``on_error``: with ``raise`` a face
    whose image is missing or unreadable (with ``models``) stops the audit; with ``skip`` its image signals
    are skipped, and it is counted and listed in ``OUT.skipped.jsonl``. ``where``: a row filter (text or a
    parsed Filter). run: the engine settings (:class:`~landmark_unify.engines.RunOptions`, or its fields as
    keywords)."""
    opts = RunOptions.of(run, **engine)
    if on_error not in ON_ERROR:
        raise AuditError(f"unknown on_error {on_error!r}; valid: {list(ON_ERROR)}")
    if not str(output).endswith(".parquet"):
        raise AuditError(f"{output}: the audit output is one Parquet file (name it .parquet)")
    current().file(output, inputs=[input], overwrite=overwrite)
    if isinstance(where, str):
        where = parse_filter(where, mf.COLUMN_NAMES)  # parsed once; a bad filter fails before any work
    for spec in models:
        _model(spec, device)  # a bad model or layout fails here, before any work
    t0 = time.perf_counter()
    slices, in_meta = mf.plan_slices(input, opts.rows_per_partition)
    roots = _absolute_roots(in_meta, input)
    frames = _fit_frames(slices, fit_sample, where)
    am = fit_audit_model(frames)
    del frames
    am.where, am.models, am.device, am.roots, am.on_error = where, tuple(models), device, roots, on_error
    seconds = {"fit": time.perf_counter() - t0}
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = owned_name(out, "audit")
    staging.mkdir()
    results = []
    try:
        t1 = time.perf_counter()
        bar = Progress(total=sum(s.length for s in slices), desc=out.name, unit="faces", enabled=opts.progress)
        task = partial(_score_task, am, str(staging))
        with opts.start() as eng:
            for _, res in eng.map(task, slices, lambda i: slices[i].describe()):
                results.append(res)
                bar.update(slices[res["index"]].length)
        bar.close()
        results.sort(key=lambda r: r["index"])
        seconds["score"] = time.perf_counter() - t1
        skipped = [s for r in results for s in r["skipped"]]
        if skipped and on_error == "raise":
            first = skipped[0]
            raise AuditError(f"{first['image']}: {first['reason'].split(';')[0]} (sample {first['sample_id']}; "
                             f"{len(skipped)} faces without a readable image). Pass --on-error skip to audit them "
                             "without image signals")
        t2 = time.perf_counter()
        meta = {"command": command, "input": str(input), "where": getattr(where, "text", where),
                "models": [m if isinstance(m, str) else getattr(m, "name", repr(m)) for m in models],
                "flag_z": FLAG_Z, "findings": list(FINDINGS), **am.describe()}
        counts = assemble([r["path"] for r in results], out, meta, models)
        seconds["assemble"] = time.perf_counter() - t2
        from ..io import write_sidecar
        from ..manifest import skipped_path_for

        write_sidecar(skipped, skipped_path_for(out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AuditResult(out, counts["faces"], counts, skipped, sum(r["images_read"] for r in results),
                       sum(r["images_missing"] for r in results), am.fallback, seconds)


def _absolute_roots(meta: Mapping, input) -> dict:
    base = Path(input)
    base = base if base.is_dir() else base.parent
    out = {}
    for k, v in meta.get("source_roots", {}).items():
        p = Path(v)
        out[k] = str(p if p.is_absolute() else (base / p).resolve())
    return out


def read_audit(path: str | os.PathLike) -> pd.DataFrame:
    """An audit output as a DataFrame (``attrs["audit"]``: its metadata)."""
    t = pq.read_table(path)
    df = t.to_pandas()
    raw = (t.schema.metadata or {}).get(b"landmark_unify_audit")
    df.attrs["audit"] = json.loads(raw) if raw else {}
    return df


def print_summary(res: AuditResult) -> None:
    print(res.summary(), file=sys.stderr)
    for key, why in sorted(res.fallback.items()):
        print(f"note: shape model {key}: {why}", file=sys.stderr)


def draw_suspects(manifest_path, audit_path, *, sheet=None, html_dir=None, n: int = 36, size: int = 192) -> dict:
    """The top ``n`` suspects of an audit drawn from the audited manifest (:mod:`landmark_unify.report.suspects`)."""
    from ..report.suspects import write_suspects

    audit = read_audit(audit_path)
    top = set(audit.nsmallest(n, "rank")["sample_id"])
    meta = mf.read_metadata(manifest_path) if not Path(manifest_path).is_dir() else \
        mf.read_dataset_info(manifest_path)["metadata"]
    rows = []
    for s in mf.plan_slices(manifest_path)[0]:
        df = mf.dataframe_from_table(mf.read_slice(s))
        rows.append(df[df["sample_id"].isin(top)])
    manifest = pd.concat(rows, ignore_index=True)
    return write_suspects(audit, manifest, roots=_absolute_roots(meta, manifest_path), sheet=sheet,
                          html_dir=html_dir, n=n, size=size)
