"""Build the shipped mean 3D face from MediaPipe's canonical face mesh.

    python tools/build_mediapipe_face.py [--obj ../shared/data/face_mesh_canonical/canonical_face_model.obj]

Writes ``landmark_unify/face_models/mediapipe_face98.npz`` (the 98 canonical points of the mesh, their surface
normals and the fit's calibration) and ``docs/figures/images/pose_mediapipe_correspondence.png`` (the mesh vertices chosen
for each of the 98 points). The mesh is Apache-2.0 (``landmark_unify/face_models/LICENSE_mediapipe.txt``).

The correspondence is chosen by anatomy, by point name (``CORRESPONDENCE``): image-left half only, the right half
is its mirror image in the (exactly symmetric) mesh. The contour follows the mesh's face oval from ear level to
the chin, 17 points per side at equal arc length (WFLW places its 33 contour points evenly along the outline);
each such point lies on an oval edge, between two vertices. Pupils have no vertex in the 468-point mesh.

The calibration (``DEPTH_SCALE``, ``GROUP_WEIGHTS``, ``OCCLUDED_WEIGHT``) was chosen by 5-fold cross-validation
on the AFLW2000-3D dev half (hand-annotated 68 points, ``benchmarks/pose_aflw2000_dev.py``; docs/guides/pose.md).

The file also holds the face for *model-projected* points (``points98_projected``): the points of sources whose
68 landmarks are projections of a fitted 3D face (300W-LP ``pt2d``, AFLW2000-3D ``pt3d_68``; schema
``ibug68_3d``) are the vertices of that model, not what a human would click, and the MediaPipe face calibrated
for human annotation fits them less well. :func:`projected_face` is the mean of the AFLW2000-3D dev half's
``pt3d_68`` labels (3DDFA release, MIT, ``LICENSE-labels-3DDFA`` beside them; notice in
``landmark_unify/face_models/LICENSE_3DDFA_labels.txt``), each face similarity-aligned in 3D, expressed in the
frame of the 3DDFA mean shape (``mean3d_68.npz``, ``3ddfa_bfm_raw``), which is the frame the labels' pose
angles are measured in. Only that mean (43 points and the jaw) is shipped; ``benchmarks/pose_projected_dev.py``
measures it with 5-fold CV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from landmark_unify.core.layouts import get_layout  # noqa: E402
from landmark_unify.report.colors import group_legend_items, point_colours, with_legend  # noqa: E402

OBJ = REPO.parent / "shared" / "data" / "face_mesh_canonical" / "canonical_face_model.obj"
OUT = REPO / "landmark_unify" / "face_models" / "mediapipe_face98.npz"
PICTURE = REPO / "docs" / "figures" / "images" / "pose_mediapipe_correspondence.png"
DEV = REPO.parent / "shared" / "data" / "AFLW2000-3D_dev" / "aflw2000_3d_dev.npz"
MEAN3D = REPO.parent / "shared" / "data" / "mean3d_68" / "mean3d_68.npz"
#: Faces with any |angle| above this are left out of the projected face's mean (the AFLW2000-3D convention).
MAX_ANGLE = 99.0

#: Depth (model z) scale of the mesh: hand-annotated 2D landmarks read |yaw| ~1.5 degrees too large with the
#: mesh as it is; 1.2 removes that bias below 60 degrees (CV on the AFLW2000-3D dev half).
DEPTH_SCALE = 1.2
#: Prior weight of each point group for 2D sources (multiplies the fit's outline-contour weights):
#: brows 3, nose 0.5 (CV on the dev half).
GROUP_WEIGHTS = {"brow": 3.0, "nose": 0.5}
#: Weight factor of a point whose surface normal faces away from the camera at the first fit's pose
#: (self-occluded: annotators put it on the visible outline instead); the fit is then run again.
OCCLUDED_WEIGHT = 0.1

#: Face oval of the mesh, image-left half, from ear level down to the chin.
OVAL_LEFT = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)
#: Canonical point name -> mesh vertex, image-left half and midline (x <= 0).
CORRESPONDENCE = {
    # brow: outer end, upper edge to the inner end, lower edge from the inner end back out
    "brow_l_upper_0": 70, "brow_l_upper_1": 63, "brow_l_upper_2": 105, "brow_l_upper_3": 66, "brow_l_upper_4": 107,
    "brow_l_lower_0": 55, "brow_l_lower_1": 65, "brow_l_lower_2": 52, "brow_l_lower_3": 53,
    # nose bridge from between the eyes (eye-corner height) to the tip (the most forward vertex), evenly
    "nose_bridge_0": 6, "nose_bridge_1": 197, "nose_bridge_2": 5, "nose_bridge_3": 4,
    # nose base: alar base, nostril, subnasale
    "nose_base_l_1": 98, "nose_base_l_0": 97, "nose_base_c": 2,
    # eye: corners, and the lid vertices at a quarter, half and three quarters of each lid
    "eye_l_outer": 33, "eye_l_upper_0": 161, "eye_l_upper_1": 159, "eye_l_upper_2": 157, "eye_l_inner": 133,
    "eye_l_lower_2": 154, "eye_l_lower_1": 145, "eye_l_lower_0": 163,
    # outer lip: corner, upper lip (a third of the way, Cupid's bow peak, centre), lower lip
    "lip_outer_l": 61, "lip_outer_upper_l_1": 40, "lip_outer_upper_l_0": 37, "lip_outer_upper_c": 0,
    "lip_outer_lower_c": 17, "lip_outer_lower_l_0": 84, "lip_outer_lower_l_1": 91,
    # inner lip
    "lip_inner_l": 78, "lip_inner_upper_l": 81, "lip_inner_upper_c": 13, "lip_inner_lower_c": 14,
    "lip_inner_lower_l": 178,
}


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts, faces = [], []
    for line in Path(path).read_text().splitlines():
        p = line.split()
        if p and p[0] == "v":
            verts.append([float(t) for t in p[1:4]])
        elif p and p[0] == "f":
            faces.append([int(t.split("/")[0]) - 1 for t in p[1:4]])
    return np.array(verts), np.array(faces)


def mirror_vertices(v: np.ndarray) -> np.ndarray:
    """Index of each vertex's mirror image (x -> -x); the canonical mesh is exactly symmetric."""
    d = ((v[:, None] - v[None] * np.array([-1.0, 1.0, 1.0])) ** 2).sum(-1)
    m = d.argmin(1)
    if d[np.arange(len(v)), m].max() > 1e-8:
        raise SystemExit("the mesh is not left-right symmetric")
    return m


def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for j in range(3):
        np.add.at(n, f[:, j], fn)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return n if n[v[:, 2].argmax(), 2] > 0 else -n  # outward: the nose tip's normal points to the camera


def correspondence(v: np.ndarray):
    """``(a, b, t)`` per canonical point: the point is ``(1 - t) v[a] + t v[b]``; ``a = -1`` where none."""
    lay = get_layout("wflw98")
    mirror = mirror_vertices(v)
    a = np.full(98, -1)
    b = np.full(98, -1)
    t = np.zeros(98)
    for name, vert in CORRESPONDENCE.items():
        i = lay.index(name)
        a[i] = b[i] = vert
    p = v[list(OVAL_LEFT)]
    cum = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]
    cum /= cum[-1]
    for k, s in enumerate(np.linspace(0.0, 1.0, 17)):  # contour_00 .. contour_16 (chin)
        j = min(int(np.searchsorted(cum, s, side="right")) - 1, len(OVAL_LEFT) - 2)
        i = lay.index(f"contour_{k:02d}")
        a[i], b[i], t[i] = OVAL_LEFT[j], OVAL_LEFT[j + 1], (s - cum[j]) / (cum[j + 1] - cum[j])
        if t[i] > 1 - 1e-9:  # on a vertex (the chin)
            a[i], t[i] = b[i], 0.0
    flip = lay.flip_indices
    for i in range(98):
        if a[i] < 0 and a[flip[i]] >= 0:
            a[i], b[i], t[i] = mirror[a[flip[i]]], mirror[b[flip[i]]], t[flip[i]]
    for i in np.flatnonzero(a >= 0):  # midline points must lie on the midline
        if flip[i] == i and abs(v[a[i], 0]) + abs(v[b[i], 0]) > 1e-6:
            raise SystemExit(f"{lay.names[i]} is self-mirrored but its vertex is off the midline")
    return a, b, t


def build(obj: Path) -> dict:
    v, f = read_obj(obj)
    a, b, t = correspondence(v)
    has = a >= 0
    n = vertex_normals(v, f)
    pts = np.zeros((98, 3))
    nrm = np.zeros((98, 3))
    pts[has] = (1 - t[has, None]) * v[a[has]] + t[has, None] * v[b[has]]
    nrm[has] = (1 - t[has, None]) * n[a[has]] + t[has, None] * n[b[has]]
    scale = np.array([1.0, 1.0, DEPTH_SCALE])
    pts *= scale
    nrm /= scale  # normals transform by the inverse transpose
    nrm[has] /= np.linalg.norm(nrm[has], axis=1, keepdims=True)
    lay = get_layout("wflw98")
    weights = np.ones(98)
    for group, w in GROUP_WEIGHTS.items():
        weights[lay.group_indices(group)] = w
    return {
        "points98": pts.astype(np.float32), "has_point": has, "normals98": nrm.astype(np.float32),
        "group_weights98": weights.astype(np.float32), "occluded_weight": np.float32(OCCLUDED_WEIGHT),
        "depth_scale": np.float32(DEPTH_SCALE), "vertex_a": a.astype(np.int16), "vertex_b": b.astype(np.int16),
        "vertex_t": t.astype(np.float32),
        "source": np.array("MediaPipe canonical_face_model.obj (Apache-2.0), 98 canonical points, z x 1.2"),
    }, v, f


def _similarity(src: np.ndarray, dst: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, bool]:
    """``src`` (K, 3) moved by the least-squares similarity that maps its ``use`` rows onto ``dst``'s, and
    whether that map is a proper rotation (False: a reflection fits better, the face is left out)."""
    s, d = src[use], dst[use]
    ms, md = s.mean(0), d.mean(0)
    u, sv, vt = np.linalg.svd((d - md).T @ (s - ms))
    sign = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, sign]) @ vt
    scale = (sv * [1.0, 1.0, sign]).sum() / ((s - ms) ** 2).sum()
    return scale * (src - ms) @ r.T + md, bool(sign > 0)


def projected_face(pts68_3d: np.ndarray, frame68: np.ndarray, keep: np.ndarray | None = None):
    """The face for model-projected points: ``(points98 (98, 3), has_point (98,), faces used)``.

    pts68_3d: ``(N, 68, 3)`` 3D landmarks as AFLW2000-3D stores ``pt3d_68`` (image x right, y down, z toward the
    camera). frame68: ``(68, 3)`` a shape in the model frame whose frame the result takes (x right, y up, z
    toward the camera). keep: faces to use (default all). Every face goes onto the canonical 98 points, is
    aligned to the running mean by a similarity on the points off the contour (faces a reflection fits better
    are left out), averaged, and the mean is aligned to ``frame68``; three rounds.
    """
    from landmark_unify.core.pose import canonical_model_points

    lay = get_layout("wflw98")
    faces = np.asarray(pts68_3d, dtype=np.float64) * np.array([1.0, -1.0, 1.0])
    faces = np.stack([canonical_model_points(f)[0] for f in faces])
    ref, has = canonical_model_points(np.asarray(frame68, dtype=np.float64))
    stable = has & (np.array(lay.groups) != "contour")
    keep = np.ones(len(faces), bool) if keep is None else np.asarray(keep, bool)
    target = ref
    for _ in range(3):
        moved = [_similarity(f, target, stable) for f in faces]
        used = keep & np.array([ok for _, ok in moved])
        mean = np.stack([m for m, _ in moved])[used].mean(0)
        target, _ = _similarity(mean, ref, stable)
    return np.where(has[:, None], target, 0.0), has, int(used.sum())


def build_projected(dev: Path = DEV, mean3d: Path = MEAN3D, keep: np.ndarray | None = None) -> dict:
    """The ``*_projected`` arrays of the shipped file, from the dev labels (``keep``: a subset of dev faces)."""
    d = np.load(dev)
    with np.load(mean3d) as m:
        frame = np.asarray(m["3ddfa_bfm_raw"], dtype=np.float64)
    ok = np.abs(d["yaw_deg"]) <= MAX_ANGLE
    if keep is not None:
        ok &= keep
    pts, has, used = projected_face(d["pts68_3d"], frame, ok)
    return {"points98_projected": pts.astype(np.float32), "has_point_projected": has,
            "source_projected": np.array(f"mean of {used} AFLW2000-3D dev pt3d_68 labels (3DDFA, MIT), 3DDFA BFM frame")}


def draw(model: dict, v: np.ndarray, f: np.ndarray, path: Path) -> None:
    import cv2

    lay = get_layout("wflw98")
    px, margin = 95, 30
    lo, hi = v[:, :2].min(0), v[:, :2].max(0)
    w, h = int((hi[0] - lo[0]) * px) + 2 * margin, int((hi[1] - lo[1]) * px) + 2 * margin + 40

    def at(p):
        return int(round((p[0] - lo[0]) * px)) + margin, int(round((hi[1] - p[1]) * px)) + margin + 40

    img = np.full((h, w, 3), 255, np.uint8)
    for tri in f:
        for j in range(3):
            cv2.line(img, at(v[tri[j]]), at(v[tri[(j + 1) % 3]]), (225, 225, 225), 1, cv2.LINE_AA)
    for p in v:
        cv2.circle(img, at(p), 1, (170, 170, 170), -1, cv2.LINE_AA)
    colours = point_colours("wflw98")  # the project's one scheme, as in every other picture
    outline, ink = (90, 90, 90), (60, 60, 60)
    a, b, t = model["vertex_a"], model["vertex_b"], model["vertex_t"]
    for i in np.flatnonzero(model["has_point"]):
        c = tuple(int(x) for x in colours[i])
        for vert in {int(a[i]), int(b[i])}:
            if a[i] != b[i]:  # the two vertices of an oval edge
                cv2.circle(img, at(v[vert]), 4, outline, 1, cv2.LINE_AA)
        p = (1 - t[i]) * v[a[i]] + t[i] * v[b[i]]
        q = at(p)
        cv2.circle(img, q, 4, c, -1, cv2.LINE_AA)
        cv2.circle(img, q, 4, outline, 1, cv2.LINE_AA)
        label = str(i)
        dx = -22 if p[0] < -0.05 else (6 if p[0] > 0.05 else 5)
        dy = -5 if lay.groups[i] != "lip" or i in (76, 82) else (-6 if i < 88 and i <= 81 else 12)
        cv2.putText(img, label, (q[0] + dx, q[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, 0.36, ink, 1, cv2.LINE_AA)
    cv2.putText(img, "MediaPipe canonical mesh (Apache-2.0): vertex chosen for each WFLW-98 point "
                "(contour points lie on an oval edge between two ringed vertices)", (10, 22),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    drawn = {lay.groups[i] for i in np.flatnonzero(model["has_point"])}  # pupils have no vertex
    img = with_legend(img, [("points:", [it for g, it in zip(lay.present_groups, group_legend_items()) if g in drawn]),
                            ("", [("ring", outline, "the two mesh vertices of a contour point's oval edge")])])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obj", type=Path, default=OBJ)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--picture", type=Path, default=PICTURE)
    ap.add_argument("--dev", type=Path, default=DEV, help="AFLW2000-3D dev labels (the projected face)")
    ap.add_argument("--mean3d", type=Path, default=MEAN3D, help="mean3d_68.npz (its 3ddfa_bfm_raw frame)")
    args = ap.parse_args(argv)
    model, v, f = build(args.obj)
    model.update(build_projected(args.dev, args.mean3d))
    np.savez_compressed(args.out, **model)
    draw(model, v, f, args.picture)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {args.picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
