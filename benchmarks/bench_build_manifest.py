"""build-manifest on large annotation-only inputs against pandas parsing the same text, with peak memory,
CPU use, and relabel-pose streaming over the result.

The inputs are the real WFLW test faces of ``../shared/data/WFLW`` (1966 faces from the six attribute
lists) written as rect_attr lines (196 coordinates, a box, the six flags, the image path) and repeated into
``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt`` in a temporary folder,
to each size asked for. The build's time must not depend on the values in the lines, so there are several
inputs of the same shape (``--inputs``, default all):

* ``test``: the faces with their real flags (the attribute lists they are on), boxes from the landmarks by
  floor/ceil (every point inside its box);
* ``flags-all``: the same faces with all six flags set;
* ``flags-train``: the same faces with random flags (seeded) at the rates of WFLW's train list: taken from
  ``list_98pt_rect_attr_train.txt`` under ``../shared/data/WFLW`` where it is, else the rates of the test
  set (the six attribute lists' lengths over the 2500 test faces, the set the README describes), which
  stand in for them;
* ``boxes-rounded``: the same faces with boxes rounded to the nearest pixel, so some points lie up to half
  a pixel outside their box (as with a detector's rectangle);
* ``small-set``: the 773 faces of ``list_98pt_test_blur.txt`` alone (blur flag 1), repeated: fewer distinct
  values in every column;
* ``bad-lines``: the ``test`` lines with three of every 1966 made bad (a box of zero area, a coordinate
  that is no number, a flag of 2), built with ``on_error="skip"`` (each bad line a skipped record).

For each size and input, in fresh subprocesses, one after the other:

* ``pandas``: ``pandas.read_csv(path, sep=" ", header=None)`` (C parser): parse only, nothing else. When
  the whole frame would not fit in memory (pandas needs about 5.5 GB a million faces here), the same parser
  reads the file in chunks of 100k rows that are dropped as they come (marked ``chunked``);
* ``build``: ``landmark_unify.build_manifest`` on the folder (parse, check, map, sample ids, eye columns,
  duplicate check, write the Parquet manifest; local engine, progress bar off);
* ``relabel`` (the ``test`` input only): ``relabel_pose`` over the build's output (sizes up to
  ``--relabel-max``), streamed the same way.

Each reports wall time, peak RSS (``ru_maxrss``) and CPU time (user + system, all threads), printed as the
share of the machine's cores kept busy and as the build's CPU time over pandas'. Peak memory of the build
should stay flat across sizes: it holds a few units and two row groups, never the output. For each size the
slowest input's ratio is printed next to the ``test`` input's: the bar (1.5x) and the target (1.0x) apply
to the slowest.

Run: ``python benchmarks/bench_build_manifest.py [N ...] [--inputs NAME ...] [--relabel-max N]`` (default
sizes 250000 1000000; the 1M input is about 2.2 GB of text, 4M about 9 GB).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("LANDMARK_UNIFY_SHARED", REPO.parent / "shared")) / "data"
RECT = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"
#: faces per million that pandas needs in memory for this input (measured: 5.5 GB at 1M)
PANDAS_BYTES_PER_FACE = 5.6e3

_MEASURE = """
import json, os, resource, sys, time
def report(rows, t0, c0, **extra):
    c1 = os.times()
    print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows, "cpu": c1.user - c0.user + c1.system - c0.system,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **extra}))
"""

PANDAS = _MEASURE + """
import pandas as pd
t0, c0 = time.perf_counter(), os.times()
if sys.argv[2] == "whole":
    rows = len(pd.read_csv(sys.argv[1], sep=" ", header=None))
else:
    rows = sum(len(c) for c in pd.read_csv(sys.argv[1], sep=" ", header=None, chunksize=100_000))
report(rows, t0, c0)
"""

BUILD = _MEASURE + """
sys.path.insert(0, sys.argv[3])
from landmark_unify.ops.build import build_manifest
t0, c0 = time.perf_counter(), os.times()
r = build_manifest([f"wflw={sys.argv[1]}"], sys.argv[2], command="bench", progress=False, on_error=sys.argv[4])
report(r.num_faces, t0, c0, units=r.units, skipped=len(r.skipped))
"""

RELABEL = _MEASURE + """
sys.path.insert(0, sys.argv[3])
from landmark_unify.ops.relabel import relabel_pose
t0, c0 = time.perf_counter(), os.times()
run = relabel_pose(sys.argv[1], sys.argv[2], progress=False)
report(run.rows, t0, c0, filled=run.extra.get("filled", 0))
"""

BASE = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, tqdm, scipy.io
import landmark_unify.ops.build, landmark_unify.report.summary, landmark_unify.core.eyes
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


#: WFLW's test set: 2500 faces (README_list_98pt_rect_attr_train_test); the attribute lists here are its
#: faces with each flag set
WFLW_TEST_FACES = 2500
ATTR_DIR = "WFLW_annotations/list_98pt_test"
INPUTS = ("test", "flags-all", "flags-train", "boxes-rounded", "small-set", "bad-lines")
#: lines of the real faces made bad in the ``bad-lines`` input: (line index, field index, token)
BAD_LINES = ((100, 198, "{x_min}"), (700, 10, "abc"), (1500, 201, "2"))


def on_error(kind: str) -> str:
    """The build's ``on_error`` for an input: ``skip`` for the one with bad lines."""
    return "skip" if kind == "bad-lines" else "raise"


def expected_rows(kind: str, n: int, block: int) -> int:
    """Faces a build keeps of ``n`` lines of the input whose ``block`` lines are repeated."""
    if kind != "bad-lines":
        return n
    per, rest = divmod(n, block)
    return n - per * len(BAD_LINES) - sum(1 for i, _, _ in BAD_LINES if i < rest)


def real_faces():
    """The real WFLW test faces: ``(coordinate tokens as written (N lists of 196 str), points (N, 98, 2),
    flags (N, 6), image names (N))``."""
    from landmark_unify.readers import read_source

    (b,) = read_source("wflw", SHARED / "WFLW").batches
    cache: dict[Path, list[str]] = {}
    tokens, names = [], []
    for i in range(len(b)):
        p = SHARED / "WFLW" / b.origin_file[i]
        tok = cache.setdefault(p, p.read_text().splitlines())[b.origin_line[i] - 1].split()
        tokens.append(tok[:196])
        names.append(tok[-1])
    return tokens, b.points, b.attributes, names


def train_rates() -> tuple[list[float], str]:
    """The share of faces with each of the six flags in WFLW's train list, and where it comes from: the
    train list under SHARED where it is, else the test set's rates (the attribute lists' lengths over its
    2500 faces)."""
    import numpy as np

    train = SHARED / "WFLW" / RECT
    if train.is_file():
        flags = np.array([line.split()[200:206] for line in train.read_text().splitlines() if line.strip()], float)
        return flags.mean(0).tolist(), f"{train.relative_to(SHARED)} ({len(flags)} faces)"
    lists = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
    counts = [sum(1 for line in (SHARED / "WFLW" / ATTR_DIR / f"list_98pt_test_{a}.txt").read_text().splitlines()
                  if line.strip()) for a in lists]
    return [c / WFLW_TEST_FACES for c in counts], (f"the test set's rates (no train list here): attribute "
                                                   f"lists of {counts} faces over {WFLW_TEST_FACES}")


def real_lines(kind: str = "test", seed: int = 0) -> list[str]:
    """rect_attr lines of the real test faces for the input ``kind`` (see :data:`INPUTS`)."""
    import numpy as np

    tokens, points, flags, names = real_faces()
    keep = np.arange(len(tokens))
    if kind == "small-set":
        keep = np.flatnonzero(flags[:, 5] == 1)  # the faces of list_98pt_test_blur.txt
    elif kind == "flags-all":
        flags = np.ones_like(flags)
    elif kind == "flags-train":
        rates, _ = train_rates()
        flags = (np.random.default_rng(seed).random(flags.shape) < np.asarray(rates)).astype(float)
    elif kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}; one of {INPUTS}")
    lo, hi = points.min(1), points.max(1)
    if kind == "boxes-rounded":  # a point at the extent lies up to half a pixel outside its box
        box = np.concatenate([np.round(lo), np.round(hi)], 1)
    else:
        box = np.concatenate([np.floor(lo), np.ceil(hi)], 1)
    fields = [tokens[i] + [str(int(v)) for v in box[i]] + [str(int(f)) for f in flags[i]] + [names[i]]
              for i in keep.tolist()]
    if kind == "bad-lines":
        for i, field, token in BAD_LINES:
            fields[i][field] = token.format(x_min=fields[i][196])
    return [" ".join(f) for f in fields]


def write_input(root: Path, lines: list[str], n: int) -> Path:
    path = root / RECT
    path.parent.mkdir(parents=True, exist_ok=True)
    block = ("\n".join(lines) + "\n").encode()
    full, rest = divmod(n, len(lines))
    with open(path, "wb") as f:
        for _ in range(full):
            f.write(block)
        if rest:
            f.write(("\n".join(lines[:rest]) + "\n").encode())
    return path


def run(code: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[250_000, 1_000_000])
    ap.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS),
                    help="which inputs (default all; see the module's docstring)")
    ap.add_argument("--relabel-max", type=int, default=1_000_000,
                    help="relabel-pose the build's output of the test input for sizes up to this (default 1000000)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    lines = {k: real_lines(k) for k in args.inputs}
    base = run(BASE, str(REPO))["peak_rss"]
    print(f"inputs: real WFLW test faces repeated ({', '.join(f'{k} {len(v)}' for k, v in lines.items())} "
          f"faces); {cores} cores; interpreter + libraries alone: {base / 2**20:.0f} MiB RSS")
    if "flags-train" in lines:
        rates, where = train_rates()
        print(f"flags-train rates {[round(r, 3) for r in rates]}: {where}")
    mib = 2**20
    print(f"{'faces':>9} {'input':<13} {'text MB':>8} {'pandas s':>9} {'build s':>8} {'ratio':>6} {'pandas MiB':>11} "
          f"{'build MiB':>10} {'cpu build':>10} {'cpu pandas':>11} {'cpu ratio':>10} {'out MiB':>8} {'relabel s':>10} "
          f"{'faces/s':>8} {'relabel MiB':>12}")
    chunked = False
    slowest = []
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        for n in args.sizes:
            ratios, cpu_ratios = {}, {}
            for kind, kind_lines in lines.items():
                root = Path(tmp) / f"WFLW_{n}_{kind}"
                path = write_input(root, kind_lines, n)
                text_mb = path.stat().st_size / 1e6
                out = Path(tmp) / f"out_{n}.parquet"
                mode = "whole" if n * PANDAS_BYTES_PER_FACE < 0.8 * available_memory() else "chunked"
                chunked |= mode == "chunked"
                p = run(PANDAS, str(path), mode)
                b = run(BUILD, str(root), str(out), str(REPO), on_error(kind))
                assert p["rows"] == n and b["rows"] == expected_rows(kind, n, len(kind_lines)), (p, b)
                size_out = out.stat().st_size
                path.unlink()
                r = None
                if n <= args.relabel_max and kind == "test":
                    r = run(RELABEL, str(out), str(Path(tmp) / f"posed_{n}.parquet"), str(REPO))
                    (Path(tmp) / f"posed_{n}.parquet").unlink()
                out.unlink()
                ratios[kind] = b["seconds"] / p["seconds"]
                cpu_ratios[kind] = b["cpu"] / p["cpu"]
                relabel = (f"{r['seconds']:>10.1f} {r['rows'] / r['seconds']:>8.0f} {r['peak_rss'] / mib:>12.0f}" if r
                           else f"{'-':>10} {'-':>8} {'-':>12}")
                print(f"{n:>9} {kind:<13} {text_mb:>8.0f} "
                      f"{p['seconds']:>9.1f} {b['seconds']:>8.1f} {ratios[kind]:>5.2f}x "
                      f"{p['peak_rss'] / mib:>11.0f}{'*' if mode == 'chunked' else ' '}{b['peak_rss'] / mib:>9.0f} "
                      f"{b['cpu'] / b['seconds'] / cores:>9.0%} {p['cpu'] / p['seconds'] / cores:>10.0%} "
                      f"{b['cpu'] / p['cpu']:>9.2f}x "
                      f"{size_out / mib:>8.0f} {relabel}", flush=True)
            worst = max(ratios, key=ratios.get)
            slowest.append((n, worst, ratios[worst], ratios.get("test"), max(cpu_ratios.items(), key=lambda kv: kv[1])))
    if chunked:
        print("* pandas read the file in chunks of 100k rows: the whole frame would not fit in memory")
    print(f"cpu: CPU time (user + system, all threads) / (wall time x {cores} cores); cpu ratio: build CPU time / "
          "pandas CPU time (less moved by other load on the machine than the wall-time ratio)")
    for n, worst, ratio, test, (cpu_worst, cpu_ratio) in slowest:
        print(f"{n:>9} faces: slowest input {worst} {ratio:.2f}x" + (f" (test input {test:.2f}x)" if test else "")
              + f"; most CPU: {cpu_worst} {cpu_ratio:.2f}x pandas' CPU"
              + f"; bar 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}, target 1.0x: {'met' if ratio <= 1.0 else 'not met'}")
    print("targets: build at most 1.0x the pandas parse (bar 1.5x) at 1M on the slowest input; build and relabel "
          "peak memory flat across sizes")


if __name__ == "__main__":
    main()
