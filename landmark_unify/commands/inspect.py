"""``landmark_unify inspect FILE``: print the summary of an existing manifest."""
from __future__ import annotations

import argparse

from ..cli_base import PATH


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=PATH, help="a manifest (.parquet)")


def run(args: argparse.Namespace) -> int:
    """A manifest that cannot be read is reported by the dispatcher (``inspect: error: ...``, exit 1)."""
    from ..report.summary import summarize_manifest

    print(summarize_manifest(args.file))
    return 0
