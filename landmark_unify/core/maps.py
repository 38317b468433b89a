"""Maps between point layouts, written by point name and compiled to index arrays.

Every canonical (``wflw98``) point is, for a given source schema, either

* ``exact``: the source defines the same anatomical point (one source point), or
* ``approx``: it is approximated by one source point or by the mean of two, or
* absent: not listed.

A *policy* picks which kinds become valid: ``strict`` takes only exact points, ``extended`` takes exact
and approximate ones. Compiling a map for a policy gives two index arrays ``a`` and ``b`` (the target
is the mean of source points ``a`` and ``b``; ``a == b`` for a single point) and a validity mask. The
mapping itself is then one fancy-indexing expression on ``(N, K, 2)`` arrays.

Source schemas are layout names plus ``ibug68_3d``: the iBUG 68 points of 300W-LP ``pt2d`` and
AFLW2000-3D ``pt3d_68``, whose jaw is the projection of fixed 3D model points rather than the visible
outline. Its jaw is kind ``projected``: invalid unless ``projected_contour=True`` is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from ..errors import MappingError, SchemaError
from .layouts import CANONICAL, Layout, get_layout

POLICIES = ("strict", "extended")
_NAN_PAIR = np.array([np.nan, np.nan], dtype=np.float32).view(np.uint64)[0]
KINDS = ("exact", "approx", "projected")


@dataclass(frozen=True)
class MapEntry:
    """Target point ``target`` is built from source point(s) ``sources`` (one name, or two to average)."""

    target: str
    sources: tuple[str, ...]
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(f"map entry for {self.target!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if len(self.sources) not in (1, 2):
            raise SchemaError(f"map entry for {self.target!r}: needs one or two source points, got {self.sources}")


@dataclass(frozen=True)
class PointMap:
    """A map from layout ``source`` to layout ``target``, validated on construction."""

    name: str
    source: str
    target: str
    entries: tuple[MapEntry, ...]

    def __post_init__(self) -> None:
        src, dst = get_layout(self.source), get_layout(self.target)
        targets = [e.target for e in self.entries]
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise SchemaError(f"map {self.name!r}: target points listed twice: {dupes}")
        for e in self.entries:
            dst.index(e.target)
            for s in e.sources:
                src.index(s)

    def compile(self, policy: str = "strict", projected_contour: bool = False) -> CompiledMap:
        return _compile(self, policy, projected_contour)


@dataclass(frozen=True)
class CompiledMap:
    """Index form of a map: ``target[:, i] = (source[:, a[i]] + source[:, b[i]]) / 2`` where ``valid[i]``."""

    name: str
    source: Layout
    target: Layout
    a: np.ndarray  # (K_target,) intp
    b: np.ndarray  # (K_target,) intp
    valid: np.ndarray  # (K_target,) bool
    kinds: tuple[str | None, ...]  # kind of each target point's entry, None where absent

    @cached_property
    def _gather(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Index form for one gather: ``first`` (K_target,) points into the source plus one trailing NaN
        point (index K_source) for targets the policy leaves invalid; ``avg``, ``avg_a``, ``avg_b`` list the
        targets that average two source points."""
        k = self.source.num_points
        first = np.where(self.valid, self.a, k).astype(np.intp)
        avg = np.flatnonzero(self.valid & (self.a != self.b))
        return first, avg, self.a[avg], self.b[avg]

    def apply(self, points: np.ndarray, source_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        pts, squeeze = _as_batch(points, self.source.num_points, self.source.name)
        pts = pts.astype(np.float32, order="C", copy=False)
        n, k = pts.shape[0], pts.shape[1]
        ok = finite_points(pts)
        if source_valid is not None:
            sv = np.asarray(source_valid, dtype=bool)
            if sv.shape != ok.shape[-sv.ndim:] and sv.shape != ok.shape:
                raise MappingError(f"source_valid has shape {sv.shape}; expected {ok.shape}")
            ok = ok & sv
        first, avg, avg_a, avg_b = self._gather
        if ok.all() and avg.size == 0 and first.size == k and (first == np.arange(k)).all():
            # the identity map of complete faces (a 98-point source): the points as they are
            out = pts.copy() if isinstance(points, np.ndarray) and np.may_share_memory(pts, points) else pts
            valid = np.ones(out.shape[:2], bool)
            return (out[0], valid[0]) if squeeze else (out, valid)
        # One gather from the source with a NaN point appended: invalid source points and the targets the
        # policy excludes come out NaN. Each (x, y) pair is moved as one 8-byte word, and np.take on
        # contiguous data is much faster than fancy indexing over the middle axis.
        words = np.ascontiguousarray(pts).view(np.uint64).reshape(n, k)
        ext = np.empty((n, k + 1), np.uint64)
        ext[:, :k] = words
        ext[:, k] = _NAN_PAIR
        if not ok.all():
            ext[:, :k][~ok] = _NAN_PAIR
        out = ext.take(first, axis=1).view(np.float32).reshape(n, self.target.num_points, 2)
        ext = ext.view(np.float32).reshape(n, k + 1, 2)
        for j, ia, ib in zip(avg.tolist(), avg_a.tolist(), avg_b.tolist()):
            out[:, j] = (ext[:, ia] + ext[:, ib]) * np.float32(0.5)
        valid = ~np.isnan(out[..., 0])
        if squeeze:
            return out[0], valid[0]
        return out, valid


def _as_batch(points, num_points: int, schema: str) -> tuple[np.ndarray, bool]:
    arr = np.asarray(points)
    if arr.ndim == 2:
        arr, squeeze = arr[None], True
    elif arr.ndim == 3:
        squeeze = False
    else:
        raise MappingError(f"points for schema {schema!r} must be (N, {num_points}, 2) or ({num_points}, 2); got {arr.shape}")
    if arr.shape[1:] != (num_points, 2):
        raise MappingError(f"points for schema {schema!r} must be (N, {num_points}, 2) or ({num_points}, 2); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise MappingError(f"points must be numeric; got dtype {arr.dtype}")
    return arr, squeeze


def finite_points(points) -> np.ndarray:
    """``(..., K)`` bool: both coordinates of the point are finite. ``points``: ``(..., K, 2)``.

    Two element-wise tests instead of ``isfinite(points).all(-1)``: a reduction over an axis of length 2 is
    about six times slower on large batches."""
    pts = np.asarray(points)
    return np.isfinite(pts[..., 0]) & np.isfinite(pts[..., 1])


def canonical_batch(points98, valid98=None) -> tuple[np.ndarray, np.ndarray]:
    """Checked canonical points for the functions that take them (eye aspect ratio, pose fit).

    points98: ``(N, 98, 2)`` or ``(98, 2)``, numeric, NaN where invalid; valid98: optional ``(N, 98)`` or
    ``(98,)`` bool. Returns ``(points (N, 98, 2) float64, usable (N, 98) bool)``: usable where the point is
    finite and, when ``valid98`` is given, marked valid. Raises MappingError on a wrong shape or dtype.
    """
    pts = _as_batch(points98, 98, "wflw98")[0].astype(np.float64)
    ok = finite_points(pts)
    if valid98 is not None:
        v = np.asarray(valid98, dtype=bool)
        if v.ndim == 1:
            v = v[None]
        if v.shape != ok.shape:
            raise MappingError(f"valid98 must be (N, 98) matching points98 {ok.shape}; got {np.shape(valid98)}")
        ok &= v
    return pts, ok


def check_policy(policy: str) -> str:
    """``policy`` itself when it is one of :data:`POLICIES`; a SchemaError otherwise (the one check of a
    policy, for the build, machine labels and the maps)."""
    if policy not in POLICIES:
        raise SchemaError(f"unknown policy {policy!r}; valid: {list(POLICIES)}")
    return policy


@cache
def _compile(pmap: PointMap, policy: str, projected_contour: bool) -> CompiledMap:
    check_policy(policy)
    src, dst = get_layout(pmap.source), get_layout(pmap.target)
    allowed = {"exact"} if policy == "strict" else {"exact", "approx"}
    if projected_contour:
        allowed.add("projected")
    a = np.zeros(dst.num_points, dtype=np.intp)
    b = np.zeros(dst.num_points, dtype=np.intp)
    valid = np.zeros(dst.num_points, dtype=bool)
    kinds: list[str | None] = [None] * dst.num_points
    for e in pmap.entries:
        i = dst.index(e.target)
        a[i] = src.index(e.sources[0])
        b[i] = src.index(e.sources[-1])
        valid[i] = e.kind in allowed
        kinds[i] = e.kind
    for arr in (a, b, valid):
        arr.setflags(write=False)
    return CompiledMap(pmap.name, src, dst, a, b, valid, tuple(kinds))


# --- writing maps -------------------------------------------------------------------------------------

def _e(kind: str, target: str, *sources: str) -> MapEntry:
    return MapEntry(target, tuple(sources), kind)


def _identity_by_name(source: str, target: str, kind: str = "exact") -> list[MapEntry]:
    """Exact entries for every point name the two layouts share."""
    src = set(get_layout(source).names)
    return [_e(kind, n, n) for n in get_layout(target).names if n in src]


def _ibug68_forward(jaw_kind: str) -> list[MapEntry]:
    entries = [
        *[_e("exact", f"brow_l_upper_{i}", f"brow_l_{i}") for i in range(5)],
        *[_e("exact", f"brow_r_upper_{i}", f"brow_r_{i}") for i in range(5)],
        *[_e("exact", n, n) for n in ("nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_bridge_3",
                                       "nose_base_l_1", "nose_base_l_0", "nose_base_c", "nose_base_r_0",
                                       "nose_base_r_1")],
        *[_e("exact", f"eye_{s}_{c}", f"eye_{s}_{c}") for s in "lr" for c in ("outer", "inner")],
        *[_e("exact", n, n) for n in get_layout("wflw98").names[76:96]],
        # Lid midpoints: WFLW puts three points on a lid (quarters), iBUG two (thirds).
        *[_e("approx", f"eye_{s}_{lid}_1", f"eye_{s}_{lid}_0", f"eye_{s}_{lid}_1") for s in "lr" for lid in ("upper", "lower")],
        # Jaw: 17 points along the same outline as WFLW's 33; every second WFLW point.
        *[_e(jaw_kind, f"contour_{2 * i:02d}", f"jaw_{i:02d}") for i in range(17)],
    ]
    return entries


# Points that COFW 29 and AFLW 19/21 name alike: brow ends, nose tip and wings, chin.
_SPARSE_SHARED = [
    _e("exact", "brow_l_upper_0", "brow_l_outer"),
    _e("exact", "brow_r_upper_0", "brow_r_outer"),
    _e("approx", "brow_l_upper_4", "brow_l_inner"),
    _e("approx", "brow_r_upper_4", "brow_r_inner"),
    _e("approx", "nose_bridge_3", "nose_tip"),
    _e("approx", "nose_base_l_1", "nose_wing_l"),
    _e("approx", "nose_base_r_1", "nose_wing_r"),
    _e("approx", "contour_16", "chin"),
]

_COFW29_FORWARD = [
    *[_e("exact", n, n) for n in ("eye_l_outer", "eye_r_outer", "eye_l_inner", "eye_r_inner", "pupil_l", "pupil_r",
                                   "lip_outer_l", "lip_outer_r", "lip_outer_upper_c", "lip_outer_lower_c",
                                   "lip_inner_upper_c", "lip_inner_lower_c")],
    *_SPARSE_SHARED,
    _e("approx", "brow_l_upper_2", "brow_l_upper_mid"),
    _e("approx", "brow_r_upper_2", "brow_r_upper_mid"),
    _e("approx", "brow_l_lower_1", "brow_l_lower_mid"),
    _e("approx", "brow_r_lower_1", "brow_r_lower_mid"),
    _e("approx", "eye_l_upper_1", "eye_l_upper_mid"),
    _e("approx", "eye_r_upper_1", "eye_r_upper_mid"),
    _e("approx", "eye_l_lower_1", "eye_l_lower_mid"),
    _e("approx", "eye_r_lower_1", "eye_r_lower_mid"),
    _e("approx", "nose_base_c", "nose_base_c"),
]

_AFLW_FORWARD = [
    *[_e("exact", n, n) for n in ("eye_l_outer", "eye_l_inner", "eye_r_inner", "eye_r_outer", "lip_outer_l", "lip_outer_r")],
    *_SPARSE_SHARED,
    _e("approx", "brow_l_upper_2", "brow_l_centre"),
    _e("approx", "brow_r_upper_2", "brow_r_centre"),
    _e("approx", "pupil_l", "eye_l_centre"),
    _e("approx", "pupil_r", "eye_r_centre"),
]


def _invert(entries: list[MapEntry], extra: list[MapEntry] = ()) -> list[MapEntry]:
    """Reverse of a forward map: every single-source forward entry read backwards, plus ``extra``."""
    out = {e.target: e for e in extra}
    for e in entries:
        if len(e.sources) == 1 and e.sources[0] not in out:
            out[e.sources[0]] = _e(e.kind, e.sources[0], e.target)
    return list(out.values())


# An iBUG lid point sits at a third of the lid, between WFLW's quarter point and its midpoint.
_IBUG68_LID_REVERSE = [
    _e("approx", f"eye_{s}_{lid}_{k}", f"eye_{s}_{lid}_{k}", f"eye_{s}_{lid}_{k + 1}")
    for s in "lr" for lid in ("upper", "lower") for k in (0, 1)
]

_FORWARD: dict[str, PointMap] = {}
_REVERSE: dict[str, PointMap] = {}


def _register(schema: str, layout: str, forward: list[MapEntry], reverse: list[MapEntry]) -> None:
    _FORWARD[schema] = PointMap(f"{schema}->{CANONICAL}", layout, CANONICAL, tuple(forward))
    _REVERSE[schema] = PointMap(f"{CANONICAL}->{schema}", CANONICAL, layout, tuple(reverse))


_register("wflw98", "wflw98", _identity_by_name("wflw98", "wflw98"), _identity_by_name("wflw98", "wflw98"))
_register(
    "lapa106", "lapa106", _identity_by_name("lapa106", "wflw98"),
    _identity_by_name("wflw98", "lapa106")
    + [_e("approx", "eye_l_centre", "pupil_l"), _e("approx", "eye_r_centre", "pupil_r")],
)
_ibug_fwd = _ibug68_forward("approx")
_ibug_rev = _invert(_ibug_fwd, _IBUG68_LID_REVERSE)
_register("ibug68", "ibug68", _ibug_fwd, _ibug_rev)
_register("ibug68_3d", "ibug68", _ibug68_forward("projected"), _invert(_ibug68_forward("projected"), _IBUG68_LID_REVERSE))
_register("cofw29", "cofw29", _COFW29_FORWARD, _invert(_COFW29_FORWARD))
_register("aflw19", "aflw19", _AFLW_FORWARD, _invert(_AFLW_FORWARD))
_register("aflw21", "aflw21", _AFLW_FORWARD, _invert(_AFLW_FORWARD))


def list_schemas() -> list[str]:
    """Names accepted as ``schema`` by :func:`to_canonical` and :func:`from_canonical`."""
    return sorted(_FORWARD)


def schema_layout(schema: str) -> Layout:
    """The point layout behind a source schema name (``ibug68_3d`` -> ``ibug68``)."""
    return get_layout(_pmap(_FORWARD, schema).source)


def _pmap(table: dict[str, PointMap], schema: str) -> PointMap:
    try:
        return table[schema]
    except KeyError:
        raise SchemaError(f"unknown schema {schema!r}; valid: {sorted(table)}") from None


def compile_map(schema: str, policy: str = "strict", *, projected_contour: bool = False) -> CompiledMap:
    """The compiled map from ``schema`` onto the canonical layout."""
    return _pmap(_FORWARD, schema).compile(policy, projected_contour)


def compile_reverse_map(schema: str, policy: str = "strict") -> CompiledMap:
    """The compiled map from the canonical layout onto ``schema``'s layout."""
    return _pmap(_REVERSE, schema).compile(policy, True)


def to_canonical(
    points,
    schema: str,
    policy: str = "strict",
    *,
    source_valid=None,
    projected_contour: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Map source points onto the canonical 98-point layout.

    points: ``(N, K, 2)`` or ``(K, 2)`` pixels in ``schema``'s order; NaN marks a missing source point.
    source_valid: optional ``(N, K)`` bool, False for source points to ignore.
    Returns ``points98`` float32 ``(N, 98, 2)`` (or ``(98, 2)``) with NaN where invalid, and ``valid98``
    bool ``(N, 98)`` (or ``(98,)``).
    """
    return compile_map(schema, policy, projected_contour=projected_contour).apply(points, source_valid)


def from_canonical(points98, schema: str, policy: str = "extended", *, valid98=None) -> tuple[np.ndarray, np.ndarray]:
    """Map canonical points onto ``schema``'s layout, e.g. to score a 98-point model on 68-point data.

    Returns ``(pointsK float32 with NaN where undefined, validK bool)``. Under ``strict`` only points
    defined identically in both layouts are valid; ``extended`` (the default) adds approximations such
    as the jaw (every second contour point) and lid points.
    """
    return compile_reverse_map(schema, policy).apply(points98, valid98)


def flip(points, schema: str, image_width, valid=None):
    """Mirror points horizontally: ``x -> (W - 1) - x`` (0-based pixel centres), then permute by the
    layout's mirror so that left and right names stay true.

    points: ``(N, K, 2)`` or ``(K, 2)``; image_width: scalar or ``(N,)``. Returns the flipped points,
    or ``(points, valid)`` when ``valid`` (``(N, K)`` or ``(K,)``) is given.
    """
    layout = schema_layout(schema)
    pts, squeeze = _as_batch(points, layout.num_points, schema)
    w = np.asarray(image_width, dtype=np.float64).reshape(-1, 1)
    out = pts.astype(np.float32, copy=True)[:, layout.flip_indices]
    out[..., 0] = (w - 1.0 - out[..., 0]).astype(np.float32)
    out = out[0] if squeeze else out
    if valid is None:
        return out
    return out, np.asarray(valid, dtype=bool)[..., layout.flip_indices]


def registered_maps() -> list[PointMap]:
    """Every registered map, forward and reverse (used by the tests)."""
    return list(_FORWARD.values()) + list(_REVERSE.values())
