"""``landmark_unify validate FILE``: check a manifest (file or partitioned dataset directory) against the spec;
exit 1 with the problems if invalid."""
from __future__ import annotations

import argparse
import sys

from ..cli_base import PATH


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", type=PATH, help="manifest(s) to check (files or dataset folders)")


def run(args: argparse.Namespace) -> int:
    from ..manifest import validate

    bad = 0
    for f in args.files:
        problems = validate(f)
        if problems:
            bad += 1
            print(f"{f}: INVALID ({len(problems)} problems)", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
        else:
            print(f"{f}: valid")
    return 1 if bad else 0
