"""HRNet's 300W CSV files: ``image_name, scale, center_w, center_h, x0, y0, ... x67, y67`` with a header
line; coordinates and centre are 1-based (1 is subtracted). The box is the square of side
``200 * scale`` around the centre (HRNet's convention). The file is read as CSV (quoted fields keep
their commas, lose their quotes) and its columns are found by their header names (``original_<k>_x``,
``original_<k>_y`` for the points), whatever their order. Split: the file name without
``face_landmarks_300w_`` (``valid``, ``test``, ``valid_challenge``, ``valid_common``). Images are
``image_name`` relative to the root. Schema ``ibug68``.

HRNet's ``valid`` file is ``valid_common`` plus ``valid_challenge`` (the same 689 rows). A folder holding
all three is read without ``valid`` by default, so no face is read twice (the build's notes say which files
were read and which left out); option ``splits`` (``+``-separated, e.g. ``splits=valid+test``) reads exactly
the named files."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ._base import ErrorSink, FaceRecord, Unit, check_box, parse_float, plan_files, read_lines, sorted_files

NUM_POINTS = 68
NUM_FIELDS = 4 + 2 * NUM_POINTS
HEAD = ("image_name", "scale", "center_w", "center_h")
#: the fields of a row in reading order (the header may order its columns otherwise: they are found by name)
FIELD_NAMES = HEAD + tuple(f"{a}{k}" for k in range(NUM_POINTS) for a in "xy")
PREFIX = "face_landmarks_300w_"


def split_of(path: str | Path) -> str:
    stem = Path(path).stem
    return stem[len(PREFIX):] if stem.startswith(PREFIX) else stem


#: a split whose file is the union of others: left out by default when they are all present
UNIONS = {"valid": ("valid_common", "valid_challenge")}


def _select(root: Path, options: dict) -> tuple[list[Path], list[Path]]:
    """The CSV files to read and those left out by default (a union whose parts are present)."""
    files = sorted_files(root, "*.csv")
    if options.get("splits"):
        return _named(root, files, options["splits"]), []
    present = {split_of(p) for p in files}
    skip = {u for u, parts in UNIONS.items() if u in present and all(x in present for x in parts)}
    return [p for p in files if split_of(p) not in skip], [p for p in files if split_of(p) in skip]


def notes(source: str, root: Path, options: dict) -> list[str]:
    """Which files the source reads, and which it leaves out (for the build's summary and metadata)."""
    read, left = _select(root, options)
    out = [f"read {len(read)} CSV file(s): {', '.join(p.name for p in read)}"]
    for p in left:
        parts = " + ".join(UNIONS[split_of(p)])
        out.append(f"left out {p.name}: it holds the faces of {parts} again (option splits=... reads exactly the "
                   "named files, e.g. hrnet-csv[splits=valid+test]=ROOT)")
    return out


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    files, _ = _select(root, options)
    return plan_files(source, "hrnet-csv", root, files, options, 1, "no .csv files found in the root")


def _named(root: Path, files: list[Path], splits: str) -> list[Path]:
    wanted = splits.split("+")
    missing = sorted(set(wanted) - {split_of(p) for p in files})
    if missing:
        raise ParseError(root, f"option splits: no CSV for {missing}; found {sorted(split_of(p) for p in files)}",
                         field="root")
    return [p for p in files if split_of(p) in wanted]


#: a point column of the header: ``original_<k>_<x|y>`` (HRNet's name) or ``<k>_<x|y>``
_POINT_COLUMN = re.compile(r"(?:original_)?([0-9]+)_([xy])", re.ASCII)


def _columns(header: list[str], path: Path) -> list[int]:
    """Positions of the fields, by header name: ``image_name``, ``scale``, ``center_w``, ``center_h``, then
    x0, y0, ... x67, y67. A missing, repeated or unknown column is a ParseError naming it."""
    names = [h.strip() for h in header]
    where: dict[str, int] = {}
    for pos, name in enumerate(names):
        m = _POINT_COLUMN.fullmatch(name)
        field = f"{m.group(2)}{int(m.group(1))}" if m else name
        if field not in FIELD_NAMES:
            raise ParseError(path, f"unknown column {name!r} in the header (expected {', '.join(HEAD)} and "
                                   "original_<k>_x, original_<k>_y for k < 68)", line=1, field="header")
        if field in where:
            raise ParseError(path, f"column {name!r} appears twice in the header", line=1, field="header")
        where[field] = pos
    missing = [f for f in FIELD_NAMES if f not in where]
    if missing:
        raise ParseError(path, f"the header lacks column(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}",
                         line=1, field="header")
    return [where[f] for f in FIELD_NAMES]


def _field(j: int) -> str:
    return FIELD_NAMES[j]


def read(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    root = Path(unit.root)
    f = unit.files[0]
    path = root / f
    offset = float(unit.opts.get("offset", 1.0))
    split = split_of(f)
    try:
        lines = read_lines(path)
    except ParseError as err:
        sink(err)
        return []
    rows = csv.reader(lines, strict=True)  # quoted fields (a name with a comma) are read as CSV says
    try:
        header = next(rows, None)
        if header:
            header[0] = header[0].lstrip("\ufeff")
        if not header or "image_name" not in (h.strip() for h in header):
            raise ParseError(path, "first line must be the header 'image_name,scale,center_w,center_h,...'", line=1,
                             field="header")
        order = _columns(header, path)
    except (ParseError, csv.Error) as err:
        sink(err if isinstance(err, ParseError) else ParseError(path, f"not CSV: {err}", line=1, field="header"))
        return []
    out = []
    i = 1
    while True:
        try:
            tok = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            i = rows.line_num
            sink(ParseError(path, f"not CSV: {exc}", line=i, field="fields"))
            break
        i = rows.line_num
        if not tok or (len(tok) == 1 and not tok[0].strip()):  # a blank line
            continue
        try:
            if len(tok) != NUM_FIELDS:
                raise ParseError(path, f"expected {NUM_FIELDS} fields (image, scale, centre, 68 points); found {len(tok)}",
                                 line=i, field="fields" if len(tok) > NUM_FIELDS else _field(len(tok)))
            tok = [tok[pos].strip() for pos in order]
            if not tok[0]:
                raise ParseError(path, "empty image name", line=i, field="image_name")
            vals = np.array([parse_float(t, path, line=i, field=_field(j)) for j, t in enumerate(tok[1:], start=1)])
            scale, cx, cy = vals[0], vals[1] - offset, vals[2] - offset
            if not scale > 0:
                raise ParseError(path, f"scale must be > 0 (the box side is 200 * scale); got {tok[1]!r}", line=i,
                                 field="scale")
            half = 100.0 * scale
            box = check_box((cx - half, cy - half, cx + half, cy + half), path, line=i, field="scale")
        except ParseError as err:
            sink(err)
            continue
        out.append(FaceRecord(
            points=vals[3:].reshape(NUM_POINTS, 2) - offset, schema="ibug68", split=split,
            image_path=tok[0].replace("\\", "/"), origin_file=f, origin_line=i, identity=f"{f}:{i}",
            bbox=box,
        ))
    return out
