"""to_canonical throughput against plain per-face Python loops doing the same mapping, in the same run.

Input: the real 300W faces (``../shared/data/300W``, iBUG 68 points) tiled to N faces with a little
jitter, and a share of missing points (NaN). Baselines:

* ``plain loop`` (the target's baseline): a plain Python loop over faces and the 98 target points with
  Python floats, doing the same mapping (what a per-face conversion script does);
* ``per-face call`` (a stricter baseline): a Python loop calling ``to_canonical`` itself on one
  ``(68, 2)`` face at a time, so the per-face work is already vectorised over the points.

Every result is checked equal to the batched one; each timing is the best of several runs (the batched
call over all N faces, the loops over the first 5000). Run: ``python benchmarks/bench_to_canonical.py [N]``.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from landmark_unify.core.maps import compile_map, to_canonical  # noqa: E402
from landmark_unify.readers import read_source  # noqa: E402


def faces(n: int) -> np.ndarray:
    shared = REPO.parent / "shared/data/300W"
    if shared.is_dir():
        base = np.concatenate([b.points for b in read_source("ibug", shared).batches])
    else:
        base = np.concatenate([b.points for b in read_source("ibug", REPO / "landmark_unify/demo_data/300W").batches])
    rng = np.random.default_rng(0)
    pts = base[rng.integers(0, len(base), n)] + rng.normal(0, 1.0, (n, 68, 2))
    pts[rng.random((n, 68)) < 0.02] = np.nan
    return pts.astype(np.float32)


def per_face_call(pts: np.ndarray, policy: str):
    out = np.empty((len(pts), 98, 2), np.float32)
    valid = np.empty((len(pts), 98), bool)
    for i in range(len(pts)):
        out[i], valid[i] = to_canonical(pts[i], "ibug68", policy)
    return out, valid


def pure_python(pts: np.ndarray, policy: str):
    c = compile_map("ibug68", policy)
    a, b, ok = c.a.tolist(), c.b.tolist(), c.valid.tolist()
    rows = pts.tolist()
    out, valid = [], []
    nan = float("nan")
    for face in rows:
        o, v = [], []
        for j in range(98):
            pa_, pb = face[a[j]], face[b[j]]
            good = ok[j] and all(math.isfinite(x) for x in (pa_[0], pa_[1], pb[0], pb[1]))
            o.append([(pa_[0] + pb[0]) * 0.5, (pa_[1] + pb[1]) * 0.5] if good else [nan, nan])
            v.append(good)
        out.append(o)
        valid.append(v)
    return np.asarray(out, np.float32), np.asarray(valid, bool)


def best_of(fn, repeat: int):
    best, res = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    n_loop = min(n, 5_000)
    pts = faces(n)
    print(f"to_canonical benchmark: {n} faces of 68 points (real 300W faces, jittered, 2% missing)")
    print(f"{'policy':<9} {'batched faces/s':>16} {'plain loop faces/s':>19} {'per-face call faces/s':>22} "
          f"{'x plain loop':>13} {'x per-face call':>16}")
    for policy in ("strict", "extended"):
        # best of several runs each: the machine may be shared, and the best run is the least disturbed
        t_batch, (ref, ref_v) = best_of(lambda p=policy: to_canonical(pts, "ibug68", p), 7)
        t_face, (o1, v1) = best_of(lambda p=policy: per_face_call(pts[:n_loop], p), 3)
        t_py, (o2, v2) = best_of(lambda p=policy: pure_python(pts[:n_loop], p), 3)
        for o, v in ((o1, v1), (o2, v2)):
            assert np.array_equal(v, ref_v[:n_loop])
            np.testing.assert_allclose(o[v], ref[:n_loop][v], rtol=1e-6)
        r_batch, r_face, r_py = n / t_batch, n_loop / t_face, n_loop / t_py
        print(f"{policy:<9} {r_batch:>16,.0f} {r_py:>19,.0f} {r_face:>22,.0f} {r_batch / r_py:>12.0f}x "
              f"{r_batch / r_face:>15.0f}x")
    print("target: batched >= 50x the plain per-face loop")


if __name__ == "__main__":
    main()
