"""LaPa: ``{split}/landmarks/NAME.txt`` (a count line ``106``, then ``x y`` per point, 0-based pixels),
images at ``{split}/images/NAME.jpg``. Schema ``lapa106``."""
from __future__ import annotations

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
NUM_POINTS = 106


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    return plan_files(source, "lapa", root, sorted_files(root, "*/landmarks/*.txt"), options, FILES_PER_UNIT,
                      "no LaPa landmark files found: expected {train,val,test}/landmarks/*.txt")


def parse_txt(path: Path) -> np.ndarray:
    """``(106, 2)`` float64 pixels from one LaPa landmark file."""
    lines = read_lines(path)
    rows = [(i + 1, s.split()) for i, s in enumerate(lines) if s.strip()]
    if not rows:
        raise ParseError(path, "empty file", line=1, field="count")
    ln, tok = rows[0]
    if len(tok) != 1:
        raise ParseError(path, f"first line must be the point count; found {' '.join(tok)!r}", line=ln, field="count")
    count = parse_int(tok[0], path, line=ln, field="count")
    if count != NUM_POINTS:
        raise ParseError(path, f"expected {NUM_POINTS} points (LaPa layout); the count line says {count}", line=ln, field="count")
    pts = [parse_xy(tok, path, ln, k) for k, (ln, tok) in enumerate(rows[1:])]
    if len(pts) != count:
        raise ParseError(path, f"count line says {count} but {len(pts)} point lines follow", line=rows[-1][0], field="count")
    return np.asarray(pts, dtype=np.float64)


def read(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    def read_one(root: Path, f: str, path: Path) -> FaceRecord:
        pts = parse_txt(path)
        split_dir = path.parent.parent
        img = find_image(split_dir / "images", path.stem)
        return FaceRecord(
            points=pts, schema="lapa106", split=split_dir.name,
            image_path=rel(img, root) if img is not None else f"{split_dir.name}/images/{path.stem}.jpg",
            origin_file=f, identity=f,
        )

    return read_files(unit, sink, read_one)
