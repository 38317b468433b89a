"""``landmark_unify build-manifest``: read datasets in their official layout and write a manifest."""
from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..readers import list_readers

    p.add_argument("-o", "--output", "--out", dest="output", help="output manifest (.parquet)")
    p.add_argument("--source", action="append", default=[], metavar="[LABEL:]KIND=ROOT",
                   help=f"a dataset root; KIND is one of {', '.join(list_readers())}; reader options as "
                        "KIND[opt=value,...]=ROOT (repeatable)")
    p.add_argument("--policy", choices=("strict", "extended"), default="strict",
                   help="which points of a source become valid: exact ones only, or approximations too")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="raise: stop at the first bad record, write nothing; skip: leave it out and list it")
    p.add_argument("--weight", action="append", default=[], metavar="SOURCE=W",
                   help="training weight of every face of SOURCE (a source label or reader kind) in the weight "
                        "column; repeatable; default 1. With --recipe, passed to the recipe's merge")
    p.add_argument("--check-images", action="store_true", help="decode every image; missing or corrupt ones are errors")
    p.add_argument("--relabel-pose", action="store_true", help="fit head pose from the landmarks after writing")
    p.add_argument("--recipe", metavar="NAME", help="run a named build recipe instead (see landmark_unify.recipes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from ..distributed import add_engine_arguments

    add_engine_arguments(p, partition_rows=False)


def run(args: argparse.Namespace) -> int:
    from ..errors import LandmarkUnifyError

    if args.recipe:
        from ..recipes import run_recipe

        return int(run_recipe(args) or 0)
    if not args.output:
        print("build-manifest: -o/--output is required", file=sys.stderr)
        return 2
    if not args.source:
        print("build-manifest: give at least one --source KIND=ROOT", file=sys.stderr)
        return 2
    if args.relabel_pose and args.engine != "local":
        print(f"build-manifest: --relabel-pose runs on the local engine only; with --engine {args.engine} build "
              f"first, then run `landmark_unify relabel-pose {args.output} -o OUT --engine {args.engine}`",
              file=sys.stderr)
        return 2
    from ..build import build_manifest

    command = "landmark_unify " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["build-manifest"] \
        else None
    try:
        report = build_manifest(args.source, args.output, policy=args.policy, on_error=args.on_error,
                                check_images=args.check_images, command=command, engine=args.engine,
                                workers=args.workers, progress=not args.no_progress, weights=args.weight or None,
                                scheduler=args.scheduler, single_file=args.single_file)
    except LandmarkUnifyError as exc:
        print(f"build-manifest: error: {exc}", file=sys.stderr)
        if args.on_error == "raise":
            print("build-manifest: nothing was written", file=sys.stderr)
        return 1
    summary = getattr(report, "summary", None) or str(report)
    if args.relabel_pose:
        from ..pose import relabel_manifest_file
        from ..summary import summarize_manifest

        try:
            counts = relabel_manifest_file(args.output, args.output)
        except LandmarkUnifyError as exc:
            print(f"build-manifest: error while relabelling pose (the manifest is written): {exc}", file=sys.stderr)
            return 1
        summary = summarize_manifest(args.output) + (
            f"\npose relabelled: fitted {counts.get('filled', 0)}, dataset pose kept {counts.get('kept', 0)}, "
            f"unknown {counts.get('unknown', 0)}" if counts else "")
    print(summary)
    return 0
