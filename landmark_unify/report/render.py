"""Contact sheets: face crops with their landmarks coloured by group and their head-pose axes (OpenCV).

Pixel convention: landmark coordinates are 0-based with integer values at pixel centres (the manifest's).
A crop of the image starting at integer pixel ``(x0, y0)`` and resized by ``scale`` maps a point ``p`` to
``(p - (x0, y0) + 0.5) * scale - 0.5`` in the tile, the same mapping ``cv2.resize`` uses for pixel centres.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.maps import finite_points
from ..core.pose import matrix_from_euler
from ..images import ImageError, read_image
from ..io import write_png_atomic
from .colors import (
    AXIS_COLOURS,
    GROUP_COLOURS,  # noqa: F401  (re-exported)
    MISSING_IMAGE_GREY,
    axis_legend_items,
    draw_axis,
    group_legend_items,
    point_colours,
    with_legend,
)

# the colour scheme is declared once, in .colors (re-exported here for existing callers)
NO_IMAGE_GREY = MISSING_IMAGE_GREY


def draw_landmarks(img: np.ndarray, points, valid=None, *, radius: int = 1, layout: str = "wflw98") -> np.ndarray:
    """Draw ``(K, 2)`` points (pixels of ``img``) in place, coloured by group; invalid or non-finite
    points are not drawn. A point lands on pixel ``round(x), round(y)``. Returns ``img``."""
    import cv2

    pts = np.asarray(points, dtype=np.float64)
    ok = finite_points(pts)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    colours = point_colours(layout)
    h, w = img.shape[:2]
    for i in np.flatnonzero(ok):
        x, y = int(np.floor(pts[i, 0] + 0.5)), int(np.floor(pts[i, 1] + 0.5))
        if -radius <= x < w + radius and -radius <= y < h + radius:
            c = tuple(int(v) for v in colours[i])
            if radius <= 0:
                if 0 <= x < w and 0 <= y < h:
                    img[y, x] = c
            else:
                cv2.circle(img, (x, y), radius, c, -1, cv2.LINE_8)
    return img


def draw_pose_axes(img: np.ndarray, centre, angles, length: float) -> np.ndarray:
    """Draw the head's axes at ``centre`` (pixels) for ``(pitch, yaw, roll)`` degrees (300W-LP
    convention, orthographic) in :data:`~.colors.AXIS_COLOURS`. NaN angles draw nothing."""

    a = np.asarray(angles, dtype=np.float64)
    if not np.isfinite(a).all() or not np.isfinite(centre).all():
        return img
    rt = matrix_from_euler(a[None])[0].T  # R^T maps model axes to the camera
    c = np.asarray(centre, dtype=np.float64)
    for k in (2, 0, 1):
        d = rt[:, k]
        end = c + length * np.array([d[0], -d[1]])  # image y points down
        draw_axis(img, c, end, AXIS_COLOURS[k])
    return img


def crop_box(points, valid, bbox, margin: float = 0.25) -> tuple[int, int, int]:
    """Square crop ``(x0, y0, side)`` in integer pixels around the valid points and the face box (so a
    68-point face under ``strict``, whose jaw is invalid, still shows its chin), with ``margin`` of the
    side added on each side."""
    pts = np.asarray(points, dtype=np.float64)
    ok = finite_points(pts) & np.asarray(valid, bool)
    b = np.asarray(bbox, dtype=np.float64).ravel()
    box_ok = b.size == 4 and np.isfinite(b).all() and b[2] >= b[0] and b[3] >= b[1]
    if ok.sum() >= 2:
        lo, hi = pts[ok].min(0), pts[ok].max(0)
        if box_ok:
            lo, hi = np.minimum(lo, b[:2]), np.maximum(hi, b[2:])
    elif box_ok:
        lo, hi = b[:2], b[2:]
    else:
        lo = hi = np.zeros(2)
    side = max(float((hi - lo).max()), 8.0) * (1 + 2 * margin)
    centre = (lo + hi) / 2
    x0, y0 = np.floor(centre - side / 2).astype(int)
    return int(x0), int(y0), int(np.ceil(side))


def crop_tile(image: np.ndarray | None, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The ``side`` x ``side`` square of ``image`` at ``(x0, y0)`` (zeros outside it), resized to ``size``.
    A missing image gives a grey tile."""
    import cv2

    if image is None:
        return np.full((size, size, 3), NO_IMAGE_GREY, np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    canvas = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp)


def to_tile(points, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Map image points into the tile of :func:`crop_tile` (pixel centres kept, see the module doc)."""
    scale = size / side
    return (np.asarray(points, dtype=np.float64) - [x0, y0] + 0.5) * scale - 0.5


def render_face(image, points, valid, bbox, angles=None, *, size: int = 192, caption: str | None = None,
                radius: int = 1) -> np.ndarray:
    """One tile: the face crop, its landmarks by group, its pose axes at the nose tip and a caption."""
    import cv2

    x0, y0, side = crop_box(points, valid, bbox)
    tile = crop_tile(image, x0, y0, side, size)
    if image is None:
        cv2.putText(tile, "no image", (4, size - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    tp = to_tile(points, x0, y0, side, size)
    if angles is not None:
        ok = finite_points(tp) & np.asarray(valid, bool)
        centre = tp[54] if ok[54] else (tp[ok].mean(0) if ok.any() else np.array([size / 2, size / 2]))
        draw_pose_axes(tile, centre, angles, size * 0.22)
    draw_landmarks(tile, tp, valid, radius=radius)
    if caption:  # one header line per line of the caption, cut to the tile's width
        lines = caption.splitlines()
        cv2.rectangle(tile, (0, 0), (size, 13 * len(lines) + 1), (0, 0, 0), -1)
        for k, text in enumerate(lines):
            while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0][0] > size - 4:
                text = text[:-1]
            cv2.putText(tile, text, (2, 11 + 13 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return tile


def sheet_shape(n: int, size: int, cols: int | None = None, gap: int = 2) -> tuple[int, int, int]:
    """``(height, width, 3)`` of the contact sheet of ``n`` tiles of ``size`` pixels, ``cols`` wide (default:
    about square), before its legend: what :func:`contact_sheet` allocates."""
    cols = min(cols or int(np.ceil(np.sqrt(n))), max(n, 1))
    rows = int(np.ceil(n / cols))
    return rows * (size + gap) + gap, cols * (size + gap) + gap, 3


def contact_sheet(tiles: list[np.ndarray], cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Tiles (same size) on a grid, ``cols`` wide (default: about square)."""
    if not tiles:
        return np.full((64, 256, 3), 255, np.uint8)
    size = tiles[0].shape[0]
    cols = cols or int(np.ceil(np.sqrt(len(tiles))))
    sheet = np.full(sheet_shape(len(tiles), size, cols, gap), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = gap + r * (size + gap), gap + c * (size + gap)
        sheet[y:y + size, x:x + size] = t
    return sheet


def select_rows(df, where=None, n: int | None = None, seed: int | None = None):
    """Rows of a manifest DataFrame matching the row filter ``where`` (text in the language of
    :mod:`landmark_unify.manifest.filters`, e.g. ``"source == 'wflw' and yaw > 30"``, or a parsed
    :class:`~landmark_unify.manifest.filters.Filter`), then the first ``n`` (or ``n`` drawn at random with
    ``seed``). A bad expression is a :class:`~landmark_unify.manifest.filters.FilterError`; nothing in it runs."""
    from ..manifest.filters import filter_rows

    sel = filter_rows(df, where)
    if n is not None and len(sel) > n:
        sel = sel.sample(n=n, random_state=seed) if seed is not None else sel.head(n)
    return sel


#: how the eye states are written in tile headers
EYE_STATE_WORDS = {"one_closed": "one eye closed", "both_closed": "both eyes closed"}


def _caption(row) -> str:
    """Tile header in plain words: the source, and closed eyes when they are; the head pose in degrees on a
    second line when it is known."""
    import pandas as pd

    first = str(row["source"])
    if pd.notna(row["eye_state"]) and row["eye_state"] in EYE_STATE_WORDS:
        first += ", " + EYE_STATE_WORDS[row["eye_state"]]
    lines = [first]
    if pd.notna(row["yaw"]):
        yaw, pitch, roll = (round(float(row[k])) for k in ("yaw", "pitch", "roll"))  # integers: no "-0"
        lines.append(f"yaw {yaw} pitch {pitch} roll {roll}")
    return "\n".join(lines)


def sheet_legend_rows(faces: int, missing: int) -> list:
    """The legend drawn under a contact sheet: landmark groups, pose axes, what the headers say and how
    many tiles are grey for want of an image."""
    rows = [("landmarks:", group_legend_items()), ("pose axes:", axis_legend_items()),
            "header: source (and closed eyes when they are), then the head pose in degrees when known."]
    if missing:
        rows.append(("", [("box", (MISSING_IMAGE_GREY,) * 3,
                           f"{missing} of {faces} faces have no image file (grey tiles, landmarks only)")]))
    return rows


class _Drawn(NamedTuple):
    path: Path
    faces: int
    missing_images: int


class RenderResult(_Drawn):
    """What :func:`render_manifest` drew: the PNG, the faces on it and how many of them had no image (a
    3-tuple). ``unreadable``: the images that exist but could not be read (corrupt, truncated, too large), one
    message each naming the file; their faces are among ``missing_images`` (grey tiles)."""

    unreadable: tuple[str, ...] = ()


def render_manifest(path, out, *, where: str | None = None, n: int = 36, size: int = 192, cols: int | None = None,
                    seed: int | None = None, legend: bool = True) -> RenderResult:
    """Draw a contact sheet of up to ``n`` faces of manifest ``path`` to PNG ``out``, with the legend of
    colours and headers under it (``legend=False``: none); returns ``(out, faces drawn, faces without an
    image file)``."""
    import pandas as pd

    from ..errors import ManifestError
    from ..manifest import image_paths, read_manifest

    df = read_manifest(path)
    sel = select_rows(df, where, n, seed)
    if len(sel) == 0:
        raise ManifestError(f"{path}: no faces to draw ({len(df)} faces in the manifest"
                            + (f", none matching --where {getattr(where, 'text', where)!r})" if where else ")")
                            + "; nothing written")
    files = image_paths(sel)
    cache: dict[Path, np.ndarray | None] = {}
    tiles = []
    missing = 0
    unreadable: list[str] = []
    for (_, row), f in zip(sel.iterrows(), files):
        if f not in cache:
            cache[f] = None
            if f is not None and Path(f).is_file():  # a missing file is a grey tile; a bad one is named too
                try:
                    cache[f] = read_image(f, channel_order="bgr")
                except ImageError as exc:
                    unreadable.append(str(exc))
        missing += cache[f] is None
        angles = [float(row[a]) if pd.notna(row[a]) else np.nan for a in ("pitch", "yaw", "roll")]
        tiles.append(render_face(cache[f], row["landmarks"], row["valid"], row["bbox"], angles, size=size,
                                 caption=_caption(row), radius=max(1, size // 128)))
    sheet = contact_sheet(tiles, cols)
    if legend:
        sheet = with_legend(sheet, sheet_legend_rows(len(tiles), missing))
    out = write_png_atomic(sheet, out)
    res = RenderResult(out, len(tiles), missing)
    res.unreadable = tuple(unreadable)
    return res
