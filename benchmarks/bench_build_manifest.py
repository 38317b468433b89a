"""build-manifest on a large annotation-only input against pandas parsing the same text, with peak memory.

The input is the real WFLW test faces of ``../shared/data/WFLW`` (1966 faces from the six attribute lists)
written as rect_attr lines (196 coordinates, the landmarks' box, the six flags, the image path) and
repeated into ``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt`` in a
temporary folder, to each size asked for. For each size, in fresh subprocesses:

* ``pandas``: ``pandas.read_csv(path, sep=" ", header=None)`` (C parser): parse only, nothing else;
* ``build``: ``landmark_unify.build_manifest`` on the folder (parse, check, map, sample ids, eye columns,
  write the Parquet manifest), progress bar off.

Each subprocess reports its wall time and peak RSS (``resource.getrusage(...).ru_maxrss``). The build's
output size in memory (the Arrow table's ``nbytes``) is printed beside it: peak RSS minus the output is
what the build needs beyond its result, and should not grow with the input.

Run: ``python benchmarks/bench_build_manifest.py [N ...]`` (default 250000 1000000; the 1M input is about
2.3 GB of text).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("LANDMARK_UNIFY_SHARED", REPO.parent / "shared")) / "data"
RECT = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"

PANDAS = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1], sep=" ", header=None)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": len(df), "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

BUILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from landmark_unify.ops.build import build_manifest
t = time.perf_counter()
r = build_manifest([f"wflw={sys.argv[1]}"], sys.argv[2], command="bench", progress=False)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": r.num_faces, "units": r.units,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

BASE = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, tqdm, scipy.io
import landmark_unify.ops.build, landmark_unify.report.summary, landmark_unify.core.eyes
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def real_lines() -> list[str]:
    import numpy as np

    from landmark_unify.readers import read_source

    (b,) = read_source("wflw", SHARED / "WFLW").batches
    cache: dict[Path, list[str]] = {}
    out = []
    for i in range(len(b)):
        p = SHARED / "WFLW" / b.origin_file[i]
        tok = cache.setdefault(p, p.read_text().splitlines())[b.origin_line[i] - 1].split()
        pts = b.points[i]
        box = [int(np.floor(pts[:, 0].min())), int(np.floor(pts[:, 1].min())),
               int(np.ceil(pts[:, 0].max())), int(np.ceil(pts[:, 1].max()))]
        out.append(" ".join(tok[:196] + [str(v) for v in box] + [str(int(f)) for f in b.attributes[i]] + [tok[-1]]))
    return out


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


def main() -> None:
    import pyarrow.parquet as pq

    sizes = [int(a) for a in sys.argv[1:]] or [250_000, 1_000_000]
    lines = real_lines()
    base = run(BASE, str(REPO))["peak_rss"]
    print(f"input: {len(lines)} real WFLW faces repeated; interpreter + libraries alone: {base / 2**20:.0f} MiB RSS")
    print(f"{'faces':>9} {'text MB':>8} {'pandas s':>9} {'build s':>8} {'ratio':>6} {'pandas MiB':>11} "
          f"{'build MiB':>10} {'output MiB':>11} {'build-output-base MiB':>22}")
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        for n in sizes:
            root = Path(tmp) / f"WFLW_{n}"
            path = write_input(root, lines, n)
            out = Path(tmp) / f"out_{n}.parquet"
            path.read_bytes() if path.stat().st_size < 2**30 else None  # warm the page cache a little
            p = run(PANDAS, str(path))
            t0 = time.perf_counter()
            b = run(BUILD, str(root), str(out), str(REPO))
            _ = time.perf_counter() - t0
            assert p["rows"] == n and b["rows"] == n, (p, b)
            nbytes = pq.read_table(out).nbytes
            extra = b["peak_rss"] - nbytes - base
            print(f"{n:>9} {path.stat().st_size / 1e6:>8.0f} {p['seconds']:>9.1f} {b['seconds']:>8.1f} "
                  f"{b['seconds'] / p['seconds']:>5.2f}x {p['peak_rss'] / 2**20:>11.0f} {b['peak_rss'] / 2**20:>10.0f} "
                  f"{nbytes / 2**20:>11.0f} {extra / 2**20:>22.0f}")
            out.unlink()
            path.unlink()
    print("targets: build within 3x of the pandas parse; build - output - base roughly constant across sizes")


if __name__ == "__main__":
    main()
