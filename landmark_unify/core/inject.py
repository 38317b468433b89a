"""Annotation errors of known type and size, injected into canonical faces: what the audit is measured and
tested on (``benchmarks/bench_audit.py``, ``docs/figures/audit.md``). Sizes are in inter-ocular distances
(IOD, outer eye corners) of the face itself; directions along an outline are the face's own (its points'
neighbours along the outline, :func:`landmark_unify.core.audit.outline_parts`).
"""
from __future__ import annotations

import numpy as np

from .audit import outline_parts
from .layouts import CANONICAL, get_layout

#: a point whose two neighbours along its outline lie closer to each other than this share of the path
#: from one to the other through the point is a cusp: the outline turns back on itself there (more than
#: about 170 degrees: the corner of a closed mouth's inner lip, of a closed eye) and has no direction
CUSP_RATIO = 0.1

#: the injection kinds of :func:`inject`
KINDS = ("swap_face", "swap_pair", "swap_ends", "shift_normal", "shift_tangent", "move_point", "reverse",
         "other_face", "box_off", "translate", "scale", "move_part", "rotate_part", "scale_part", "swap_points")
#: the finding the audit should name for each kind
EXPECTED = {"swap_face": "swapped_left_right", "swap_pair": "swapped_left_right", "swap_ends": "swapped_left_right",
            "shift_normal": "shifted_group", "shift_tangent": None, "move_point": "outlier_point",
            "reverse": "reversed_order", "other_face": "wrong_face", "box_off": "wrong_face",
            "translate": "model_disagreement", "scale": "model_disagreement", "move_part": "shifted_group",
            "rotate_part": "shifted_group", "scale_part": "shifted_group", "swap_points": None}


def iod(points: np.ndarray, layout: str = CANONICAL) -> np.ndarray:
    a, b = get_layout(layout).norm_indices
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def _part(name: str, layout: str):
    for p in outline_parts(layout):
        if p.name == name:
            return p
    raise ValueError(f"no part {name!r} in layout {layout!r}")


def part_frame(points: np.ndarray, part_name: str, layout: str = CANONICAL) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals and tangents ``(n, 2)`` of one face's part points, from their neighbours along the part
    (outward for a loop and for an open part: away from the face's centre). Invalid (NaN) points get NaN
    and are skipped: the frame of a mapped face's valid run (the upper brow of a 68-point face) comes from
    its valid neighbours. At a cusp (:data:`CUSP_RATIO`: the corner of a closed mouth's inner lip, whose
    neighbours on the upper and lower halves lie together; an inner lip stacked on one spot) the outline has
    no direction, and the difference of the neighbours is noise: the normal is the outward direction and the
    tangent is zero (a slide along the outline leaves the point in place)."""
    p = _part(part_name, layout)
    q_all = points[p.indices]
    ok = np.isfinite(q_all).all(1)
    q = q_all[ok]
    nrm_all = np.full(q_all.shape, np.nan)
    tan_all = np.full(q_all.shape, np.nan)
    if len(q) < 2:
        return nrm_all, tan_all
    if p.closed and ok.all():
        nxt, prv = np.roll(q, -1, 0), np.roll(q, 1, 0)
        ref = q - q.mean(0)
    else:  # an open part, or the valid run of a loop (a mapped face's upper brow): neighbours along the run
        nxt, prv = np.concatenate([q[1:], q[-1:]]), np.concatenate([q[:1], q[:-1]])
        ref = q - (q.mean(0) if p.closed else np.nanmean(points, 0))
    t = nxt - prv
    tl = np.linalg.norm(t, axis=1, keepdims=True)
    rl = np.linalg.norm(ref, axis=1, keepdims=True)
    path = np.linalg.norm(nxt - q, axis=1) + np.linalg.norm(q - prv, axis=1)
    # at a cusp the outward direction is the normal, and there is no direction along the outline
    flat = ((tl[:, 0] <= CUSP_RATIO * path) & (rl[:, 0] > 0))[:, None]
    t = np.where(flat, 0.0, t / np.maximum(tl, 1e-12))
    nrm = np.stack([t[:, 1], -t[:, 0]], 1)
    nrm = np.where((nrm * ref).sum(1, keepdims=True) < 0, -nrm, nrm)
    nrm_all[ok] = np.where(flat, ref / np.maximum(rl, 1e-12), nrm)
    tan_all[ok] = t
    return nrm_all, tan_all


def inject(points: np.ndarray, bbox: np.ndarray, kind: str, *, size: float = 0.0, part: str | None = None,
           point: int | None = None, angle: float = 0.0, other: np.ndarray | None = None,
           layout: str = CANONICAL) -> tuple[np.ndarray, np.ndarray]:
    """One face ``points`` (K, 2) and its ``bbox`` (4,) with one error of ``kind`` (:data:`KINDS`):

    - ``swap_face``: every point takes its mirror's label; ``swap_pair``: the points of ``part`` and of its
      mirror part exchange labels (an eye or a brow); ``swap_ends``: a loop ``part`` with its ends exchanged;
    - ``shift_normal`` / ``shift_tangent``: each point of ``part`` moved ``size`` IOD along its outline's
      normal / tangent; ``move_point``: point ``point`` moved ``size`` IOD at ``angle`` radians;
    - ``reverse``: ``part`` in reversed order; ``other_face``: the points are ``other`` (another face's),
      the box stays; ``box_off``: the box moved by ``size`` box widths (default 1, off the points);
    - ``translate`` / ``scale``: the whole face moved right by ``size`` IOD / scaled by ``1 + size`` about its
      centre, box included (a plausible shape in the wrong place: only an image shows it);
    - ``move_part``: ``part`` moved ``size`` IOD at ``angle`` radians; ``rotate_part`` / ``scale_part``:
      ``part`` turned (the sign of ``size`` gives the sense) / scaled up (``size`` > 0) or down about the
      centroid of its valid points, so that its farthest point moves ``|size|`` IOD (each kind's size is the
      largest displacement it makes; a part is turned half a turn and scaled down to a tenth at most);
      ``swap_points``: the valid point ``point`` of ``part`` and the next valid one along it exchange labels.
    Invalid points are NaN and stay where their labels take them: a face mapped from another layout keeps
    its valid points valid (a shift moves the valid ones, a reversal reverses the valid run of the part).
    Returns new arrays."""
    lay = get_layout(layout)
    p = np.array(points, np.float64)
    b = np.array(bbox, np.float64)
    d = float(size) * float(iod(p, layout))
    if kind == "swap_face":
        p = p[lay.flip_indices]
    elif kind == "swap_pair":
        a = _part(part, layout)
        flip = np.asarray(lay.flip_indices)
        mates = flip[a.indices]
        both = np.concatenate([a.indices, mates])
        p[both] = p[flip[both]]
    elif kind == "swap_ends":
        a = _part(part, layout)
        n = len(a.indices)
        p[a.indices] = p[a.indices[(n // 2 - np.arange(n)) % n]]
    elif kind in ("shift_normal", "shift_tangent"):
        a = _part(part, layout)
        nrm, tan = part_frame(p, part, layout)
        p[a.indices] += np.nan_to_num(d * (nrm if kind == "shift_normal" else tan))
    elif kind == "move_point":
        p[point] += d * np.array([np.cos(angle), np.sin(angle)])
    elif kind == "reverse":
        a = _part(part, layout)
        run = a.indices[np.isfinite(p[a.indices]).all(1)]  # a mapped face: its valid points among themselves
        p[run] = p[run[::-1]]
    elif kind in ("move_part", "rotate_part", "scale_part"):
        idx = _part(part, layout).indices
        idx = idx[np.isfinite(p[idx]).all(1)]
        if kind == "move_part":
            p[idx] += d * np.array([np.cos(angle), np.sin(angle)])
        else:
            c = p[idx].mean(0)
            reach = float(np.linalg.norm(p[idx] - c, axis=1).max())
            if reach > 0:
                step = abs(d) / reach  # the farthest point moves |d|: a chord of 2 sin(a/2), a radius change of s
                if kind == "rotate_part":
                    a = 2 * np.arcsin(min(step, 2.0) / 2) * np.sign(size)
                    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                    p[idx] = c + (p[idx] - c) @ rot.T
                else:
                    p[idx] = c + (p[idx] - c) * (1 + step if size > 0 else 1 - min(step, 0.9))
    elif kind == "swap_points":
        idx = _part(part, layout).indices
        idx = idx[np.isfinite(p[idx]).all(1)]
        j = int(np.flatnonzero(idx == point)[0]) if point in idx else 0
        pair = [idx[j], idx[(j + 1) % len(idx)]]
        p[pair] = p[pair[::-1]]
    elif kind == "other_face":
        p = np.array(other, np.float64)
    elif kind == "box_off":
        w = b[2] - b[0]
        b = b + (size or 1.0) * w * np.array([1, 0, 1, 0])
    elif kind == "translate":
        p[..., 0] += d
        b = b + d * np.array([1, 0, 1, 0])
    elif kind == "scale":
        c = np.nanmean(p, 0)
        p = c + (p - c) * (1 + size)
        bc = (b[:2] + b[2:]) / 2
        b = np.concatenate([bc + (b[:2] - bc) * (1 + size), bc + (b[2:] - bc) * (1 + size)])
    else:
        raise ValueError(f"unknown injection {kind!r}; valid: {KINDS}")
    return p.astype(np.float32), b.astype(np.float32)
