"""``landmark_unify audit`` measured: injected errors (points only, and with images), real errors, scale.

Sections (``--only`` picks some):

* ``points``: the 1966 real WFLW test faces of ``../shared/data/WFLW``. Three runs, one per size level; in
  each, ``--per-type`` faces (disjoint, fixed seed) get each error type of
  :mod:`landmark_unify.core.inject` (whole face swapped, an eye or brow pair exchanged, a group shifted
  along its outline's normal / tangent by 0.05, 0.1, 0.2 IOD, one point moved 0.1, 0.2, 0.4 IOD, a group
  reversed, another face's points, a box off the points), the manifest is written and audited in full
  (``audit_manifest``: the shape models learn from the injected manifest). Each type is ranked against the
  untouched faces: recall at k (k = faces injected), average precision, the share flagged
  (suspicion >= FLAG_Z) and the share of those whose findings name the type; and the untouched faces'
  flagged share. The faces known to be mislabelled take no injection: those a person verified
  (:data:`VERIFIED_WFLW_TEST_ERRORS`) and those that break a model-free rule of the audit (a loop's ends
  collapsed, a side out of left-right order: on the WFLW test set 71 and 6 faces, 73 in all with the verified ones). The
  supplementary columns also leave them out of the faces ranked against: real labelling errors, which the
  primary columns count as untouched faces the injected errors must beat.
* ``points300w``: the same on the 1289 300W faces of ``../shared/data/300W_hrnet_csv`` (68 points mapped
  strictly: 43 canonical points valid, no contour), the errors put on the valid points and parts: a
  mapped layout, and a set with fewer errors of its own than the WFLW test set.
* ``other`` / ``other300w``: the same faces with errors the targets do not name, on every part (eyes and
  nose included): a part moved (random direction), turned or scaled (up and down) so that its farthest
  point moves 0.1, 0.2, 0.3 IOD, and two neighbouring points of a part exchanged: the audit is built for
  the class of error, not for the benchmark's types.
* ``images``: the WFLW faces that have photos, whole faces translated or scaled by 0.1-0.3 IOD (box moved
  with them), audited with the reference ONNX model(s) of ``../shared/data/reference_models`` and, as the
  baseline, from the points alone.
* ``real``: AFLW2000-3D dev (``../shared/data/AFLW2000-3D_dev``): the original ``pts68_3d`` labels ranked;
  the 10 % whose inner points lie farthest (mean distance over IOD) from the hand re-annotation are the
  errors. AP of the audit's shape signals against a plain Procrustes + PCA residual (on all 68 points or
  the 51 inner ones, 80-95 % of the variance kept) and chance.
* ``scale``: synthetic manifests (the WFLW faces repeated with jitter) audited at ``--scale-sizes``; time
  and peak RSS in fresh subprocesses.

Run: ``python benchmarks/bench_audit.py [--only points points300w other other300w images real scale]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("LANDMARK_UNIFY_SHARED", REPO.parent / "shared")) / "data"

import landmark_unify as lu  # noqa: E402
from landmark_unify.core import audit as ca  # noqa: E402
from landmark_unify.core.inject import EXPECTED, inject  # noqa: E402
from landmark_unify.manifest import table_from_dataframe, write_manifest, write_manifest_stream  # noqa: E402
from landmark_unify.ops.audit import FLAG_Z, SIGNAL_MIN_SCALE, audit_manifest, calibrate, read_audit  # noqa: E402

#: untouched WFLW test faces whose labels a person checked and found wrong (docs/figures/audit.md, the picture of
#: the untouched top): the supplementary columns leave them out of the faces an injected error is ranked against
VERIFIED_WFLW_TEST_ERRORS = {
    "a65a53b1cc898f0c": "brows exchanged: the only faces of the set whose brows lie the other way round from their eyes",
    "335173157fea3fb3": "brows exchanged (as above)",
    "5a88ccf49a8dbde7": "the 20 mouth points in no order across the mouth (the photo is in the sample)",
}

PARTS_SHIFT = ("contour", "brow_l", "brow_r", "lip_outer", "lip_inner")
PARTS_REVERSE = ("contour", "brow_l", "brow_r", "lip_outer", "lip_inner", "eye_l", "eye_r", "nose_base")


def ap(score: np.ndarray, label: np.ndarray) -> float:
    o = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    lab = label[o]
    tp = np.cumsum(lab)
    prec = tp / np.arange(1, len(lab) + 1)
    return float((prec * lab).sum() / max(lab.sum(), 1))


def recall_at_k(score: np.ndarray, label: np.ndarray) -> float:
    k = int(label.sum())
    o = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    return float(label[o[:k]].sum() / max(k, 1))


def wflw_manifest(tmp: Path) -> Path:
    out = tmp / "wflw.parquet"
    if not out.exists():
        lu.build_manifest([f"wflw={SHARED / 'WFLW'}"], out, progress=False)
    return out


def known_errors(manifest: Path, audit_out: Path) -> np.ndarray:
    """``(N,)`` bool: the faces of an untouched manifest known to be mislabelled: verified by a person
    (:data:`VERIFIED_WFLW_TEST_ERRORS`) or breaking a model-free rule of the audit (a side out of left-right
    order, a loop's ends collapsed), read from its audit."""
    out = read_audit(audit_manifest(manifest, audit_out, progress=False, overwrite=True).output)
    return (out["sample_id"].isin(list(VERIFIED_WFLW_TEST_ERRORS)).to_numpy()
            | out["collapsed_ends"].notna().to_numpy() | out["out_of_order"].notna().to_numpy())


def _types(level: int):
    normal = (0.05, 0.1, 0.2)[level]
    point = (0.1, 0.2, 0.4)[level]
    return [("swap_face", None), ("swap_pair", None), ("shift_normal", normal), ("shift_tangent", normal),
            ("move_point", point), ("reverse", None), ("other_face", None), ("box_off", None)]


#: the ``other`` section: errors the targets do not name, each size the largest displacement in IOD
OTHER_SIZES = (0.1, 0.2, 0.3)


def _other_types(level: int):
    size = OTHER_SIZES[level]
    return [("move_part", size), ("rotate_part", size), ("scale_part", size), ("swap_points", None)]


def w300_manifest(tmp: Path) -> Path:
    out = tmp / "w300.parquet"
    if not out.exists():
        lu.build_manifest([f"hrnet-csv={SHARED / '300W_hrnet_csv'}"], out, progress=False)
    return out


def _scored_parts(valid: np.ndarray, names: tuple[str, ...]) -> tuple[str, ...]:
    """The parts of ``names`` with 3 or more points valid on every face (a mapped layout lacks some)."""
    parts = {p.name: p.indices for p in ca.outline_parts()}
    return tuple(n for n in names if valid[:, parts[n]].sum(1).min() >= 3)


def run_points(tmp: Path, per_type: int, seeds: int = 1, dataset: str = "wflw", other: bool = False) -> list[dict]:
    """``dataset``: ``wflw`` (the 1966 WFLW test faces, 98 points) or ``300w`` (the 1289 300W faces of the
    HRNet CSV, 68 points mapped strictly: 43 canonical points valid, no contour; errors go to the valid
    points and parts). ``other``: the errors of :func:`_other_types` (a part moved, turned or scaled, two
    neighbouring points exchanged) on every part, eyes and nose included, instead of the targets' types."""
    src = wflw_manifest(tmp) if dataset == "wflw" else w300_manifest(tmp)
    base = lu.read_manifest(src)
    meta = base.attrs["manifest"]
    valid = np.stack(base["valid"].to_numpy())
    parts_shift = _scored_parts(valid, PARTS_SHIFT + ("nose_base",)) if dataset != "wflw" else PARTS_SHIFT
    parts_reverse = _scored_parts(valid, PARTS_REVERSE) if dataset != "wflw" else PARTS_REVERSE
    ca_parts = {p.name: p.indices for p in ca.outline_parts()}
    parts_all = _scored_parts(valid, tuple(ca_parts))
    # the untouched set's own labelling errors (verified by a person, or breaking a model-free rule of the audit:
    # a loop's ends collapsed, a side out of left-right order) take no injection: an error injected into a face
    # already wrong would be found for the wrong reason
    known = known_errors(src, tmp / f"untouched_{dataset}.parquet")
    rows = []
    for seed, level in ((s, lv) for s in range(seeds) for lv in range(3)):
        rng = np.random.default_rng(level + 100 * seed)
        df = base.copy()
        types = _other_types(level) if other else _types(level)
        order = rng.permutation(np.flatnonzero(~known))
        chosen = {}
        for j, (kind, size) in enumerate(types):
            idx = order[j * per_type:(j + 1) * per_type]
            chosen[(kind, size)] = idx
            for n, i in enumerate(idx):
                opts = {}
                if kind == "swap_pair":
                    opts["part"] = ("eye_l", "brow_l")[n % 2]
                elif kind in ("shift_normal", "shift_tangent"):
                    opts = {"part": parts_shift[n % len(parts_shift)], "size": size}
                elif kind == "move_point":
                    point = int(rng.integers(98)) if valid[i].all() else int(rng.choice(np.flatnonzero(valid[i])))
                    opts = {"point": point, "size": size, "angle": float(rng.uniform(0, 2 * np.pi))}
                elif kind == "reverse":
                    opts["part"] = parts_reverse[n % len(parts_reverse)]
                elif kind == "other_face":
                    opts["other"] = base.at[int(order[-1 - n]), "landmarks"]
                elif kind in ("move_part", "rotate_part", "scale_part"):
                    opts = {"part": parts_all[n % len(parts_all)], "size": size * (1 if n % 4 < 2 else -1),
                            "angle": float(rng.uniform(0, 2 * np.pi))}
                elif kind == "swap_points":
                    part = parts_all[n % len(parts_all)]
                    run = ca_parts[part][valid[i, ca_parts[part]]]
                    opts = {"part": part, "point": int(run[rng.integers(len(run))])}
                p, b = inject(base.at[i, "landmarks"], base.at[i, "bbox"], kind, **opts)
                df.at[i, "landmarks"], df.at[i, "bbox"] = p, b
                df.at[i, "valid"] = np.isfinite(p).all(1)
        path = tmp / f"injected_{dataset}_{level}.parquet"
        write_manifest(table_from_dataframe(df), path, meta)
        t0 = time.perf_counter()
        res = audit_manifest(path, tmp / f"audit_{dataset}_{level}.parquet", progress=False, overwrite=True)
        secs = time.perf_counter() - t0
        out = read_audit(res.output)
        susp = out["suspicion"].to_numpy()
        touched = np.zeros(len(df), bool)
        for idx in chosen.values():
            touched[idx] = True
        clean = ~touched
        clean_flag = float((susp[clean] >= FLAG_Z).mean())
        for (kind, size), idx in chosen.items():
            sel = clean.copy()
            sel[idx] = True
            lab = np.zeros(len(df), bool)
            lab[idx] = True
            want = EXPECTED[kind]
            named = float(np.mean([want in out.at[i, "findings"] for i in idx])) if want else float("nan")
            rows.append({"dataset": dataset, "seed": seed, "level": level, "kind": kind, "size": size, "k": len(idx),
                         "recall_at_k": recall_at_k(susp[sel], lab[sel]), "ap": ap(susp[sel], lab[sel]),
                         "flagged": float((susp[idx] >= FLAG_Z).mean()), "named": named,
                         "clean_flagged": clean_flag, "audit_s": secs,
                         # the same, the untouched faces known to be mislabelled left out of the negatives
                         "recall_at_k_verified": recall_at_k(susp[sel & ~known], lab[sel & ~known]),
                         "ap_verified": ap(susp[sel & ~known], lab[sel & ~known]),
                         "verified_left_out": int(known.sum()),
                         "clean_flagged_verified": float((susp[clean & ~known] >= FLAG_Z).mean())})
        print(f"{dataset} seed {seed} level {level}: audit {secs:.1f} s, untouched faces flagged {100 * clean_flag:.1f} %", flush=True)
    return rows


def run_images(tmp: Path, per_type: int) -> list[dict]:
    from pfpld_train.inference.audit import load_audit_model

    src = wflw_manifest(tmp)
    base = lu.read_manifest(src)
    paths = lu.image_paths(base)
    has = np.array([p is not None and Path(p).is_file() for p in paths])
    df = base[has].reset_index(drop=True)
    meta = dict(base.attrs["manifest"])
    meta["source_roots"] = {k: str((Path(src).parent / v).resolve()) if not Path(v).is_absolute() else v
                            for k, v in meta["source_roots"].items()}
    # as in run_points: the known labelling errors among them take no injection, and are left out of the
    # supplementary columns' negatives
    write_manifest(table_from_dataframe(df), tmp / "images_untouched.parquet", meta)
    known = known_errors(tmp / "images_untouched.parquet", tmp / "images_untouched_audit.parquet")
    rng = np.random.default_rng(7)
    order = rng.permutation(np.flatnonzero(~known))
    chosen = {}
    bad = df.copy()
    for j, (kind, size) in enumerate([("translate", 0.1), ("translate", 0.2), ("translate", 0.3),
                                      ("scale", 0.1), ("scale", 0.2), ("scale", 0.3)]):
        idx = order[j * per_type:(j + 1) * per_type]
        chosen[(kind, size)] = idx
        for n, i in enumerate(idx):
            sign = 1 if n % 2 == 0 else -1
            p, b = inject(df.at[i, "landmarks"], df.at[i, "bbox"], kind, size=sign * size)
            bad.at[i, "landmarks"], bad.at[i, "bbox"] = p, b
    path = tmp / "images.parquet"
    write_manifest(table_from_dataframe(bad), path, meta)
    models = {"ghostone": SHARED / "reference_models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx",
              "proxyless": SHARED / "reference_models/proxyless_gaze_pfld/landmark_detection.onnx"}
    presets = {"ghostone": "pfld_ghostone", "proxyless": "proxyless_gaze"}
    runs = {"points only": []}
    for name, p in models.items():
        if p.is_file():
            runs[name] = [load_audit_model(f"{p}@{presets[name]}")]
    if len(runs) == 3:
        runs["both models"] = runs["ghostone"] + runs["proxyless"]
    rows = []
    touched = np.zeros(len(df), bool)
    for idx in chosen.values():
        touched[idx] = True
    for run, models_ in runs.items():
        t0 = time.perf_counter()
        res = audit_manifest(path, tmp / "images_audit.parquet", models=models_, progress=False, overwrite=True)
        secs = time.perf_counter() - t0
        out = read_audit(res.output)
        susp = out["suspicion"].to_numpy()
        for (kind, size), idx in chosen.items():
            sel = ~touched
            sel[idx] = True
            lab = np.zeros(len(df), bool)
            lab[idx] = True
            zm = out["z_model"].to_numpy(np.float64)
            rows.append({"run": run, "kind": kind, "size": size, "k": len(idx), "faces": len(df),
                         "recall_at_k": recall_at_k(susp[sel], lab[sel]), "ap": ap(susp[sel], lab[sel]),
                         "ap_model_signal": ap(zm[sel], lab[sel]) if np.isfinite(zm).any() else float("nan"),
                         "recall_at_k_model_signal": recall_at_k(zm[sel], lab[sel]) if np.isfinite(zm).any()
                         else float("nan"),
                         "named": float(np.mean(["model_disagreement" in out.at[i, "findings"] for i in idx])),
                         "clean_flagged": float((susp[~touched] >= FLAG_Z).mean()), "audit_s": secs,
                         "ap_verified": ap(susp[sel & ~known], lab[sel & ~known]),
                         "recall_at_k_verified": recall_at_k(susp[sel & ~known], lab[sel & ~known]),
                         "verified_left_out": int(known.sum())})
        print(f"images, {run}: {secs:.1f} s", flush=True)
    return rows


def procrustes_pca_residual(points: np.ndarray, share: float = 0.95) -> np.ndarray:
    """The baseline: ordinary (least-squares) Procrustes to the mean, PCA of the aligned shapes, residual norm."""
    z = points[..., 0] + 1j * points[..., 1]
    z = z - z.mean(1, keepdims=True)
    z = z / np.sqrt((np.abs(z) ** 2).sum(1, keepdims=True))
    mean = z[0]
    for _ in range(5):
        a = (np.conj(z) * mean).sum(1, keepdims=True) / (np.abs(z) ** 2).sum(1, keepdims=True)
        y = a * z
        mean = y.mean(0)
        mean = mean / np.sqrt((np.abs(mean) ** 2).sum())
    v = np.concatenate([y.real, y.imag], 1)
    d = v - v.mean(0)
    ev, vec = np.linalg.eigh(d.T @ d)
    ev, vec = ev[::-1], vec[:, ::-1]
    m = int(np.searchsorted(np.cumsum(ev) / ev.sum(), share) + 1)
    b = vec[:, :m]
    r = d - d @ b @ b.T
    return np.linalg.norm(r, axis=1)


def run_real() -> list[dict]:
    d = np.load(SHARED / "AFLW2000-3D_dev/aflw2000_3d_dev.npz")
    orig = d["pts68_3d"][..., :2].astype(np.float64) - 1  # 1-based, as the readers take it
    hand = d["pts68_2d_reannotated"].astype(np.float64) - 1
    lay = lu.get_layout("ibug68")
    inner = np.array([g != "contour" for g in lay.groups])
    a, b = lay.norm_indices
    iod = np.linalg.norm(hand[:, a] - hand[:, b], axis=-1)
    err = np.linalg.norm(orig - hand, axis=-1)[:, inner].mean(1) / iod
    label = err >= np.quantile(err, 0.9)
    pts98, val98 = lu.to_canonical(orig.astype(np.float32), "ibug68_3d", policy="strict")
    pts98 = np.asarray(pts98, np.float64)
    t0 = time.perf_counter()
    model = ca.fit_shape_model(pts98, val98)
    s = ca.score_shapes(pts98, val98, model)
    grp = np.zeros(len(pts98), object)
    with np.errstate(invalid="ignore"):
        z = np.stack([calibrate(ca.point_signal(s.point_z), grp, SIGNAL_MIN_SCALE["point"]),
                      calibrate(np.nanmax(s.part_rms, 1), grp, SIGNAL_MIN_SCALE["part"]),
                      calibrate(np.nanmax(s.part_shift_z, 1), grp, SIGNAL_MIN_SCALE["shift"]),
                      calibrate(np.nanmax(np.abs(s.part_thickness_z), 1), grp, SIGNAL_MIN_SCALE["thickness"]),
                      calibrate(np.nanmax(ca.push_z(s.part_shift_z, s.part_thickness_z), 1), grp,
                                SIGNAL_MIN_SCALE["push"])], 1)
    audit_score = np.nanmax(z, 1)
    secs = time.perf_counter() - t0
    rows = [{"method": "audit (shape signals: point, part, shift, thickness, push)", "ap": ap(audit_score, label),
             "seconds": secs}]
    for points, name in ((orig, "all 68 points"), (orig[:, inner], "51 inner points")):
        for share in (0.8, 0.9, 0.95):
            rows.append({"method": f"Procrustes + PCA residual, {name}, {share:.0%} variance",
                         "ap": ap(procrustes_pca_residual(points, share), label)})
    rows.append({"method": "chance", "ap": float(label.mean())})
    for name, sig in (("audit: point signal", z[:, 0]), ("audit: part signal", z[:, 1]),
                      ("audit: shift signal", z[:, 2]), ("audit: thickness signal", z[:, 3]),
                      ("audit: push signal", z[:, 4])):
        rows.append({"method": name, "ap": ap(sig, label)})
    return rows


def _scale_input(n: int, tmp: str) -> None:
    """Write the synthetic manifest of ``n`` faces (its own process: building it is not the audit's memory)."""
    src = wflw_manifest(Path(tmp))
    base = lu.read_manifest(src)
    rng = np.random.default_rng(0)
    path = Path(tmp) / f"scale_{n}.parquet"
    chunk = 100_000  # written in row groups of this many faces: the input never sits whole in memory

    def tables():
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            df = base.iloc[np.arange(start, start + m) % len(base)].reset_index(drop=True)
            pts = lu.landmarks_array(df) + rng.normal(0, 0.5, (m, 98, 2)).astype(np.float32)
            df["landmarks"] = list(pts)
            df["sample_id"] = [f"{i:016x}" for i in range(start, start + m)]
            yield table_from_dataframe(df)

    write_manifest_stream(tables(), path, base.attrs["manifest"])


def _scale_child(n: int, tmp: str) -> None:
    path = Path(tmp) / f"scale_{n}.parquet"
    t0 = time.perf_counter()
    audit_manifest(path, Path(tmp) / f"scale_{n}_audit.parquet", progress=False, overwrite=True)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"faces": n, "seconds": secs, "faces_per_s": n / secs, "peak_rss_mib": peak}))


def run_scale(tmp: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        subprocess.run([sys.executable, __file__, "--scale-input", str(n), "--tmp", str(tmp)], check=True)
        out = subprocess.run([sys.executable, __file__, "--scale-child", str(n), "--tmp", str(tmp)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap_.add_argument("--only", nargs="+", default=["points", "points300w", "other", "other300w", "images", "real",
                                                    "scale"])
    ap_.add_argument("--seeds", type=int, default=1,
                     help="runs of the points section, each with other faces and errors (seed 0: the first run)")
    ap_.add_argument("--per-type", type=int, default=20,
                     help="faces per error type and run (8 types: keep the injected share under 10 %%)")
    ap_.add_argument("--per-type-images", type=int, default=5,
                     help="faces per transform and size among the WFLW faces with photos (6 of them)")
    ap_.add_argument("--scale-sizes", type=int, nargs="+", default=[5000, 20000])
    ap_.add_argument("--json", help="write all rows here too")
    ap_.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    ap_.add_argument("--scale-input", type=int, help=argparse.SUPPRESS)
    ap_.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap_.parse_args()
    if args.scale_child:
        _scale_child(args.scale_child, args.tmp)
        return 0
    if args.scale_input:
        _scale_input(args.scale_input, args.tmp)
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for section, dataset, other in (("points", "wflw", False), ("points300w", "300w", False),
                                        ("other", "wflw", True), ("other300w", "300w", True)):
            if section not in args.only:
                continue
            results[section] = run_points(tmp, args.per_type, args.seeds, dataset, other)
            print(f"\n{dataset}: mean (min-max) over {args.seeds} seed(s); kind size k recall@k AP flagged named "
                  "(untouched flagged)")
            groups: dict = {}
            for r in results[section]:
                groups.setdefault((r["level"], r["kind"], r["size"]), []).append(r)

            def spread(rs, key):
                v = np.array([r[key] for r in rs], float)
                if np.isnan(v).all():
                    return "-"
                return f"{np.nanmean(v):.2f} ({np.nanmin(v):.2f}-{np.nanmax(v):.2f})" if len(v) > 1 else f"{v[0]:.2f}"

            for (_, kind, size), rs in groups.items():
                print(f"{kind:14s} {size if size is not None else '-':>5} {rs[0]['k']:3d} "
                      f"{spread(rs, 'recall_at_k')} {spread(rs, 'ap')} {spread(rs, 'flagged')} {spread(rs, 'named')} "
                      f"({spread(rs, 'clean_flagged')})"
                      + (f" | {rs[0]['verified_left_out']} known errors left out: {spread(rs, 'recall_at_k_verified')} "
                         f"{spread(rs, 'ap_verified')} ({spread(rs, 'clean_flagged_verified')})"
                         if rs[0]["verified_left_out"] else ""))
        if "images" in args.only:
            results["images"] = run_images(tmp, args.per_type_images)
            for r in results["images"]:
                print(f"{r['run']:12s} {r['kind']:10s} {r['size']:.1f} k={r['k']} recall@k {r['recall_at_k']:.2f} "
                      f"AP {r['ap']:.2f} (model signal alone: recall@k {r['recall_at_k_model_signal']:.2f} AP "
                      f"{r['ap_model_signal']:.2f}) named {r['named']:.2f} untouched flagged {r['clean_flagged']:.3f} | "
                      f"{r['verified_left_out']} known errors left out: recall@k {r['recall_at_k_verified']:.2f} AP "
                      f"{r['ap_verified']:.2f}")
        if "real" in args.only:
            results["real"] = run_real()
            for r in results["real"]:
                print(f"{r['method']:45s} AP {r['ap']:.3f}")
        if "scale" in args.only:
            results["scale"] = run_scale(tmp, args.scale_sizes)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
