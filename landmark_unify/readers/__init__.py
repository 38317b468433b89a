"""Dataset readers for the official folder layouts, behind one registry.

Each reader turns a dataset root into deterministic work :class:`Unit` objects (``plan``) and a unit into
:class:`FaceBatch` objects (``read``), with points still in the source schema. Kinds:

============== ======================================================== =====================
kind           layout                                                   schema
============== ======================================================== =====================
wflw           WFLW_annotations lists (rect_attr, or per-attribute)     wflw98
lapa           {split}/landmarks/*.txt, images beside                   lapa106
300wlp         {SUBSET}/*.mat (pt2d), landmarks/*/NAME_pts.mat          ibug68_3d / ibug68
aflw2000       imageNNNNN.mat (pt3d_68)                                 ibug68_3d
aflw2000-21    imageNNNNN.mat (pt2d, 21 points)                         aflw21
ibug           **/*.pts beside images (1-based)                         ibug68
hrnet-csv      *.csv of HRNet (1-based)                                 ibug68
coco           *.json COCO keypoints, images beside                     by K
============== ======================================================== =====================

``docs/spec/readers.md`` describes each one.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..core.maps import schema_layout
from ..errors import LandmarkUnifyError, ParseError
from ..manifest.paths import inside_root, outside_root
from . import coco, hrnet, ibug, lapa, mat, wflw
from ._base import (
    FLOAT32_MAX,
    ArrowColumn,
    ErrorSink,
    FaceBatch,
    FaceRecord,
    Unit,
    as_lists,
    batches_from_records,
    check_box,
    repeat_string,
    shown_path,
    sorted_files,
)
from .wflw import LineCounter

__all__ = [
    "ArrowColumn", "ErrorSink", "FaceBatch", "Unit", "Source", "ReaderInfo", "ReadResult", "list_readers", "reader_info",
    "parse_source", "plan_source", "source_notes", "read_unit", "read_source", "inside_root", "outside_root", "check_box", "FLOAT32_MAX",
    "LineCounter", "repeat_string", "shown_path", "sorted_files",
]


@dataclass(frozen=True)
class ReaderInfo:
    kind: str
    description: str
    plan: Callable
    read: Callable
    defaults: tuple[tuple[str, str], ...] = ()
    options: tuple[str, ...] = ()
    #: ``notes(label, root, options) -> [str]``: what a person should know about how the source was read
    #: (files read or left out, coordinates that look off), for the build's summary and metadata
    notes: Callable | None = None
    #: ``plan(..., count_lines=False)`` leaves the line numbers of its units to be counted as they are read
    #: (``read(unit, sink, line_counter=...)``), saving a pass over the files before the first unit starts
    lazy_lines: bool = False


def _aflw21_plan(source, root, options, chunk_bytes=None):
    return mat.plan_aflw2000(source, root, options, chunk_bytes, kind="aflw2000-21")


_READERS: dict[str, ReaderInfo] = {
    r.kind: r for r in (
        ReaderInfo("wflw", "WFLW 98-point lists (rect_attr train/test, or the per-attribute test lists merged)",
                   wflw.plan, wflw.read, lazy_lines=True),
        ReaderInfo("lapa", "LaPa {split}/landmarks/*.txt, 106 points", lapa.plan, lapa.read),
        ReaderInfo("300wlp", "300W-LP .mat (pt2d, or landmarks/*/NAME_pts.mat), Pose_Para",
                   mat.plan_300wlp, mat.read_300wlp, options=("points",)),
        ReaderInfo("aflw2000", "AFLW2000-3D .mat: pt3d_68 (68 points), Pose_Para",
                   mat.plan_aflw2000, mat.read_aflw2000, options=("points",)),
        ReaderInfo("aflw2000-21", "AFLW2000-3D .mat: pt2d (21 AFLW points), Pose_Para",
                   _aflw21_plan, mat.read_aflw2000, defaults=(("points", "pt2d"),), options=("points",)),
        ReaderInfo("ibug", "iBUG/300W .pts files beside images (1-based)", ibug.plan, ibug.read, options=("offset",)),
        ReaderInfo("hrnet-csv", "HRNet 300W CSV (1-based)", hrnet.plan, hrnet.read, options=("offset", "splits"),
                   notes=hrnet.notes),
        ReaderInfo("coco", "COCO keypoint json (MMPose style), schema by keypoint count",
                   coco.plan, coco.read, options=("schema", "offset"), notes=coco.notes),
    )
}


def list_readers() -> list[str]:
    """The reader kinds accepted by :func:`read_source` and ``--source KIND=ROOT``."""
    return sorted(_READERS)


def reader_info(kind: str) -> ReaderInfo:
    try:
        return _READERS[kind]
    except KeyError:
        raise LandmarkUnifyError(f"unknown reader kind {kind!r}; valid: {list_readers()}") from None


@dataclass(frozen=True)
class Source:
    """A dataset to read: ``label`` names it in the manifest, ``root`` is its folder (absolute)."""

    label: str
    kind: str
    root: str
    options: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def make(cls, kind: str, root, label: str | None = None, **options) -> Source:
        info = reader_info(kind)
        unknown = sorted(set(options) - set(info.options))
        if unknown:
            raise LandmarkUnifyError(f"reader {kind!r} has no options {unknown}; valid: {list(info.options)}")
        opts = dict(info.defaults)
        opts.update({k: str(v) for k, v in options.items()})
        for name, value in opts.items():
            _check_option(kind, name, value)
        label = label or kind
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", label):
            raise LandmarkUnifyError(f"source label {label!r} may use only letters, digits, '_', '.', '-'")
        try:
            resolved = Path(root).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # RuntimeError: a link loop (Python < 3.13)
            raise ParseError(root, f"source {label!r}: the root cannot be resolved ({exc}); a link loop?",
                             field="root") from None
        try:
            str(resolved).encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError(os.fsencode(str(resolved)), f"source {label!r}: the root's path is not UTF-8",
                             field="root") from None
        return cls(label, kind, str(resolved), tuple(sorted(opts.items())))

    def spec(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.label}:{self.kind}{f'[{opts}]' if opts else ''}={self.root}"


_POINTS = {"300wlp": mat.POINTS_300WLP, "aflw2000": mat.POINTS_AFLW2000, "aflw2000-21": mat.POINTS_AFLW2000}


def _check_option(kind: str, name: str, value: str) -> None:
    if name == "offset":
        try:
            float(value)
        except ValueError:
            raise LandmarkUnifyError(f"reader {kind!r}: option offset={value!r} is not a number") from None
    elif name == "points" and value not in _POINTS[kind]:
        raise LandmarkUnifyError(f"reader {kind!r}: option points={value!r}; valid: {list(_POINTS[kind])}")
    elif name == "schema":
        from ..core.maps import list_schemas

        if value not in list_schemas():
            raise LandmarkUnifyError(f"reader {kind!r}: option schema={value!r}; valid: {list_schemas()}")


_SPEC = re.compile(r"^(?:(?P<label>[A-Za-z0-9_.\-]+):)?(?P<kind>[a-z0-9\-]+)(?:\[(?P<opts>[^\]]*)\])?=(?P<root>.+)$")


def parse_source(spec: str | Source) -> Source:
    """Parse ``KIND=ROOT``, ``LABEL:KIND=ROOT`` or ``[LABEL:]KIND[opt=value,...]=ROOT``."""
    if isinstance(spec, Source):
        return spec
    m = _SPEC.match(spec.strip())
    if not m:
        raise LandmarkUnifyError(f"bad source {spec!r}: expected KIND=ROOT or LABEL:KIND=ROOT (kinds: {list_readers()})")
    opts = {}
    for item in filter(None, (m.group("opts") or "").split(",")):
        if "=" not in item:
            raise LandmarkUnifyError(f"bad source option {item!r} in {spec!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        opts[k.strip()] = v.strip()
    return Source.make(m.group("kind"), m.group("root"), m.group("label"), **opts)


def plan_source(source: Source, chunk_bytes: int | None = None, count_lines: bool = True) -> list[Unit]:
    """The work units of one source, in a deterministic order. ``count_lines=False``: a reader that can
    (:attr:`ReaderInfo.lazy_lines`) leaves the line numbers of its byte-range units to be counted as they
    are read (give :func:`read_unit` one :class:`LineCounter` of all the units)."""
    root = Path(source.root)
    if not root.is_dir():
        raise ParseError(root, f"source {source.label!r}: root folder not found", field="root")
    info = reader_info(source.kind)
    if not count_lines and info.lazy_lines:
        return info.plan(source.label, root, dict(source.options), chunk_bytes, count_lines=False)
    return info.plan(source.label, root, dict(source.options), chunk_bytes)


def source_notes(source: Source) -> list[str]:
    """The reader's notes on ``source`` (see :class:`ReaderInfo`); empty for most readers."""
    info = reader_info(source.kind)
    return list(info.notes(source.label, Path(source.root), dict(source.options))) if info.notes else []


def read_unit(unit: Unit, on_error: str = "raise", notes: dict | None = None,
              line_counter=None, arrow: bool = False) -> tuple[list[FaceBatch], list[dict]]:
    """Read one unit: its face batches (source schema) and the records skipped under ``on_error='skip'``.
    ``notes``: a dict that gets the counts of what the reader repaired or left out by design
    (:meth:`ErrorSink.note`). ``line_counter``: the ``wflw.LineCounter`` of units planned with
    ``count_lines=False`` (see :func:`plan_source`). ``arrow``: columns a reader holds as
    :class:`~landmark_unify.readers._base.ArrowColumn` stay so (the build's form); by default every
    per-face column is a list."""
    sink = ErrorSink(on_error, unit.source, unit.kind)
    info = reader_info(unit.kind)
    if line_counter is not None and info.lazy_lines:
        got = info.read(unit, sink, line_counter=line_counter)
    else:
        got = info.read(unit, sink)
    if notes is not None:
        for k, v in sink.notes.items():
            notes[k] = notes.get(k, 0) + v
    if got and isinstance(got[0], FaceRecord):
        got = batches_from_records(got, lambda s: schema_layout(s).num_points)
    if not arrow:
        got = [as_lists(b) for b in got]
    return [b for b in got if len(b)], sink.skipped


@dataclass
class ReadResult:
    """Faces of one source: batches in the source schema, and what was skipped."""

    batches: list[FaceBatch]
    skipped: list[dict]

    def __iter__(self) -> Iterator[FaceBatch]:
        return iter(self.batches)

    @property
    def num_faces(self) -> int:
        return sum(len(b) for b in self.batches)


def read_source(kind: str, root, on_error: str = "raise", label: str | None = None, **options) -> ReadResult:
    """Read a whole dataset in its official layout; points stay in the source schema.

    ``on_error='raise'`` raises the first :class:`~landmark_unify.errors.ParseError`; ``'skip'`` leaves
    bad records out and lists them in ``result.skipped``.
    """
    source = Source.make(kind, root, label, **options)
    batches, skipped = [], []
    for unit in plan_source(source):
        b, s = read_unit(unit, on_error)
        batches.extend(b)
        skipped.extend(s)
    return ReadResult(batches, skipped)
