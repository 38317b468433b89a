"""``landmark_unify export FILE --format coco -o OUT.json``: a manifest as a COCO keypoint file, for MMPose,
pycocotools, FiftyOne and other tools (``docs/guides/ecosystem.md``)."""
from __future__ import annotations

import argparse
import sys

from ..cli_base import PATH, add_output, add_overwrite, add_where

FORMATS = ("coco",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=PATH, help="a manifest (.parquet file or a dataset folder)")
    p.add_argument("--format", choices=FORMATS, default="coco",
                   help="coco: COCO keypoints, the 98 canonical points named, flip pairs and skeleton in the "
                        "category, visibility from the validity mask, one image entry per image (default)")
    add_output(p, "file to write (OUT.json)")
    add_where(p, "faces")
    add_overwrite(p)
    p.add_argument("--image-root", default=None, metavar="DIR", type=PATH,
                   help="write image file_name relative to DIR (MMPose's data_prefix / FiftyOne's data_path); "
                        "default: absolute paths")


def run(args: argparse.Namespace) -> int:
    """A manifest that cannot be read is reported by the dispatcher (``export: error: ...``, exit 1)."""
    from ..manifest import read
    from ..manifest.filters import filter_rows
    from ..ops.export import export_coco
    from ..outputs import current

    where = args.where  # parsed by the dispatcher: a bad expression failed before the manifest was read
    current().file(args.output, inputs=[args.file], overwrite=args.overwrite)
    df = read(args.file)
    sel = filter_rows(df, where).reset_index(drop=True)
    sel.attrs = dict(df.attrs)
    if len(sel) == 0:
        print("export: no faces" + (f" match --where {where.text!r}" if where else f" in {args.file}")
              + "; nothing written", file=sys.stderr)
        return 1
    desc = f"landmark_unify export of {args.file}" + (f" where {where.text}" if where else "")
    report = export_coco(sel, args.output, image_root=args.image_root, description=desc)
    for w in report.warnings:
        print(f"export: warning: {w}", file=sys.stderr)
    print(f"{report.path}: {report.faces} faces on {report.images} images (COCO keypoints, 98 canonical points)")
    return 0
