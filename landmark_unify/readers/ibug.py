"""iBUG / 300W ``.pts`` files beside their images.

Layout: any folder tree of ``NAME.pts`` with ``NAME.{jpg,png,...}`` beside (300W: ``01_Indoor``,
``02_Outdoor``, ``afw``, ``helen/trainset``, ``lfpw/testset``, ``ibug``). A ``.pts`` file reads::

    version: 1
    n_points:  68
    {
    x y          (68 lines, 1-based pixels: 1 is subtracted)
    }

Schema ``ibug68`` (2D, the jaw follows the visible outline). Split: the folder of the file relative to the
root ('all' at the root). A face whose image is ``NAME_2.pts`` beside ``NAME.jpg`` gets that image.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ._base import (
    ErrorSink,
    FaceRecord,
    Unit,
    find_image,
    parse_int,
    parse_xy,
    plan_files,
    read_files,
    read_lines,
    rel,
    sorted_files,
)

FILES_PER_UNIT = 1000
NUM_POINTS = 68


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    return plan_files(source, "ibug", root, sorted_files(root, "**/*.pts"), options, FILES_PER_UNIT,
                      "no .pts files found under the root")


def parse_pts(path: Path, offset: float = 1.0) -> np.ndarray:
    """Read one ``.pts`` file: ``(n_points, 2)`` float64, 0-based (``offset`` subtracted)."""
    lines = read_lines(path)
    declared, open_at = None, None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("n_points"):
            m = re.fullmatch(r"n_points\s*:\s*(\S+)", s)
            if m is None:
                raise ParseError(path, f"bad header line {s!r}", line=i + 1, field="n_points")
            declared = parse_int(m.group(1), path, line=i + 1, field="n_points")
            if declared < 0:
                raise ParseError(path, f"bad header line {s!r}", line=i + 1, field="n_points")
        elif s == "{":
            open_at = i
            break
    if declared is None or open_at is None:
        raise ParseError(path, "missing 'n_points:' header or '{' line", field="header")
    pts = []
    close_at = None
    for i in range(open_at + 1, len(lines)):
        s = lines[i].strip()
        if s == "}":
            close_at = i
            break
        if not s:
            continue
        pts.append(parse_xy(s.split(), path, i + 1, len(pts)))
    if close_at is None:
        raise ParseError(path, "file ends before the closing '}' (truncated?)", line=len(lines), field="points")
    if len(pts) != declared:
        raise ParseError(path, f"n_points says {declared} but {len(pts)} point lines follow", line=close_at + 1, field="n_points")
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2) - offset


def image_for(pts: Path) -> Path | None:
    found = find_image(pts.parent, pts.stem)
    if found is None:
        m = re.fullmatch(r"(.+)_\d+", pts.stem)
        if m:
            found = find_image(pts.parent, m.group(1))
    return found


def read(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    offset = float(unit.opts.get("offset", 1.0))

    def read_one(root: Path, f: str, path: Path) -> FaceRecord:
        pts = parse_pts(path, offset)
        if pts.shape[0] != NUM_POINTS:
            raise ParseError(path, f"expected {NUM_POINTS} points (iBUG layout); found {pts.shape[0]}", field="n_points")
        img = image_for(path)
        parent = Path(f).parent.as_posix()
        return FaceRecord(
            points=pts, schema="ibug68", split="all" if parent == "." else parent,
            image_path=rel(img, root) if img is not None else Path(f).with_suffix(".jpg").as_posix(),
            origin_file=f, identity=f,
        )

    return read_files(unit, sink, read_one)
