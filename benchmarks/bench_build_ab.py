"""build-manifest of this checkout against a baseline checkout (e.g. a git worktree of main) on the inputs of
``bench_build_manifest.py``: the same output bytes, and the time of each.

For each input (``--inputs``, default all: ``test``, ``flags-all``, ``flags-train``, ``boxes-rounded``,
``small-set``, ``bad-lines``; see ``bench_build_manifest.py``), written once at N faces, ``--repeat`` rounds; each round
builds with the baseline and with this checkout in fresh subprocesses one after the other (which goes first
alternates), so both see the same machine load. Every build's manifest must have the bytes of the
baseline's first build of that input (the sidecar of skipped records too); any difference is printed and
the exit status is 1.

Printed per input: the median wall and CPU time (user + system, all threads) of each side and the ratio
this checkout / baseline (the ratio of medians, and the median of the per-round ratios).

Run: ``python benchmarks/bench_build_ab.py BASELINE [N] [--inputs NAME ...] [--repeat R]``, BASELINE a
checkout of the project (``git worktree add --detach ../base main``); default N 250000, R 3.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
from pathlib import Path

from bench_build_manifest import BUILD, INPUTS, REPO, expected_rows, on_error, real_lines, run, write_input


def digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", type=Path, help="a checkout of the project to compare against")
    ap.add_argument("size", nargs="?", type=int, default=250_000, help="faces in each input (default 250000)")
    ap.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    ap.add_argument("--repeat", type=int, default=3, help="rounds per input (default 3)")
    args = ap.parse_args()
    sides = {"base": args.baseline.resolve(), "new": REPO}
    if not (sides["base"] / "landmark_unify").is_dir():
        ap.error(f"{args.baseline} is not a checkout of the project")
    failed = False
    print(f"baseline {sides['base']}, candidate {REPO}; {args.size} faces an input, {args.repeat} rounds")
    print(f"{'input':<14} {'base wall':>9} {'new wall':>9} {'ratio':>6} {'base cpu':>9} {'new cpu':>8} {'ratio':>6} "
          f"{'per-round cpu ratios':<24} bytes")
    with tempfile.TemporaryDirectory(prefix="bench_build_ab_") as tmp:
        for kind in args.inputs:
            root = Path(tmp) / kind
            block = real_lines(kind)
            write_input(root, block, args.size)
            times: dict[str, list[dict]] = {"base": [], "new": []}
            expected = None
            same = True
            for r in range(args.repeat):
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for side in order:
                    out = Path(tmp) / f"out_{side}.parquet"
                    res = run(BUILD, str(root), str(out), str(sides[side]), on_error(kind))
                    assert res["rows"] == expected_rows(kind, args.size, len(block)), res
                    times[side].append(res)
                    got = (digest(out), digest(out.with_name(out.stem + ".skipped.jsonl")))
                    if expected is None:
                        expected = got
                    elif got != expected:
                        same = False
                        print(f"  {kind}: round {r} {side}: output {got} differs from {expected}", flush=True)
                    out.unlink()
            failed |= not same

            def med(side, key, times=times):
                return statistics.median(t[key] for t in times[side])

            per_round = [n["cpu"] / b["cpu"] for b, n in zip(times["base"], times["new"])]
            print(f"{kind:<14} {med('base', 'seconds'):>8.2f}s {med('new', 'seconds'):>8.2f}s "
                  f"{med('new', 'seconds') / med('base', 'seconds'):>5.2f}x {med('base', 'cpu'):>8.2f}s "
                  f"{med('new', 'cpu'):>7.2f}s {med('new', 'cpu') / med('base', 'cpu'):>5.2f}x "
                  f"{' '.join(f'{x:.2f}' for x in per_round):<24} {'same' if same else 'DIFFER'}", flush=True)
            for text in root.rglob("*.txt"):  # the next input's text takes its place on disk
                text.unlink()
    print("ratio: this checkout / baseline (medians); cpu: user + system time of all threads")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
