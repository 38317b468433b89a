"""``landmark_unify build-manifest``: read datasets in their official layout and write a manifest."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_base import (
    SOURCE_WEIGHT,
    TEXT,
    add_engine_options,
    add_exclude_options,
    add_on_error,
    add_output,
    add_overwrite,
    add_quiet,
    command_line,
    exclude_kwargs,
    run_options,
)
from ..ops.recipes import RECIPES, recipe_help
from .relabel_pose import add_pose_model_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..readers import list_readers

    add_output(p, "output manifest (.parquet, or a folder for a partitioned dataset)", required=False)
    p.add_argument("--source", action="append", default=[], metavar="[LABEL:]KIND=ROOT", type=TEXT,
                   help=f"a dataset root; KIND is one of {', '.join(list_readers())}; reader options as "
                        "KIND[opt=value,...]=ROOT (repeatable)")
    p.add_argument("--policy", choices=("strict", "extended"), default="strict",
                   help="which points of a source become valid: exact ones only, or approximations too")
    add_on_error(p)
    p.add_argument("--weight", action="append", default=[], metavar="SOURCE=W", type=SOURCE_WEIGHT,
                   help="training weight of every face of SOURCE (a source label or reader kind) in the weight "
                        "column; repeatable; default 1. With --recipe, passed to the recipe's merge")
    p.add_argument("--check-images", action="store_true", help="decode every image; missing or corrupt ones are errors")
    p.add_argument("--relabel-pose", action="store_true", help="fit head pose from the landmarks after writing")
    add_pose_model_options(p)
    recipes = "; ".join(f"{name}: {r.description} (sources {', '.join(r.kinds)})" for name, r in sorted(RECIPES.items()))
    p.add_argument("--recipe", metavar="NAME", choices=sorted(RECIPES), help=f"run a named multi-source build instead: {recipes}. "
                                                    "The recipes and their steps are listed below")
    p.add_argument("--splits", action="append", default=[], metavar="SOURCE=SPLIT[,SPLIT...]", type=TEXT,
                   help="with --recipe: keep only these splits of a source (label or kind), e.g. "
                        "--splits wflw=train,lapa=train,val; repeatable. Default: every split, with a warning for "
                        "test / validation splits taken into a training set")
    add_exclude_options(p)  # with --recipe: applied by the recipe's merge
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = recipe_help()
    p.add_argument("--allow-outside-root", action="store_true",
                   help="accept image paths in the annotations that leave their source root (../, absolute "
                        "paths); each is an error (or, with --on-error skip, a counted skip) otherwise")
    add_overwrite(p)
    add_quiet(p)
    add_engine_options(p, partition_rows=False)


def run(args: argparse.Namespace) -> int:
    if args.recipe:
        return run_recipe(args)
    if args.splits:
        print("build-manifest: --splits goes with --recipe", file=sys.stderr)
        return 2
    if args.exclude or args.drop_leaks or args.exclude_where:
        print("build-manifest: --exclude, --exclude-where and --drop-leaks go with --recipe (or use merge)",
              file=sys.stderr)
        return 2
    if not args.output:
        print("build-manifest: -o/--output is required", file=sys.stderr)
        return 2
    if not args.source:
        print("build-manifest: give at least one --source KIND=ROOT", file=sys.stderr)
        return 2
    from ..errors import LandmarkUnifyError
    from ..ops.build import build_manifest

    run = run_options(args)
    try:
        report = build_manifest(args.source, args.output, policy=args.policy, on_error=args.on_error,
                                check_images=args.check_images, command=command_line("landmark_unify", args),
                                weights=args.weight or None, allow_outside_root=args.allow_outside_root,
                                overwrite=args.overwrite, run=run)
    except LandmarkUnifyError as exc:
        print(f"build-manifest: error: {exc}", file=sys.stderr)
        print("build-manifest: nothing was written", file=sys.stderr)
        return 1
    summary = report.summary
    if args.relabel_pose:
        from ..ops.relabel import POSE_COUNTS, relabel_pose
        from ..report.summary import summarize_manifest

        try:
            fitted = relabel_pose(args.output, args.output, mean_shape=args.mean_shape, shape_key=args.shape_key,
                                  overwrite=True, run=run.replace(single_file=None))  # in place, on the manifest just written
        except LandmarkUnifyError as exc:
            print(f"build-manifest: error while relabelling pose (nothing was written): {exc}", file=sys.stderr)
            return 1
        counts = {k: int(fitted.extra.get(k, 0)) for k in POSE_COUNTS}
        summary = summarize_manifest(args.output) + (
            f"\npose relabelled: fitted {counts['filled']}, dataset pose kept {counts['kept']}, "
            f"unknown {counts['unknown']}")
    print(summary)
    return 0


def run_recipe(args: argparse.Namespace) -> int:
    """``build-manifest --recipe NAME``: the recipe with the command's sources and options."""
    from ..errors import LandmarkUnifyError

    recipe = RECIPES.get(args.recipe)
    if recipe is None:
        print(f"build-manifest: unknown recipe {args.recipe!r}; valid: {sorted(RECIPES)}", file=sys.stderr)
        return 2
    out = args.output or recipe.default_output
    try:
        excl = exclude_kwargs(args)
        balance = recipe.build(args.source, out, policy=args.policy, on_error=args.on_error,
                               check_images=bool(args.check_images), weights=args.weight or None,
                               log=lambda m: print(m, file=sys.stderr), command=command_line("landmark_unify", args),
                               mean_shape=args.mean_shape, shape_key=args.shape_key, splits=args.splits or None,
                               **excl, run=run_options(args, single_file=None))
    except LandmarkUnifyError as exc:
        print(f"build-manifest --recipe {args.recipe}: error: {exc}", file=sys.stderr)
        return 1
    md = Path(balance["report_files"][1]).read_text(encoding="utf-8")
    print(f"{out}: {balance['faces']} faces; balance report {balance['report_files'][1]}\n")
    print(md)
    for w in balance.get("warnings", []):
        print(f"warning: {w}")
    print(f"command: {command_line('landmark_unify', args)}", file=sys.stderr)
    return 0
