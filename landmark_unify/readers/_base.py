"""What every reader shares: the face batch it returns, work units, and small parsing helpers.

A reader turns files of one official dataset layout into :class:`FaceBatch` objects: columns of faces
whose points stay in the source schema (``(N, K, 2)`` float64 pixels, 0-based, integer = pixel centre,
NaN where the source has no point). Mapping onto the canonical layout happens in :mod:`landmark_unify.ops.build`.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ErrorPolicy, ParseError
from ..manifest.rules import box_rule

NUM_ATTRIBUTES = 6
#: The largest magnitude a coordinate, box value or size may have: the manifest stores float32, and a
#: value beyond it (``1e40`` is finite in float64) would become infinite there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Unit:
    """One deterministic piece of work: some files of a source, or a byte range of one big list file.

    ``files`` are paths relative to ``root`` ('/' separated). For a byte range (``start``, ``end``) of a
    single file, ``first_line`` is the 1-based line number at ``start`` (None when the plan did not count
    the lines before it) and ``lines`` the number of lines in the range when the plan knows it. ``options`` are the reader's
    options as sorted ``(name, value)`` pairs. Units are plain data (picklable) so they can be shipped to
    other processes.
    """

    source: str
    kind: str
    root: str
    files: tuple[str, ...]
    start: int | None = None
    end: int | None = None
    first_line: int | None = 1  # None: not counted by the plan (wflw.LineCounter numbers the lines)
    options: tuple[tuple[str, str], ...] = ()
    lines: int | None = None  # lines in the byte range, where the plan counted them

    @property
    def opts(self) -> dict[str, str]:
        return dict(self.options)

    def describe(self) -> str:
        what = self.files[0] if len(self.files) == 1 else f"{len(self.files)} files from {self.files[0]}"
        if self.start is not None:
            what += f" bytes {self.start}-{self.end}"
            if self.first_line is not None:
                what += f" (from line {self.first_line})"
        return f"{self.source}: {what}"


@dataclass
class FaceBatch:
    """Faces read from one unit, all in one source schema.

    points: ``(N, K, 2)`` float64 pixels, 0-based, NaN where the source has no point.
    bbox: ``(N, 4)`` float64 x_min, y_min, x_max, y_max; a row of NaN where the source gives no box.
    attributes: ``(N, 6)`` float64 WFLW flags (pose, expression, illumination, makeup, occlusion, blur):
    1.0, 0.0, or NaN where unknown. pose: ``(N, 3)`` float64 degrees (pitch, yaw, roll), NaN where
    unknown. image_size: ``(N, 2)`` float64 width, height in pixels, NaN where unknown.
    identity: per face, the string that makes its sample_id (with source and split).
    The per-face string and line columns are lists, or :class:`ArrowColumn` in what the wflw reader gives
    the build.
    """

    schema: str
    points: np.ndarray
    split: list[str]
    image_path: list[str]
    origin_file: list[str]
    identity: list[str]
    origin_line: list[int | None] | None = None
    origin_key: list[str | None] | None = None
    bbox: np.ndarray | None = None
    attributes: np.ndarray | None = None
    pose: np.ndarray | None = None
    image_size: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        nan = np.full  # shorthand: nan(shape, np.nan)
        if self.origin_line is None:
            self.origin_line = [None] * n
        if self.origin_key is None:
            self.origin_key = [None] * n
        if self.bbox is None:
            self.bbox = nan((n, 4), np.nan)
        if self.attributes is None:
            self.attributes = nan((n, NUM_ATTRIBUTES), np.nan)
        if self.pose is None:
            self.pose = nan((n, 3), np.nan)
        if self.image_size is None:
            self.image_size = nan((n, 2), np.nan)
        for name in ("split", "image_path", "origin_file", "identity", "origin_line", "origin_key"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceBatch.{name} has {len(getattr(self, name))} entries; expected {n}")

    def __len__(self) -> int:
        return int(self.points.shape[0])


class ArrowColumn(Sequence):
    """A :class:`FaceBatch` column held as one pyarrow array (strings, or int32 line numbers) instead of a
    Python object per face. The wflw reader gives these to the build (:func:`read_unit` with
    ``arrow=True``), which takes :attr:`array` as it is; otherwise it reads like a list of Python values."""

    __slots__ = ("array",)

    def __init__(self, array) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.array[i].to_pylist()
        return self.array[i].as_py()

    def __iter__(self):
        return iter(self.array.to_pylist())

    def __eq__(self, other) -> bool:
        if isinstance(other, ArrowColumn | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ArrowColumn({self.array.type}, {len(self)} values)"

    def take(self, rows) -> ArrowColumn:
        """The values at ``rows`` (indices)."""
        import pyarrow as pa

        return ArrowColumn(self.array.take(pa.array(np.asarray(rows, dtype=np.int64))))


def repeat_string(value: str, n: int):
    """A pyarrow string array of ``n`` times ``value``, built from its buffers."""
    import pyarrow as pa

    raw = value.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    if offsets[-1] >= 2**31:
        return pa.array([value] * n, type=pa.string())
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(raw * n)])


def as_lists(batch: FaceBatch) -> FaceBatch:
    """``batch`` with its :class:`ArrowColumn` columns as Python lists (in place; returned)."""
    for name in ("split", "image_path", "origin_file", "identity", "origin_line", "origin_key"):
        v = getattr(batch, name)
        if isinstance(v, ArrowColumn):
            setattr(batch, name, v.array.to_pylist())
    return batch


@dataclass
class FaceRecord:
    """One face, for readers that work face by face; :func:`batch_from_records` stacks them."""

    points: np.ndarray
    split: str
    image_path: str
    origin_file: str
    identity: str
    origin_line: int | None = None
    origin_key: str | None = None
    bbox: Sequence[float] | None = None
    attributes: Sequence[float] | None = None
    pose: Sequence[float] | None = None
    image_size: Sequence[float] | None = None
    schema: str = ""


def batches_from_records(records: Sequence[FaceRecord], num_points_of) -> list[FaceBatch]:
    """Group records by schema (in order of first appearance) and stack each group into a FaceBatch."""
    groups: dict[str, list[FaceRecord]] = {}
    for r in records:
        groups.setdefault(r.schema, []).append(r)
    out = []
    for schema, recs in groups.items():
        n, k = len(recs), num_points_of(schema)

        def stack(attr, width, n=n, recs=recs):
            arr = np.full((n, width), np.nan)
            for i, r in enumerate(recs):
                v = getattr(r, attr)
                if v is not None:
                    arr[i] = v
            return arr

        out.append(FaceBatch(
            schema=schema,
            points=np.stack([np.asarray(r.points, np.float64) for r in recs]).reshape(n, k, 2),
            split=[r.split for r in recs],
            image_path=[r.image_path for r in recs],
            origin_file=[r.origin_file for r in recs],
            identity=[r.identity for r in recs],
            origin_line=[r.origin_line for r in recs],
            origin_key=[r.origin_key for r in recs],
            bbox=stack("bbox", 4),
            attributes=stack("attributes", NUM_ATTRIBUTES),
            pose=stack("pose", 3),
            image_size=stack("image_size", 2),
        ))
    return out


class ErrorSink(ErrorPolicy):
    """A reader's :class:`~landmark_unify.errors.ErrorPolicy` (records lead with ``source`` and ``kind``),
    which also counts what the reader changed or left out by design (:meth:`note`)."""

    def __init__(self, on_error: str, source: str, kind: str) -> None:
        super().__init__(on_error, source=source, kind=kind)
        self.source = source
        self.kind = kind
        #: what the reader changed or left out by design (not errors), counted: ``{what: count}``
        self.notes: dict[str, int] = {}

    def note(self, what: str, count: int = 1) -> None:
        """Count a value the reader repaired or a record it left out by design (the build's summary lists
        these, so nothing changes silently)."""
        if count:
            self.notes[what] = self.notes.get(what, 0) + int(count)


# --- helpers --------------------------------------------------------------------------------------

def plan_files(source: str, kind: str, root: Path, files: Sequence[Path], options: dict, per_unit: int,
               missing: str) -> list[Unit]:
    """Units of ``per_unit`` of the annotation ``files`` (sorted, under ``root``); no file at all is an
    error (``missing`` says what was expected)."""
    if not files:
        raise ParseError(root, missing, field="root")
    rels = [rel(p, root) for p in files]
    opts = tuple(sorted(options.items()))
    return [Unit(source, kind, str(root), c, options=opts) for c in chunked(rels, per_unit)]


def read_files(unit: Unit, sink: ErrorSink, read_one: Callable[[Path, str, Path], FaceRecord]) -> list[FaceRecord]:
    """One face per annotation file of ``unit``: ``read_one(root, rel_file, path)`` returns its record or
    raises a :class:`ParseError`, which goes to ``sink`` (raised, or recorded and the file left out)."""
    root = Path(unit.root)
    out = []
    for f in unit.files:
        try:
            out.append(read_one(root, f, root / f))
        except ParseError as err:
            sink(err)
    return out


def rel(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root``, '/' separated."""
    return Path(os.path.relpath(path, root)).as_posix()


def read_lines(path: Path) -> list[str]:
    """The lines of a text annotation file (undecodable bytes replaced); a ParseError when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ParseError(path, f"cannot read file: {exc}", field="file") from None


def parse_xy(tokens: Sequence[str], path, line: int, k: int) -> tuple[float, float]:
    """Point ``k`` from the tokens of an ``x y`` line, or a ParseError naming the line and field."""
    if len(tokens) != 2:
        raise ParseError(path, f"expected 'x y'; found {len(tokens)} fields", line=line, field=f"point {k}")
    return (parse_float(tokens[0], path, line=line, field=f"x{k}"),
            parse_float(tokens[1], path, line=line, field=f"y{k}"))


#: a decimal number as annotation files write it: ASCII digits, an optional sign, point and exponent. What
#: Python's float() takes beyond that (``1_000``, digits of other scripts, ``nan``, ``inf``, spaces) is refused.
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: a whole number: ASCII digits with an optional sign
INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_float(token: str, path, *, line=None, key=None, field=None) -> float:
    """A finite float from ``token`` (strictly :data:`NUMBER`, within float32), or a ParseError naming
    where and which field."""
    if not isinstance(token, str) or not NUMBER.fullmatch(token):
        what = "not a finite number" if isinstance(token, str) and token.strip().lower().lstrip("+-") in (
            "nan", "inf", "infinity") else "not a number"
        raise ParseError(path, f"{what}: {token!r}", line=line, key=key, field=field)
    return _float32_range(float(token), token, path, line=line, key=key, field=field)


def _float32_range(v: float, shown, path, *, line=None, key=None, field=None) -> float:
    """``v`` where it is finite and within float32; else a ParseError showing ``shown`` (the input as given)."""
    if not math.isfinite(v):
        raise ParseError(path, f"not a finite number: {shown!r}", line=line, key=key, field=field)
    if abs(v) > FLOAT32_MAX:
        raise ParseError(path, f"out of range: {shown!r} (beyond float32, +-{FLOAT32_MAX:.4g})", line=line, key=key,
                         field=field)
    return v


def parse_int(token: str, path, *, line=None, key=None, field=None) -> int:
    """A whole number from ``token`` (strictly :data:`INTEGER`: ASCII digits, no ``_``), or a ParseError
    naming where and which field."""
    if not isinstance(token, str) or not INTEGER.fullmatch(token) or len(token.lstrip("+-")) > 18:
        raise ParseError(path, f"not a whole number: {token!r}", line=line, key=key, field=field)
    return int(token)


def json_number(value, path, *, line=None, key=None, field=None) -> float:
    """A finite float from a JSON value that is a number (not text, not true/false, not null), within
    float32; else a ParseError naming where and which field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParseError(path, f"not a number: {value!r}", line=line, key=key, field=field)
    try:
        v = float(value)
    except OverflowError:
        raise ParseError(path, f"out of range (beyond float32): {str(value)[:20]}...", line=line, key=key,
                         field=field) from None
    return _float32_range(v, value, path, line=line, key=key, field=field)


def check_box(box, path, *, line=None, key=None, field: str = "bbox") -> tuple[float, float, float, float]:
    """``(x_min, y_min, x_max, y_max)`` of a box the dataset gave, if it passes the manifest's rule for a
    given box (:func:`landmark_unify.manifest.box_rule`: finite in float32, not inverted, of positive area);
    else a ParseError naming where and which field."""
    x0, y0, x1, y1 = (float(v) for v in box)
    not_finite, inverted, zero_area = box_rule([[x0, y0, x1, y1]], given=True)
    if not_finite[0]:
        raise ParseError(path, f"box is not finite in float32: {[float(v) for v in box]}", line=line, key=key,
                         field=field)
    if inverted[0] or zero_area[0]:
        what = "inverted" if inverted[0] else "of zero area"
        raise ParseError(path, f"box is {what}: x_min {x0:g}, y_min {y0:g}, x_max {x1:g}, y_max {y1:g}", line=line,
                         key=key, field=field)
    return x0, y0, x1, y1


def shown_path(path) -> str:
    """``path`` as text that can be printed and stored: bytes of a name that is not UTF-8 as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def sorted_files(root: Path, pattern: str, exclude_dirs: Iterable[str] = ()) -> list[Path]:
    """Files under ``root`` matching the glob ``pattern`` (``**/NAME`` at any depth, or one glob per level
    such as ``*/landmarks/*.txt``), sorted by relative path; folders named in ``exclude_dirs`` are left out.

    Nothing is left out silently, and nothing is read twice: a linked folder under the root is followed;
    a link back to a folder on its own way (a loop), or a second way into a folder already listed, is a
    ParseError naming both. So is a folder on the way that cannot be listed, a match that is not a readable
    file (a broken link), and a match whose name is not UTF-8 (a manifest stores names as UTF-8 text)."""
    import fnmatch

    exclude = set(exclude_dirs)
    parts = pattern.split("/")
    anywhere = parts[0] == "**"
    globs = parts[1:] if anywhere else parts
    if anywhere and len(globs) != 1:
        raise ValueError(f"pattern {pattern!r}: '**' takes one name glob after it")
    depth = None if anywhere else len(globs) - 1  # folders below the root that a match lies in
    errors: list[OSError] = []
    seen: dict[tuple[int, int], str] = {}
    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=True):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        level = len(rel_dir.parts)
        try:
            st = here.stat()
        except OSError as exc:
            raise ParseError(shown_path(here), f"cannot list folder: {exc.strerror or exc}", field="root") from None
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            first = seen[ident]
            ancestor = first == "." or rel_dir.as_posix().startswith(first + "/")
            what = "a link loop: it leads back to" if ancestor else "the same folder as"
            raise ParseError(shown_path(here), f"folder is {what} {shown_path(root / first)}; its files would be "
                                   "read more than once (remove the link, or point the source at one of them)",
                             field="root")
        seen[ident] = rel_dir.as_posix()
        keep = []
        for d in dirnames:
            if d in exclude or (depth is not None and level >= depth):
                continue
            if not anywhere and not fnmatch.fnmatchcase(d, globs[level]):
                continue
            keep.append(d)
        dirnames[:] = sorted(keep)
        if depth is not None and level != depth:
            continue
        name_glob = globs[-1]
        for name in filenames:
            if not fnmatch.fnmatchcase(name, name_glob):
                continue
            p = here / name
            try:
                str(p).encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(shown_path(p), f"file name {os.fsencode(name)!r} is not UTF-8; rename it",
                                 field="file") from None
            if p.is_file():
                out.append(p)
            elif p.is_symlink() and not p.exists():
                raise ParseError(p, "broken link: the annotation file it points to does not exist", field="file")
    if errors:
        err = errors[0]
        if err.errno == 40:  # ELOOP: a link that points at itself, through any number of links
            raise ParseError(err.filename or root, "a link loop (too many levels of symbolic links)", field="root")
        raise ParseError(err.filename or root, f"cannot list folder: {err.strerror or err}", field="root")
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def chunked(items: Sequence, size: int) -> list[tuple]:
    return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".ppm", ".bmp", ".JPG", ".PNG", ".JPEG")


def find_image(folder: Path, stem: str) -> Path | None:
    """The image beside an annotation: ``stem`` with a usual image suffix, first that exists."""
    for suffix in IMAGE_SUFFIXES:
        p = folder / (stem + suffix)
        if p.exists():
            return p
    return None
