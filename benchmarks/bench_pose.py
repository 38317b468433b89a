"""Pose from landmarks: the batched fit vs a per-face cv2.solvePnP loop, speed and accuracy, same run.

    .venv/bin/python benchmarks/bench_pose.py [--faces 4096] [--repeat 3]

Speed: faces per second on WFLW's real faces (canonical 98 points, all valid), repeated up to --faces.
Accuracy: mean absolute error against Pose_Para on the 16 AFLW2000-3D faces (pt3d_68 x, y under the
default strict policy, and with the projected jaw), for both methods. Needs ../shared/data.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import landmark_unify as lu  # noqa: E402
from landmark_unify.core.pose import PROJECTED_CONTOUR_WEIGHTS  # noqa: E402
from landmark_unify.face_models import load_face_model  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def wflw_faces() -> np.ndarray:
    seen = {}
    for f in sorted((DATA / "WFLW/WFLW_annotations/list_98pt_test").glob("list_98pt_test_*.txt")):
        for line in f.read_text().splitlines():
            t = line.split()
            if len(t) >= 197:
                seen.setdefault(tuple(t[:197]), np.array(t[:196], np.float32).reshape(98, 2))
    return np.stack(list(seen.values()))


def aflw2000():
    from scipy.io import loadmat

    mats = [loadmat(f) for f in sorted((DATA / "AFLW2000").glob("image*.mat"))]
    p68 = np.stack([m["pt3d_68"][:2].T for m in mats]) - 1.0
    pose = np.degrees(np.stack([m["Pose_Para"][0, :3] for m in mats]))
    return p68, pose


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=4096, help="faces for the fit's speed (default 4096)")
    ap.add_argument("--pnp-faces", type=int, default=1000, help="faces for the solvePnP loop's speed (default 1000)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import cv2

    model = load_face_model()
    pts = wflw_faces()
    reps = int(np.ceil(args.faces / len(pts)))
    big = np.tile(pts, (reps, 1, 1))[: args.faces]
    valid = np.ones(big.shape[:2], bool)
    lu.estimate_pose(big[:64], valid[:64], model=model)  # warm up
    t_fit = best_time(lambda: lu.estimate_pose(big, valid, model=model), args.repeat)
    small, vs = big[: args.pnp_faces], valid[: args.pnp_faces]
    size = np.ceil(small.reshape(len(small), -1).max(1) * 1.1)[:, None].repeat(2, 1)
    t_pnp = best_time(lambda: lu.estimate_pose_pnp(small, vs, size, model=model), args.repeat)
    fit_fps, pnp_fps = len(big) / t_fit, len(small) / t_pnp
    print(f"numpy {np.__version__}, OpenCV {cv2.__version__}, threads cv2={cv2.getNumThreads()}")
    print(f"model: {model.source}")
    print(f"speed on {len(big)} WFLW faces (98 points):")
    print(f"  batched fit (estimate_pose):        {fit_fps:10.0f} faces/s  ({t_fit * 1e3:.1f} ms for {len(big)})")
    print(f"  per-face solvePnP (SQPnP + LM):     {pnp_fps:10.0f} faces/s  ({t_pnp * 1e3:.1f} ms for {len(small)})")
    print(f"  ratio fit / solvePnP:               {fit_fps / pnp_fps:10.1f} x   (target >= 20 x)")

    p68, gt = aflw2000()
    print("accuracy on the 16 AFLW2000-3D faces, MAE degrees (pitch, yaw, roll | mean):")
    # pt3d_68 are projections of a fitted 3D face: projected=True, as relabel-pose does for schema ibug68_3d;
    # "as hand-annotated" fits them with the hand-annotation face and weights instead, for comparison
    for name, kwargs, projected in (("pt3d_68, strict (no jaw)", {}, True),
                                    ("pt3d_68, with projected jaw", {"projected_contour": True}, True),
                                    ("pt3d_68 strict, as hand-annotated", {}, False)):
        p98, v98 = lu.to_canonical(p68, "ibug68_3d", **kwargs)
        pnp_model = (model.projected or model) if projected else model
        weights = PROJECTED_CONTOUR_WEIGHTS if projected else model.default_weights()
        for method, est in (("fit", lu.estimate_pose(p98, v98, model=model, projected=projected)),
                            ("solvePnP", lu.estimate_pose_pnp(p98, v98, (450, 450), model=pnp_model,
                                                              point_weights=weights))):
            ok = np.isfinite(est).all(1)
            e = np.abs((est[ok] - gt[ok] + 180) % 360 - 180).mean(0)
            print(f"  {name:34s} {method:9s} n={ok.sum():2d}  {e[0]:5.2f} {e[1]:5.2f} {e[2]:5.2f} | {e.mean():5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
