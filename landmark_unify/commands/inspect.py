"""``landmark_unify inspect FILE``: print the summary of an existing manifest."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a manifest (.parquet)")


def run(args: argparse.Namespace) -> int:
    from ..errors import LandmarkUnifyError
    from ..summary import summarize_manifest

    try:
        text = summarize_manifest(args.file)
    except (LandmarkUnifyError, OSError) as exc:
        print(f"inspect: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0
