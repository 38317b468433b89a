"""The project's one colour scheme, declared once, and the legend drawn into pictures.

Every picture that shows landmarks or sources takes its colours from here: ``landmark_unify render``
(contact sheets), ``landmark_unify report`` (histograms per source), ``pfpld_train predict`` (overlays on
photos) and the export overlays of ``pfpld_train``. Colours are BGR tuples, as OpenCV draws them.

- Landmark groups (:data:`GROUP_COLOURS`): contour cyan, brows orange, nose green, eyes magenta, lips red,
  pupils white, ears yellow.
- Head-pose axes (:data:`AXIS_COLOURS`): x (image right) blue, y (up) violet, z (toward the camera) brown:
  hues no landmark group uses (red and green would read as lips and nose).
- Sources (:func:`source_colour`): a fixed colour for each known dataset kind, and for any other name a
  colour picked by a hash of the name (CRC-32, the same in every run and process), so a source keeps its
  colour from one report to the next whatever else the manifest holds.

:func:`legend` draws a white band naming the colours (and any notes), to stack under a picture with
:func:`with_legend`.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np

from ..core.layouts import get_layout

__all__ = ["AXIS_COLOURS", "AXIS_NAMES", "GROUP_COLOURS", "GROUP_NAMES", "MISSING_IMAGE_GREY", "PALETTE",
           "SOURCE_COLOURS", "axis_legend_items", "draw_axis", "group_legend_items", "legend", "point_colours",
           "source_colour", "with_legend"]

#: BGR colour of each landmark group (the groups of :data:`landmark_unify.core.layouts.GROUPS`).
GROUP_COLOURS = {
    "contour": (255, 255, 0),
    "brow": (0, 165, 255),
    "nose": (0, 255, 0),
    "eye": (255, 0, 255),
    "lip": (0, 0, 255),
    "pupil": (255, 255, 255),
    "ear": (0, 255, 255),
}
#: how each group is named in legends
GROUP_NAMES = {"contour": "contour", "brow": "brows", "nose": "nose", "eye": "eyes", "lip": "lips",
               "pupil": "pupils", "ear": "ears"}
#: BGR colours of the head's x (image right), y (up) and z (toward the camera) axes: blue, violet, brown,
#: distinct from every :data:`GROUP_COLOURS` entry.
AXIS_COLOURS = ((255, 100, 0), (200, 0, 130), (30, 70, 140))
AXIS_NAMES = ("x (right)", "y (up)", "z (toward camera)")
#: grey level of a tile whose image file is missing
MISSING_IMAGE_GREY = 96

#: BGR palette for sources (Tableau 10).
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))
#: fixed colours of the known dataset kinds (a source labelled with its kind, the default label)
SOURCE_COLOURS = {
    "wflw": PALETTE[0],          # blue
    "lapa": PALETTE[1],          # orange
    "300wlp": PALETTE[2],        # green
    "aflw2000": PALETTE[3],      # red
    "ibug": PALETTE[4],          # purple
    "aflw2000-21": PALETTE[5],   # brown
    "hrnet-csv": PALETTE[6],     # pink
    "coco": PALETTE[8],          # olive
}


def source_colour(name: str) -> tuple[int, int, int]:
    """BGR colour of source ``name``: fixed for the known kinds, else from a stable hash of the name."""
    name = str(name)
    if name in SOURCE_COLOURS:
        return SOURCE_COLOURS[name]
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


def point_colours(layout: str = "wflw98") -> np.ndarray:
    """``(K, 3)`` uint8 BGR colour of every point of ``layout``, by group."""
    lay = get_layout(layout)
    return np.array([GROUP_COLOURS[g] for g in lay.groups], dtype=np.uint8)


#: a legend entry: (swatch kind, BGR colour, text). Kinds: "dot" (filled circle), "ring" (circle outline),
#: "line" (short arrow), "box" (filled square), None (text only).
LegendItem = tuple


def group_legend_items(layout: str = "wflw98", kind: str = "dot") -> list[LegendItem]:
    """One entry per group present in ``layout``, in layout-group order."""
    return [(kind, GROUP_COLOURS[g], GROUP_NAMES[g]) for g in get_layout(layout).present_groups]


def draw_axis(img: np.ndarray, start, end, colour, thickness: int = 2) -> None:
    """One head-pose axis, an arrow from ``start`` to ``end`` (pixels) in ``colour`` over a light halo, so
    that the dark axis colours stay visible on dark photos too."""
    import cv2

    a = tuple(int(round(float(v))) for v in start)
    b = tuple(int(round(float(v))) for v in end)
    cv2.arrowedLine(img, a, b, (235, 235, 235), thickness + 2, cv2.LINE_AA, tipLength=0.15)
    cv2.arrowedLine(img, a, b, colour, thickness, cv2.LINE_AA, tipLength=0.15)


def axis_legend_items() -> list[LegendItem]:
    return [("line", c, n) for c, n in zip(AXIS_COLOURS, AXIS_NAMES)]


_FONT_SCALE = 0.4
_LINE = 16


def _swatch(img, kind, colour, x, yc) -> int:
    """Draw a swatch with its left edge at ``x`` on the text line centred at ``yc``; returns its width."""
    import cv2

    outline = (120, 120, 120)
    if kind == "dot":
        cv2.circle(img, (x + 5, yc), 4, colour, -1, cv2.LINE_AA)
        cv2.circle(img, (x + 5, yc), 5, outline, 1, cv2.LINE_AA)
        return 12
    if kind == "ring":
        cv2.circle(img, (x + 5, yc), 5, outline, 3, cv2.LINE_AA)
        cv2.circle(img, (x + 5, yc), 5, colour, 1, cv2.LINE_AA)
        return 12
    if kind == "line":
        cv2.arrowedLine(img, (x, yc), (x + 16, yc), colour, 2, cv2.LINE_AA, tipLength=0.35)
        return 18
    if kind == "box":
        cv2.rectangle(img, (x, yc - 5), (x + 10, yc + 5), colour, -1)
        cv2.rectangle(img, (x, yc - 5), (x + 10, yc + 5), outline, 1)
        return 12
    return 0


def _width(kind, text: str) -> int:
    import cv2

    sw = {"dot": 12, "ring": 12, "line": 18, "box": 12}.get(kind, 0)
    return sw + (4 if sw else 0) + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)[0][0]


def legend(width: int, rows: Iterable[tuple[str, Sequence[LegendItem]] | str]) -> np.ndarray:
    """A white BGR band ``width`` pixels wide naming colours: each row is ``(title, items)`` (a title such
    as ``"landmarks:"`` followed by swatches with their text) or a plain string (a note). Rows wrap at the
    width, notes at word boundaries."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    # lay out first (to know the height), then draw
    placed: list[tuple[int, int, LegendItem]] = []  # (x, line number, item)
    line = 0
    for row in rows:
        if isinstance(row, str):
            title, items = "", [(None, (0, 0, 0), w) for w in row.split()]
        else:
            title, items = row
        x = 6
        if title:
            placed.append((x, line, (None, (0, 0, 0), title)))
            x += cv2.getTextSize(title, font, _FONT_SCALE, 1)[0][0] + 6
        indent = x if x < width // 2 else 6
        full = width - 4 - indent
        pieces: list[LegendItem] = []
        for kind, colour, text in items:  # an entry longer than a line wraps at its words
            words = text.split()
            if _width(kind, text) > full and len(words) > 1:
                pieces += [(kind, colour, words[0])] + [(None, (0, 0, 0), w) for w in words[1:]]
            else:
                pieces.append((kind, colour, text))
        for item in pieces:
            kind, _, text = item
            need = _width(kind, text)
            if x + need > width - 4 and x > indent:
                line, x = line + 1, indent
            placed.append((x, line, item))
            x += need + (10 if kind else 5)
        line += 1
    band = np.full((line * _LINE + 8, max(int(width), 1), 3), 255, np.uint8)
    for x, ln, (kind, colour, text) in placed:
        yc = 4 + ln * _LINE + _LINE // 2
        sw = _swatch(band, kind, colour, x, yc)
        tx = x + sw + (4 if sw else 0)
        cv2.putText(band, text, (tx, yc + 4), font, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def with_legend(img: np.ndarray, rows: Iterable[tuple[str, Sequence[LegendItem]] | str]) -> np.ndarray:
    """``img`` (BGR, or grey made BGR) with the :func:`legend` of ``rows`` stacked under it."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.concatenate([img, legend(img.shape[1], rows)], axis=0)
