"""Point layouts as data.

A layout is an ordered list of points, each with a semantic name, a group and the name of its mirror
image (the point it becomes under a horizontal flip). Everything else (flip permutations, group
indices, normalisation pairs) is derived from that once, at construction, and validated there.

"Left" and "right" in point names mean image-left and image-right, as in FACTS section 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import SchemaError

GROUPS = ("contour", "brow", "nose", "eye", "lip", "pupil", "ear")


@dataclass(frozen=True)
class Point:
    name: str
    group: str
    mirror: str


@dataclass(frozen=True)
class Layout:
    """An ordered point layout.

    ``norm_pair`` names the two points whose distance normalises the NME on this layout (outer eye
    corners for every layout registered here).
    """

    name: str
    points: tuple[Point, ...]
    norm_pair: tuple[str, str]
    description: str = ""
    _index: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.points]
        seen: set[str] = set()
        dupes = sorted({n for n in names if n in seen or seen.add(n)})
        if dupes:
            raise SchemaError(f"layout {self.name!r}: duplicate point names {dupes}")
        index = {n: i for i, n in enumerate(names)}
        object.__setattr__(self, "_index", index)
        for p in self.points:
            if p.group not in GROUPS:
                raise SchemaError(f"layout {self.name!r}: point {p.name!r} has unknown group {p.group!r}; valid: {GROUPS}")
            if p.mirror not in index:
                raise SchemaError(f"layout {self.name!r}: point {p.name!r} mirrors unknown point {p.mirror!r}")
            back = self.points[index[p.mirror]].mirror
            if back != p.name:
                raise SchemaError(
                    f"layout {self.name!r}: mirror is not an involution: {p.name!r} -> {p.mirror!r} -> {back!r}"
                )
            if self.points[index[p.mirror]].group != p.group:
                raise SchemaError(f"layout {self.name!r}: {p.name!r} and its mirror {p.mirror!r} are in different groups")
        for n in self.norm_pair:
            if n not in index:
                raise SchemaError(f"layout {self.name!r}: normalisation point {n!r} does not exist")

    def __len__(self) -> int:
        return len(self.points)

    @property
    def num_points(self) -> int:
        return len(self.points)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)

    @cached_property
    def groups(self) -> tuple[str, ...]:
        """Group name of every point, in layout order."""
        return tuple(p.group for p in self.points)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise SchemaError(f"layout {self.name!r} has no point named {name!r}") from None

    @cached_property
    def flip_indices(self) -> np.ndarray:
        """(K,) intp permutation: after a horizontal flip, point i of the new face is point flip[i] of the old."""
        out = np.array([self._index[p.mirror] for p in self.points], dtype=np.intp)
        out.setflags(write=False)
        return out

    def group_indices(self, group: str) -> np.ndarray:
        if group not in GROUPS:
            raise SchemaError(f"unknown group {group!r}; valid: {GROUPS}")
        return np.array([i for i, p in enumerate(self.points) if p.group == group], dtype=np.intp)

    @cached_property
    def norm_indices(self) -> tuple[int, int]:
        return self.index(self.norm_pair[0]), self.index(self.norm_pair[1])

    @cached_property
    def present_groups(self) -> tuple[str, ...]:
        return tuple(g for g in GROUPS if g in self.groups)


def _swap_side(name: str) -> str:
    """Mirror name by convention: ``_l_``/``_r_`` style side tokens swap, others stay."""
    parts = name.split("_")
    swapped = ["r" if t == "l" else "l" if t == "r" else t for t in parts]
    return "_".join(swapped)


def _pts(group: str, *names: str) -> list[Point]:
    return [Point(n, group, _swap_side(n)) for n in names]


def _chain(prefix: str, count: int, group: str) -> list[Point]:
    """A symmetric chain (contour): point i mirrors point count-1-i."""
    width = len(str(count - 1))
    name = [f"{prefix}_{i:0{width}d}" for i in range(count)]
    return [Point(name[i], group, name[count - 1 - i]) for i in range(count)]


# --- WFLW 98 (canonical) --------------------------------------------------------------------------
# Brows: upper edge points upper_0 (outer end) .. upper_4 (inner end); lower edge lower_0 (next to the
# inner end) .. lower_3 (next to the outer end). Eyelids: upper_0 / lower_0 next to the outer corner.
_WFLW98 = (
    _chain("contour", 33, "contour")
    + _pts("brow", *[f"brow_l_upper_{i}" for i in range(5)], *[f"brow_l_lower_{i}" for i in range(4)])
    + _pts("brow", *[f"brow_r_upper_{i}" for i in (4, 3, 2, 1, 0)], *[f"brow_r_lower_{i}" for i in (3, 2, 1, 0)])
    + _pts("nose", "nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_bridge_3")
    + _pts("nose", "nose_base_l_1", "nose_base_l_0", "nose_base_c", "nose_base_r_0", "nose_base_r_1")
    + _pts("eye", "eye_l_outer", "eye_l_upper_0", "eye_l_upper_1", "eye_l_upper_2", "eye_l_inner",
           "eye_l_lower_2", "eye_l_lower_1", "eye_l_lower_0")
    + _pts("eye", "eye_r_inner", "eye_r_upper_2", "eye_r_upper_1", "eye_r_upper_0", "eye_r_outer",
           "eye_r_lower_0", "eye_r_lower_1", "eye_r_lower_2")
    + _pts("lip", "lip_outer_l", "lip_outer_upper_l_1", "lip_outer_upper_l_0", "lip_outer_upper_c",
           "lip_outer_upper_r_0", "lip_outer_upper_r_1", "lip_outer_r", "lip_outer_lower_r_1",
           "lip_outer_lower_r_0", "lip_outer_lower_c", "lip_outer_lower_l_0", "lip_outer_lower_l_1")
    + _pts("lip", "lip_inner_l", "lip_inner_upper_l", "lip_inner_upper_c", "lip_inner_upper_r", "lip_inner_r",
           "lip_inner_lower_r", "lip_inner_lower_c", "lip_inner_lower_l")
    + _pts("pupil", "pupil_l", "pupil_r")
)

# --- LaPa 106 ---------------------------------------------------------------------------------------
_LAPA106 = (
    _WFLW98[:55]
    + _pts("nose", "nose_wing_l_upper", "nose_wing_l_mid", "nose_wing_l_lower")
    + _WFLW98[55:60]
    + _pts("nose", "nose_wing_r_lower", "nose_wing_r_mid", "nose_wing_r_upper")
    + _WFLW98[60:68]
    + _pts("eye", "eye_l_centre")
    + _WFLW98[68:76]
    + _pts("eye", "eye_r_centre")
    + _WFLW98[76:98]
)

# --- iBUG 68 -----------------------------------------------------------------------------------------
# Brows: brow_l_0 (outer) .. brow_l_4 (inner). Eyelids: upper_0 / lower_0 at the third next to the outer
# corner, upper_1 / lower_1 at the third next to the inner corner.
_IBUG68 = (
    _chain("jaw", 17, "contour")
    + _pts("brow", *[f"brow_l_{i}" for i in range(5)])
    + _pts("brow", *[f"brow_r_{i}" for i in (4, 3, 2, 1, 0)])
    + _pts("nose", "nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_bridge_3")
    + _pts("nose", "nose_base_l_1", "nose_base_l_0", "nose_base_c", "nose_base_r_0", "nose_base_r_1")
    + _pts("eye", "eye_l_outer", "eye_l_upper_0", "eye_l_upper_1", "eye_l_inner", "eye_l_lower_1", "eye_l_lower_0")
    + _pts("eye", "eye_r_inner", "eye_r_upper_1", "eye_r_upper_0", "eye_r_outer", "eye_r_lower_0", "eye_r_lower_1")
    + _WFLW98[76:96]
)

# --- COFW 29 -----------------------------------------------------------------------------------------
_COFW29 = (
    _pts("brow", "brow_l_outer", "brow_r_outer", "brow_l_inner", "brow_r_inner",
         "brow_l_upper_mid", "brow_l_lower_mid", "brow_r_upper_mid", "brow_r_lower_mid")
    + _pts("eye", "eye_l_outer", "eye_r_outer", "eye_l_inner", "eye_r_inner",
           "eye_l_upper_mid", "eye_l_lower_mid", "eye_r_upper_mid", "eye_r_lower_mid")
    + _pts("pupil", "pupil_l", "pupil_r")
    + _pts("nose", "nose_wing_l", "nose_wing_r", "nose_tip", "nose_base_c")
    + _pts("lip", "lip_outer_l", "lip_outer_r", "lip_outer_upper_c", "lip_inner_upper_c",
           "lip_inner_lower_c", "lip_outer_lower_c")
    + _pts("contour", "chin")
)

# --- AFLW 21 and 19 ----------------------------------------------------------------------------------
_AFLW_HEAD = (
    _pts("brow", "brow_l_outer", "brow_l_centre", "brow_l_inner", "brow_r_inner", "brow_r_centre", "brow_r_outer")
    + _pts("eye", "eye_l_outer", "eye_l_centre", "eye_l_inner", "eye_r_inner", "eye_r_centre", "eye_r_outer")
)
_AFLW_NOSE = _pts("nose", "nose_wing_l", "nose_tip", "nose_wing_r")
_AFLW_MOUTH = _pts("lip", "lip_outer_l", "lip_centre", "lip_outer_r") + _pts("contour", "chin")
_AFLW21 = _AFLW_HEAD + _pts("ear", "ear_l") + _AFLW_NOSE + _pts("ear", "ear_r") + _AFLW_MOUTH
_AFLW19 = _AFLW_HEAD + _AFLW_NOSE + _AFLW_MOUTH

_EYE_CORNERS = ("eye_l_outer", "eye_r_outer")

_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    if layout.name in _REGISTRY:
        raise SchemaError(f"layout {layout.name!r} is already registered")
    _REGISTRY[layout.name] = layout
    return layout


WFLW98 = register_layout(Layout("wflw98", tuple(_WFLW98), _EYE_CORNERS, "WFLW 98 points; the canonical layout"))
register_layout(Layout("lapa106", tuple(_LAPA106), _EYE_CORNERS, "LaPa 106 points"))
register_layout(Layout("ibug68", tuple(_IBUG68), _EYE_CORNERS, "iBUG / 300W 68 points"))
register_layout(Layout("cofw29", tuple(_COFW29), _EYE_CORNERS, "COFW 29 points"))
register_layout(Layout("aflw21", tuple(_AFLW21), _EYE_CORNERS, "AFLW 21 points (AFLW2000-3D pt2d)"))
register_layout(Layout("aflw19", tuple(_AFLW19), _EYE_CORNERS, "AFLW 19 points (AFLW-19 benchmark, no ears)"))

CANONICAL = "wflw98"


def get_layout(name: str) -> Layout:
    """The registered layout called ``name``; raises SchemaError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SchemaError(f"unknown layout {name!r}; valid: {sorted(_REGISTRY)}") from None


def list_layouts() -> list[str]:
    return sorted(_REGISTRY)
