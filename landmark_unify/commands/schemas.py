"""``landmark_unify schemas``: the point layouts and, per source schema, how many canonical points are
exact, approximate or projected, and which are valid under each policy."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readers", action="store_true", help="also list the dataset readers")


def run(args: argparse.Namespace) -> int:
    from ..core.layouts import get_layout, list_layouts
    from ..core.maps import compile_map, list_schemas, schema_layout

    print("layouts:")
    for name in list_layouts():
        lay = get_layout(name)
        groups = ", ".join(f"{g} {len(lay.group_indices(g))}" for g in lay.present_groups)
        print(f"  {name:<10} {lay.num_points:>4} points  ({groups})  {lay.description}")
    print("maps onto the canonical layout (wflw98, 98 points):")
    print(f"  {'schema':<10} {'layout':<8} {'exact':>6} {'approx':>7} {'proj.':>6} {'strict':>7} {'extended':>9}")
    for s in list_schemas():
        c = compile_map(s, "strict")
        kinds = [k for k in c.kinds if k]
        strict = int(c.valid.sum())
        extended = int(compile_map(s, "extended").valid.sum())
        print(f"  {s:<10} {schema_layout(s).name:<8} {kinds.count('exact'):>6} {kinds.count('approx'):>7} "
              f"{kinds.count('projected'):>6} {strict:>7} {extended:>9}")
    if args.readers:
        from ..readers import list_readers, reader_info

        print("readers:")
        for k in list_readers():
            print(f"  {k:<12} {reader_info(k).description}")
    return 0
