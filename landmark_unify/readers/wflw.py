"""WFLW: the official 98-point lists.

Layout (root = the WFLW folder)::

    WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
        196 coordinates, 4 box ints (x_min y_min x_max y_max), 6 flags, image path (207 fields)
    WFLW_annotations/list_98pt_test/list_98pt_test{,_largepose,_expression,...}.txt
        196 coordinates, image path (197 fields); a face is in ``_ATTR`` iff its flag is 1
    WFLW_images/<event>/<name>.jpg

The rect_attr lists are used when present (read in byte-range chunks with pyarrow's CSV parser; a chunk
that fails the fast path is re-read line by line so every error names its line and field). Otherwise
the per-attribute test lists are merged: a face listed under several attributes is one face with those
flags set, and the flags of the attributes it is not listed under are False (list membership is the
definition). Faces are identified by image path plus coordinates for that merge.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import ParseError
from ..manifest.rules import box_rule
from ..manifest.schema import ATTRIBUTES
from ._base import FLOAT32_MAX, ArrowColumn, ErrorSink, FaceBatch, Unit, parse_float, rel, repeat_string

NUM_POINTS = 98
NUM_COORDS = 2 * NUM_POINTS
RECT_FIELDS = NUM_COORDS + 4 + 6 + 1
ATTR_FIELDS = NUM_COORDS + 1
RECT_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
ATTR_DIR = "WFLW_annotations/list_98pt_test"
IMAGES = "WFLW_images"
#: per-attribute list suffix -> index into (pose, expression, illumination, makeup, occlusion, blur)
ATTR_LISTS = (
    ("", None),
    ("_largepose", 0),
    ("_expression", 1),
    ("_illumination", 2),
    ("_makeup", 3),
    ("_occlusion", 4),
    ("_blur", 5),
)
RECT_NAMES = ("x_min_rect", "y_min_rect", "x_max_rect", "y_max_rect")
FLAG_NAMES = ATTRIBUTES
DEFAULT_CHUNK_BYTES = 32 << 20


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None, *,
         count_lines: bool = True) -> list[Unit]:
    """Units of the source. ``count_lines=False``: the byte ranges of the rect_attr lists are found without
    reading the files through (their units have ``first_line=None``; the build numbers their lines with a
    :class:`LineCounter` as the units are read, in one process)."""
    opts = tuple(sorted(options.items()))
    rect = [root / RECT_DIR / f"list_98pt_rect_attr_{s}.txt" for s in ("train", "test")]
    rect = [p for p in rect if p.is_file()]
    if rect:
        units = []
        for p in rect:
            chunks = line_chunks(p, chunk_bytes or DEFAULT_CHUNK_BYTES, count=count_lines)
            for k, (start, end, first) in enumerate(chunks):
                lines = chunks[k + 1][2] - first if count_lines and k + 1 < len(chunks) else None
                units.append(Unit(source, "wflw", str(root), (rel(p, root),), start, end, first, opts, lines))
        return units
    lists = [root / ATTR_DIR / f"list_98pt_test{suffix}.txt" for suffix, _ in ATTR_LISTS]
    lists = [p for p in lists if p.is_file()]
    if lists:
        return [Unit(source, "wflw", str(root), tuple(rel(p, root) for p in lists), options=opts)]
    raise ParseError(root, f"no WFLW lists found: expected {RECT_DIR}/list_98pt_rect_attr_{{train,test}}.txt "
                           f"or {ATTR_DIR}/list_98pt_test_*.txt under the root", field="root")


def line_chunks(path: Path, chunk_bytes: int, count: bool = True) -> list[tuple[int, int, int | None]]:
    """Split a text file into byte ranges of about ``chunk_bytes`` that end at a newline.

    Returns ``(start, end, first_line)`` triples; ``first_line`` is 1-based. Each range ends at the last
    newline of a block of ``chunk_bytes`` (a line longer than that makes its chunk longer). ``count``: one
    sequential pass into one reused buffer counts the lines; without it, only the end of each block is
    read (backwards to its last newline) and ``first_line`` is None.
    """
    if not count:
        return _line_chunks_uncounted(path, max(int(chunk_bytes), 1))
    out = []
    start, line, offset = 0, 1, 0
    buf = bytearray(max(int(chunk_bytes), 1))
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            block = buf if k == len(buf) else memoryview(buf)[:k].tobytes()
            last = block.rfind(b"\n")
            if last >= 0:
                end = offset + last + 1
                out.append((start, end, line))
                line += block.count(b"\n")
                start = end
            offset += k
    if offset > start:
        out.append((start, offset, line))
    return out


def _line_chunks_uncounted(path: Path, chunk_bytes: int) -> list[tuple[int, int, None]]:
    """:func:`line_chunks`' ranges (the same ends), found by reading each block backwards from its end to
    its last newline."""
    out = []
    start = 0
    window = 1 << 16
    with open(path, "rb", buffering=0) as f:
        size = f.seek(0, os.SEEK_END)
        for lo in range(0, size, chunk_bytes):
            hi = min(lo + chunk_bytes, size)
            pos = hi
            while pos > lo:
                a = max(lo, pos - window)
                f.seek(a)
                block = f.read(pos - a)
                last = block.rfind(b"\n")
                if last >= 0:
                    end = a + last + 1
                    out.append((start, end, None))
                    start = end
                    break
                pos = a
        if size > start:
            out.append((start, size, None))
    return out


class LineCounter:
    """Line numbers of byte-range units planned without counting (``plan(..., count_lines=False)``), in
    one process: each unit counts the lines of the bytes it read and publishes the count, and a unit's
    first line is one more than the lines of the units before it in its file. A count not yet published
    by the unit that reads it is waited for while that unit is reading (it publishes before any wait of
    its own), or counted from the file by whoever needs it first, so any order of running the units gives
    the same numbers and none waits on another forever.

    It also lends each thread the memory it reads a chunk into and parses its numbers into (:meth:`read`,
    :meth:`numbers`), reused for the thread's next chunk: fresh memory for every chunk is memory the
    kernel clears first. So the arrays of a batch read through a counter are valid until the same thread
    reads its next unit (the build makes its rows from them before that)."""

    def __init__(self, units) -> None:
        self._lock = threading.Lock()
        self._ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for u in units:
            if u.start is not None and u.first_line is None:
                self._ranges.setdefault((u.root, u.files[0]), []).append((u.start, u.end))
        for r in self._ranges.values():
            r.sort()
        self._counts: dict[tuple[str, str, int], object] = {}  # int, or an Event while being counted
        self._buffers: dict[int, pa.Buffer] = {}
        self._numbers: dict[int, np.ndarray] = {}

    def numbers(self, shape: tuple[int, int]) -> np.ndarray:
        """An uninitialised float64 array of ``shape`` in memory that the calling thread reuses for every
        unit it parses (as :meth:`read`): the numbers of a chunk are needed only until its rows are made,
        and every manifest column made from them has another type (float32, bool), so a copy."""
        key = threading.get_ident()
        size = int(np.prod(shape))
        buf = self._numbers.get(key)
        if buf is None or buf.size < size:
            buf = self._numbers[key] = np.empty(size + (size >> 5) + 4096, dtype=np.float64)
        return buf[:size].reshape(shape)

    def read(self, path, start: int, size: int) -> pa.Buffer:
        """Bytes ``[start, start + size)`` of ``path`` (fewer at the end of the file), in a buffer that the
        calling thread reuses for every unit it reads: valid until its next ``read`` (the parse copies what
        it keeps). Fresh memory for each chunk of 32 MB would be cleared by the kernel every time."""
        key = threading.get_ident()
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:  # room for the next chunks too (they differ by a line or so)
            buf = self._buffers[key] = pa.allocate_buffer(size + (size >> 5) + 4096)
        got = 0
        with pa.OSFile(str(path)) as f:
            f.seek(start)
            while got < size:
                k = f.readinto(memoryview(buf)[got:size])
                if not k:
                    break
                got += k
        return buf.slice(0, got)

    def claim(self, unit: Unit) -> None:
        """``unit`` is being read by the caller, who will :meth:`publish` its count."""
        with self._lock:
            self._counts.setdefault((unit.root, unit.files[0], unit.start), threading.Event())

    def publish(self, unit: Unit, newlines: int | None) -> None:
        """The number of newlines in ``unit``'s bytes (None: they could not be read; whoever needs the
        count reads them again)."""
        key = (unit.root, unit.files[0], unit.start)
        with self._lock:
            ev = self._counts.get(key)
            if newlines is None:
                self._counts.pop(key, None)
            else:
                self._counts[key] = int(newlines)
        if ev is not None and not isinstance(ev, int):
            ev.set()

    def first_line(self, unit: Unit) -> int:
        """The 1-based line number at ``unit.start``. Raises OSError when an earlier range of the file
        cannot be read."""
        total = 0
        for start, end in self._ranges.get((unit.root, unit.files[0]), ()):
            if start >= unit.start:
                break
            total += self._count(unit.root, unit.files[0], start, end)
        return 1 + total

    def _count(self, root: str, file: str, start: int, end: int) -> int:
        key = (root, file, start)
        while True:
            with self._lock:
                v = self._counts.get(key)
                if v is None:
                    ev = self._counts[key] = threading.Event()
                    break
            if isinstance(v, int):
                return v
            v.wait()
        try:  # nobody read this range yet: count it here
            with pa.OSFile(str(Path(root) / file)) as f:
                f.seek(start)
                n = count_newlines(f.read_buffer(end - start))
        except BaseException:
            with self._lock:
                self._counts.pop(key, None)
            ev.set()
            raise
        self.publish(Unit("", "wflw", root, (file,), start, end), n)
        return n


def count_newlines(data) -> int:
    """The number of ``\\n`` bytes in ``data`` (bytes or a ``pyarrow.Buffer``), counted in slices."""
    arr = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 22
    return int(sum(np.count_nonzero(arr[i:i + step] == 10) for i in range(0, arr.size, step)))


def read(unit: Unit, sink: ErrorSink, line_counter: LineCounter | None = None) -> list[FaceBatch]:
    """The faces of ``unit``. ``line_counter``: numbers the lines of units planned without counting
    (``first_line`` None; without one, such a unit counts the lines before it itself) and lends the
    memory the chunk is read and parsed into (see :class:`LineCounter`)."""
    root = Path(unit.root)
    if unit.start is not None:
        return [_read_rect_chunk(unit, root, sink, line_counter)]
    return [_read_attr_lists(unit, root, sink)]


# --- parsing ---------------------------------------------------------------------------------------

def _field_name(j: int, has_rect: bool) -> str:
    if j < NUM_COORDS:
        return f"{'xy'[j % 2]}{j // 2}"
    if has_rect and j < NUM_COORDS + 4:
        return RECT_NAMES[j - NUM_COORDS]
    if has_rect and j < NUM_COORDS + 10:
        return f"attr_{FLAG_NAMES[j - NUM_COORDS - 4]}"
    return "image_path"


def parse_chunk(data, path: Path, first_line: int, has_rect: bool, sink: ErrorSink, lines: int | None = None,
                arrow: bool = False, empty=np.empty):
    """Parse list lines. Returns ``(numbers (N, F) float64, names list[str], lines (N,) int64)`` where F
    is 206 with the rect/flag fields or 196 without. Fast path: pyarrow's CSV parser on the whole chunk,
    the lines with a bad value judged one by one (:func:`_judge_lines`); text the fast parser cannot read
    as a whole is parsed in pieces (:func:`_parse_pieces`). The rows, errors and their order are those of
    a line-by-line pass (:func:`_parse_lines`). ``data``: bytes, or a ``pyarrow.Buffer`` (read straight
    into Arrow memory, no copy); ``lines``: the number of lines in ``data`` when known (else counted).
    ``arrow``: the names as a pyarrow string array. The numbers of the fast path are a column-major array
    (a transposed view) from ``empty(shape)``."""
    named: list[int] = []
    fast = _fast_rows(data, path, first_line, has_rect, sink, lines, empty, named)
    if fast is not None:
        nums, names, line_no = fast
        return nums, names if arrow else names.to_pylist(), line_no
    if not isinstance(data, bytes):
        data = data.to_pybytes()
    nums, names, line_no = _parse_pieces(data, path, first_line, has_rect, sink, named[0] if named else None)
    if arrow:
        import pyarrow as pa

        names = pa.array(names, type=pa.string())
    return nums, names, line_no


def _fast_rows(data, path: Path, first_line: int, has_rect: bool, sink: ErrorSink, lines: int | None = None,
               empty=np.empty, named: list | None = None):
    """The fast path of :func:`parse_chunk` (names a pyarrow array), or None where pyarrow's parser cannot
    read the text as list lines (``named`` gets the line it names as bad, where it names one)."""
    nfields = RECT_FIELDS if has_rect else ATTR_FIELDS
    fast = _parse_fast(data, nfields, has_rect, lines, empty, named=named)
    if fast is None:
        return None
    nums, names, suspect = fast
    line_no = np.arange(first_line, first_line + len(names), dtype=np.int64)
    if suspect is not None:
        nums, names, line_no = _judge_lines(data, nums, names, line_no, suspect, path, has_rect, sink)
    return nums, names, line_no


#: lines of a piece that the fast parser refused, below which the piece is parsed line by line
LINE_BY_LINE = 64
#: cuts at a line the fast parser named, per chunk; then pieces are halved (a bounded number of parses
#: when many lines are bad)
NAMED_CUTS = 16
#: lines of the pieces after a cut
PIECE = 1024


def _parse_pieces(data: bytes, path: Path, first_line: int, has_rect: bool, sink: ErrorSink,
                  named: int | None = None):
    """:func:`parse_chunk` of text the fast parser refused as a whole (a line with a field that is not a
    number, with too few or too many fields, a blank line): cut into pieces parsed apart, in line order,
    each on the fast path where it can be. A piece the parser refuses is cut at the line it names (the
    text before it, that line alone line by line, the text after it), up to :data:`NAMED_CUTS` times, else
    into halves; pieces of :data:`LINE_BY_LINE` lines or fewer are parsed line by line. So a few such
    lines cost a few fast parses of the chunk, not a line-by-line pass over all of it. Where the text is
    cut does not change the rows, errors or their order. ``named``: the line (0-based) the parser named
    in the whole text. Names are a list."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    count = ends.size + (1 if data and not data.endswith(b"\n") else 0)

    def text(a: int, z: int) -> bytes:  # lines [a, z)
        return data[int(ends[a - 1]) + 1 if a else 0:int(ends[z - 1]) + 1 if z <= ends.size else len(data)]

    nums, names, line_no = [], [], []

    def add(piece) -> None:
        nums.append(piece[0])
        names.extend(piece[1] if isinstance(piece[1], list) else piece[1].to_pylist())
        line_no.append(piece[2])

    todo = [(0, count, named, True)]  # (first line, end line, the line the parser named, try the fast path)
    cuts = NAMED_CUTS
    while todo:
        a, z, bad, fast = todo.pop()
        if z <= a:
            continue
        if z - a <= LINE_BY_LINE or not fast:
            add(_parse_lines(text(a, z), path, first_line + a, has_rect, sink))
            continue
        if bad is None:
            got: list[int] = []
            piece = _fast_rows(text(a, z), path, first_line + a, has_rect, sink, z - a, named=got)
            if piece is not None:
                add(piece)
                continue
            bad = a + got[0] if got else None
        if bad is not None and a <= bad < z and cuts:
            cuts -= 1  # the rest in pieces: a piece the parser refuses was parsed up to its bad line for nothing
            todo += [(k, min(k + PIECE, z), None, True) for k in range(bad + 1, z, PIECE)][::-1]
            todo += [(bad, bad + 1, None, False), (a, bad, None, True)]
        else:
            half = (a + z) // 2
            todo += [(half, z, None, True), (a, half, None, True)]
    nfields = RECT_FIELDS if has_rect else ATTR_FIELDS
    return (np.concatenate(nums) if nums else np.zeros((0, nfields - 1)), names,
            np.concatenate(line_no) if line_no else np.zeros(0, np.int64))


def _named_line(exc: Exception) -> int | None:
    """The line (0-based) that pyarrow's CSV error names (``Row #N``, 1-based), or None."""
    import re

    found = re.search(r"\bRow #(\d+)", str(exc))
    return int(found.group(1)) - 1 if found else None


def _judge_lines(data, nums: np.ndarray, names, line_no: np.ndarray, suspect: np.ndarray, path: Path,
                 has_rect: bool, sink: ErrorSink):
    """The fast parse's rows without the ``suspect`` ones that the line-by-line pass rejects: each suspect
    line (a value the fast checks refuse) is parsed on its own, so its error names its line and field as
    when the whole chunk is parsed line by line, and the chunk's other rows keep the fast parse's values.
    Whether a line is kept never depends on the other lines of its chunk, and the time does not either."""
    import pyarrow as pa

    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    keep = ~suspect
    accepted: dict[int, str] = {}
    for r in np.flatnonzero(suspect).tolist():
        start = int(ends[r - 1]) + 1 if r else 0
        end = int(ends[r]) if r < ends.size else raw.size
        vals, name, _ = _parse_lines(raw[start:end].tobytes(), path, int(line_no[r]), has_rect, sink)
        if len(name):  # the line parser takes it (e.g. whitespace around the image name): its values
            nums[r] = vals[0]
            accepted[r] = name[0]
            keep[r] = True
    if accepted:
        texts = names.to_pylist()
        for r, name in accepted.items():
            texts[r] = name
        names = pa.array(texts, type=pa.string())
    return nums[keep], names.filter(pa.array(keep)), line_no[keep]


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def _parse_fast(data, nfields: int, has_rect: bool, lines: int | None = None, empty=np.empty, named=None):
    """The fast parse of list lines (see :func:`parse_chunk`): ``(numbers, names, suspect rows or None)``,
    or None when pyarrow's parser cannot read the text as such lines; ``named``: a list that gets the
    line (0-based) pyarrow's error names, where it names one."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(nfields)]
    types = {n: pa.float64() for n in names[:-1]}
    types[names[-1]] = pa.string()
    # The parser reads from a buffer Arrow owns: with Python bytes (or io.BytesIO) the threaded reader may
    # release its last reference to them on a worker thread after read_csv returned; if the interpreter is
    # exiting then (a CLI run stopping at the first bad line), taking the GIL there aborts the process
    # ("terminate called without an active exception").
    if isinstance(data, pa.Buffer):
        buf = data
    else:
        buf = pa.allocate_buffer(len(data))
        np.frombuffer(buf, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buf),
            # one thread per chunk: the engines run units side by side, and the parser's own threads cost
            # about 10 % more CPU time for the same chunk
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False, double_quote=False,
                                             escape_char=False, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        line = _named_line(exc)
        if named is not None and line is not None:
            named.append(line)
        return None
    if lines is None:
        lines = _count_lines(data if isinstance(data, bytes) else data.to_pybytes())
    n = table.num_rows
    if n != lines or n == 0:
        return None
    # column by column into one (fields, N) array: each column is one contiguous copy of its chunks
    cols = empty((nfields - 1, n))
    for j in range(nfields - 1):
        col = table.column(j)
        if col.null_count:
            return None
        at = 0
        for chunk in col.chunks:
            cols[j, at:at + len(chunk)] = chunk.to_numpy()
            at += len(chunk)
    image = table.column(nfields - 1).combine_chunks()
    del table
    if image.null_count:
        return None
    nums = cols.T
    return nums, image, _suspect_rows(cols, image, has_rect)


def _suspect_rows(cols: np.ndarray, image, has_rect: bool) -> np.ndarray | None:
    """``(N,)`` bool: the rows of a fast parse (``cols`` ``(fields, N)``, ``image`` the names) that the
    line-by-line pass must judge: a value not finite or beyond float32, a blank image name, a flag not 0
    or 1, a box inverted or of zero area in float32. None when there is none (one pass over the chunk
    each, the usual case)."""
    import pyarrow.compute as pc

    blank = pc.or_(pc.equal(pc.utf8_length(image), 0), pc.not_equal(pc.utf8_trim_whitespace(image), image))
    lo, hi = cols.min(), cols.max()  # NaN propagates: not finite, or beyond float32, fails both
    in_range = bool(lo >= -FLOAT32_MAX and hi <= FLOAT32_MAX)
    any_blank = pc.any(blank).as_py()
    bad_flag, bad_box = _rect_masks(cols.T) if has_rect else (None, None)
    rect_bad = has_rect and (bad_flag.any() or bad_box.any())
    if in_range and not any_blank and not rect_bad:
        return None
    suspect = np.zeros(cols.shape[1], bool)
    if not in_range:
        with np.errstate(invalid="ignore"):
            suspect |= ~(np.abs(cols) <= FLOAT32_MAX).all(0)
    if any_blank:
        suspect |= blank.to_numpy(zero_copy_only=False)
    if rect_bad:
        suspect |= bad_flag.any(1) | bad_box
    return suspect


def _rect_masks(nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(flag not 0 or 1 (N, 6), box inverted or of zero area in float32 (N,))`` of rect_attr rows; the box
    by the manifest's rule for a given box (:func:`~landmark_unify.manifest.rules.box_rule`; a value that
    is not finite is judged apart)."""
    flags = nums[:, NUM_COORDS + 4:NUM_COORDS + 10]
    _, inverted, zero_area = box_rule(nums[:, NUM_COORDS:NUM_COORDS + 4], given=True)
    return (flags != 0) & (flags != 1), inverted | zero_area


def _rect_problem(nums: np.ndarray):
    """Index ``(row, field)`` of the first bad box/flag value, or None."""
    rect = nums[:, NUM_COORDS:NUM_COORDS + 4]
    flags = nums[:, NUM_COORDS + 4:NUM_COORDS + 10]
    bad_flag, _ = _rect_masks(nums)
    if bad_flag.any():
        r, c = np.argwhere(bad_flag)[0]
        return int(r), NUM_COORDS + 4 + int(c), f"a flag must be 0 or 1; got {flags[r, c]:g}"
    _, inverted, zero_area = box_rule(rect, given=True)  # the manifest's rule for a given box
    if (inverted | zero_area).any():
        r = int(np.flatnonzero(inverted | zero_area)[0])
        what = "inverted (a corner is left of / above the other)" if inverted[r] else "of zero area"
        r32 = rect[r].astype(np.float32)
        return r, NUM_COORDS + 2 if r32[2] <= r32[0] else NUM_COORDS + 3, f"box is {what}: {rect[r].tolist()}"
    return None


def _parse_lines(data: bytes, path: Path, first_line: int, has_rect: bool, sink: ErrorSink):
    nfields = RECT_FIELDS if has_rect else ATTR_FIELDS
    what = ("196 coordinates, 4 box values, 6 flags and the image path" if has_rect
            else "196 coordinates and the image path")
    rows, names, lines = [], [], []
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for i, raw in enumerate(raw_lines):
        ln = first_line + i
        text = raw.decode("utf-8", errors="replace")
        tokens = text.split()
        if not tokens:
            continue
        try:
            if len(tokens) != nfields:
                raise ParseError(path, f"expected {nfields} fields ({what}); found {len(tokens)}",
                                 line=ln, field="fields" if len(tokens) > nfields else _field_name(len(tokens), has_rect))
            vals = np.empty(nfields - 1)
            for j in range(nfields - 1):
                vals[j] = parse_float(tokens[j], path, line=ln, field=_field_name(j, has_rect))
            if has_rect:
                prob = _rect_problem(vals[None])
                if prob is not None:
                    raise ParseError(path, prob[2], line=ln, field=_field_name(prob[1], has_rect))
        except ParseError as err:
            sink(err)
            continue
        rows.append(vals)
        names.append(tokens[-1])
        lines.append(ln)
    nums = np.stack(rows) if rows else np.zeros((0, nfields - 1))
    return nums, names, np.asarray(lines, dtype=np.int64)


# --- the two list kinds -----------------------------------------------------------------------------

def _read_rect_chunk(unit: Unit, root: Path, sink: ErrorSink, counter: LineCounter | None = None) -> FaceBatch:
    rel_file = unit.files[0]
    path = root / rel_file
    first, lines = unit.first_line, unit.lines
    if first is None and counter is not None:
        counter.claim(unit)
    try:  # straight into Arrow memory: the fast parser reads it without a copy
        if counter is not None:
            data = counter.read(path, unit.start, unit.end - unit.start)
        else:
            with pa.OSFile(str(path)) as f:
                f.seek(unit.start)
                data = f.read_buffer(unit.end - unit.start)
    except OSError as exc:
        data = None
        error = exc
    if first is None:  # this unit's lines were not counted by the plan: count them, then number them
        newlines = count_newlines(data) if data is not None else None
        if newlines is not None and len(data):
            lines = newlines + (0 if np.frombuffer(data, dtype=np.uint8)[-1] == 10 else 1)
        try:
            if counter is not None:
                counter.publish(unit, newlines)
                first = counter.first_line(unit)
            else:
                with pa.OSFile(str(path)) as f:
                    first = 1 + count_newlines(f.read_buffer(unit.start))
        except OSError as exc:
            data, error, first = None, exc, 1
    if data is None:
        sink(ParseError(path, f"cannot read file: {getattr(error, 'strerror', None) or error}", field="file"))
        data = b""
    nums, names, lines = parse_chunk(data, path, first, True, sink, lines if len(data) else None, arrow=True,
                                     empty=counter.numbers if counter is not None else np.empty)
    split = "train" if rel_file.endswith("_train.txt") else "test" if rel_file.endswith("_test.txt") else Path(rel_file).stem
    n = len(names)
    if isinstance(names, pa.Array):  # the fast path: the per-face strings stay Arrow arrays
        import pyarrow.compute as pc

        line_array = pa.array(lines.astype(np.int32))
        return FaceBatch(
            schema="wflw98",
            points=nums[:, :NUM_COORDS].reshape(n, NUM_POINTS, 2),
            split=ArrowColumn(repeat_string(split, n)),
            image_path=ArrowColumn(pc.binary_join_element_wise(f"{IMAGES}/", names, "")),
            origin_file=ArrowColumn(repeat_string(rel_file, n)),
            identity=ArrowColumn(pc.binary_join_element_wise(f"{rel_file}:", pc.cast(line_array, pa.string()), "")),
            origin_line=ArrowColumn(line_array),
            bbox=nums[:, NUM_COORDS:NUM_COORDS + 4],
            attributes=nums[:, NUM_COORDS + 4:NUM_COORDS + 10],
        )
    lines_list = lines.tolist()
    return FaceBatch(
        schema="wflw98",
        points=nums[:, :NUM_COORDS].reshape(n, NUM_POINTS, 2),
        split=[split] * n,
        image_path=[f"{IMAGES}/{s}" for s in names],
        origin_file=[rel_file] * n,
        identity=[f"{rel_file}:{ln}" for ln in lines_list],
        origin_line=lines_list,
        bbox=nums[:, NUM_COORDS:NUM_COORDS + 4],
        attributes=nums[:, NUM_COORDS + 4:NUM_COORDS + 10],
    )


def _read_attr_lists(unit: Unit, root: Path, sink: ErrorSink) -> FaceBatch:
    order: dict[tuple[str, bytes], int] = {}
    coords, names, files, lines, flags = [], [], [], [], []
    flag_of = {f"list_98pt_test{suffix}.txt": idx for suffix, idx in ATTR_LISTS}
    has_attr_lists = any(flag_of.get(Path(f).name) is not None for f in unit.files)
    listed = 0
    for rel_file in unit.files:
        path = root / rel_file
        try:
            data = path.read_bytes()
        except OSError as exc:
            sink(ParseError(path, f"cannot read file: {exc.strerror or exc}", field="file"))
            continue
        nums, nm, ln = parse_chunk(data, path, 1, False, sink)
        listed += len(nm)
        idx = flag_of.get(Path(rel_file).name)
        for row, name, line in zip(nums, nm, ln.tolist()):
            key = (name, row.tobytes())
            at = order.get(key)
            if at is None:
                at = order[key] = len(names)
                coords.append(row)
                names.append(name)
                files.append(rel_file)
                lines.append(line)
                flags.append(np.zeros(6) if has_attr_lists else np.full(6, np.nan))
            if idx is not None:
                flags[at][idx] = 1.0
    n = len(names)
    sink.note("WFLW test faces listed under several attribute lists, merged into one face", max(0, listed - n))
    pts = np.stack(coords).reshape(n, NUM_POINTS, 2) if n else np.zeros((0, NUM_POINTS, 2))
    ident = [f"{IMAGES}/{name}:{hashlib.sha1(c.tobytes()).hexdigest()}" for name, c in zip(names, coords)]
    return FaceBatch(
        schema="wflw98",
        points=pts,
        split=["test"] * n,
        image_path=[f"{IMAGES}/{s}" for s in names],
        origin_file=files,
        identity=ident,
        origin_line=lines,
        attributes=np.stack(flags) if n else np.zeros((0, 6)),
    )
