"""Benchmark: build-manifest on the local path against the dask engine with 1 and 2 workers.

Two workloads, both made of real WFLW lines from ``../shared/data`` (a ``list_98pt_rect_attr_train.txt``
written under a temporary WFLW root):

* annotation-only: ``--faces`` faces (default 1,000,000), the 1966 real test faces repeated;
* image checking (``--check-images``): ``--image-faces`` faces (default 3000) whose images exist, each
  line naming its own image file (a symlink to one of the real WIDER FACE images), so every face is
  decoded once.

Each configuration runs in a fresh subprocess, so peak memory (``ru_maxrss``) is that run's alone: the
driver process, and for dask each worker process (partition size = ``--chunk-mb`` of list text). Memory
is also measured at ``--faces / 4`` to show that a worker's peak follows the partition size, not the
input size. Prints faces/s, ratios against the local path measured in the same run, and where the time
goes (engine start, units, commit/assembly, summary).

    .venv/bin/python benchmarks/bench_distributed.py                 # full run (several minutes)
    .venv/bin/python benchmarks/bench_distributed.py --faces 100000 --image-faces 600   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LANDMARK_UNIFY_SHARED", REPO.parent / "shared")) / "data"
ATTR_DIR = SHARED / "WFLW/WFLW_annotations/list_98pt_test"
RECT_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"


def _rect_lines(only_with_images: bool) -> list[str]:
    """Real WFLW test lines in rect_attr form (box from the points, flags from list membership)."""
    flags: dict[str, list[int]] = {}
    names = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
    for j, name in enumerate(names):
        for line in (ATTR_DIR / f"list_98pt_test_{name}.txt").read_text().splitlines():
            key = line.strip()
            flags.setdefault(key, [0] * 6)[j] = 1
    out = []
    for key, f in flags.items():
        tok = key.split()
        if only_with_images and not (SHARED / "WFLW/WFLW_images" / tok[-1]).is_file():
            continue
        p = np.asarray(tok[:196], float).reshape(98, 2)
        box = [int(np.floor(p[:, 0].min())), int(np.floor(p[:, 1].min())), int(np.ceil(p[:, 0].max())),
               int(np.ceil(p[:, 1].max()))]
        out.append((tok[:196], box, f, tok[-1]))
    return out


def make_annotation_root(dest: Path, faces: int) -> Path:
    rows = _rect_lines(False)
    text = [" ".join(c + [str(v) for v in b + f] + [img]) for c, b, f, img in rows]
    root = dest / f"wflw_{faces}"
    (root / RECT_DIR).mkdir(parents=True)
    with open(root / RECT_DIR / "list_98pt_rect_attr_train.txt", "w") as fh:
        block = "\n".join(text) + "\n"
        full, rest = divmod(faces, len(text))
        for _ in range(full):
            fh.write(block)
        if rest:
            fh.write("\n".join(text[:rest]) + "\n")
    return root


def make_image_root(dest: Path, faces: int) -> Path:
    rows = _rect_lines(True)
    root = dest / f"wflw_img_{faces}"
    (root / RECT_DIR).mkdir(parents=True)
    img_dir = root / "WFLW_images" / "bench"
    img_dir.mkdir(parents=True)
    lines = []
    for i in range(faces):
        c, b, f, img = rows[i % len(rows)]
        src = SHARED / "WFLW/WFLW_images" / img
        name = f"face_{i:06d}{src.suffix}"
        (img_dir / name).symlink_to(src)
        lines.append(" ".join(c + [str(v) for v in b + f] + [f"bench/{name}"]))
    (root / RECT_DIR / "list_98pt_rect_attr_train.txt").write_text("\n".join(lines) + "\n")
    return root


# --- one configuration, in its own process ------------------------------------------------------------------

def run_one(engine: str, workers: int, root: str, out: str, chunk_mb: float, check_images: bool) -> dict:
    from landmark_unify.engines import peak_rss
    from landmark_unify.ops.build import build_manifest
    from landmark_unify.ops.check_images import check_images

    chunk = int(chunk_mb * (1 << 20))
    t0 = time.perf_counter()
    if engine == "local":
        # build_manifest's local path, step by step, to see where its time goes
        from landmark_unify.ops.build import finish_build, parse_sources, plan_units, process_unit

        srcs = parse_sources([f"wflw={root}"])
        units = plan_units(srcs, chunk)
        t1 = time.perf_counter()
        tables, skipped = [], []
        for u in units:
            t, s = process_unit(u, "strict", "skip", check_images)
            tables.append(t)
            skipped.extend(s)
        t2 = time.perf_counter()
        rep = finish_build(tables, skipped, srcs, out, policy="strict", on_error="skip", check_images=check_images,
                           units=len(units))
        seconds = {"plan": t1 - t0, "process_units": t2 - t1, "concat_write_summary": time.perf_counter() - t2,
                   "total": time.perf_counter() - t0}
        worker_rss = {}
    else:
        rep = build_manifest([f"wflw={root}"], out, on_error="skip", check_images=check_images,
                                           engine=engine, workers=workers, chunk_bytes=chunk, progress=False)
        run = rep.extra["run"]
        seconds = run.seconds
        worker_rss = run.worker_peak_rss
    wall = time.perf_counter() - t0
    return {"engine": engine, "workers": workers, "faces": rep.num_faces, "units": rep.units, "wall": wall,
            "seconds": seconds, "driver_peak_rss": peak_rss(), "worker_peak_rss": worker_rss,
            "skipped": len(rep.skipped)}


def spawn(engine: str, workers: int, root: Path, out: Path, chunk_mb: float, check_images: bool) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps([engine, workers, str(root), str(out), chunk_mb, check_images])]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mb(b: float) -> str:
    return f"{b / 2**20:7.0f} MiB"


def report(title: str, results: list[dict]) -> None:
    base = results[0]
    print(f"\n== {title}: {base['faces']} faces, {base['units']} partitions "
          f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) ==")
    print(f"{'config':<14} {'wall s':>8} {'faces/s':>10} {'vs local':>9} {'driver RSS':>12} {'max worker RSS':>15}")
    for r in results:
        name = r["engine"] + (f" x{r['workers']}" if r["engine"] != "local" else "")
        wrss = max(r["worker_peak_rss"].values()) if r["worker_peak_rss"] else 0
        print(f"{name:<14} {r['wall']:8.2f} {r['faces'] / r['wall']:10.0f} {base['wall'] / r['wall']:8.2f}x "
              f"{_mb(r['driver_peak_rss']):>12} {(_mb(wrss) if wrss else '-'):>15}")
    for r in results:
        s = r["seconds"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in s.items())
        rest = r["wall"] - s.get("total", 0)
        name = r["engine"] + (f" x{r['workers']}" if r["engine"] != "local" else "")
        print(f"  where the time goes, {name} (s): {parts}" + (f"; plan + summary {rest:.2f}" if r["engine"] != "local"
                                                                else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--image-faces", type=int, default=3000)
    ap.add_argument("--chunk-mb", type=float, default=32.0, help="list text per partition (build's default 32)")
    ap.add_argument("--image-chunk-mb", type=float, default=0.5)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--workloads", default="annotation,images", help="comma-separated: annotation, images")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        engine, workers, root, out, chunk_mb, check = json.loads(args.one)
        print(json.dumps(run_one(engine, workers, root, out, chunk_mb, check)))
        return 0
    if not SHARED.exists():
        print(f"real sample data not found at {SHARED}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        tmp = Path(tmp)
        workloads = set(args.workloads.split(","))
        configs = [("local", 1), ("dask", 1), ("dask", 2)]
        if "annotation" in workloads:
            annotation_only(tmp, args, configs)
        if "images" in workloads:
            img_root = make_image_root(tmp, args.image_faces)
            res_img = []
            for eng, w in configs:
                out = tmp / f"img_{eng}{w}.parquet" if eng == "local" else tmp / f"img_{eng}{w}"
                res_img.append(spawn(eng, w, img_root, out, args.image_chunk_mb, True))
            report("image checking (--check-images, every face decodes its own image)", res_img)
    return 0


def annotation_only(tmp: Path, args, configs) -> None:
    """Local vs dask x1/x2 at --faces, the single-file form, and memory at --faces/4."""
    t = time.perf_counter()
    root = make_annotation_root(tmp, args.faces)
    size = (root / RECT_DIR / "list_98pt_rect_attr_train.txt").stat().st_size
    print(f"annotation list: {args.faces} faces, {size / 2**20:.0f} MiB, written in {time.perf_counter() - t:.1f} s")
    res = []
    for eng, w in configs:
        out = tmp / f"out_{eng}{w}.parquet" if eng == "local" else tmp / f"out_{eng}{w}"
        res.append(spawn(eng, w, root, out, args.chunk_mb, False))
    report("annotation-only (dataset output for dask, single file for local)", res)
    res_file = spawn("dask", 2, root, tmp / "out_dask2_file.parquet", args.chunk_mb, False)
    report("annotation-only, dask x2 writing the single-file form", [res[0], res_file])

    if not args.skip_memory:
        small = max(args.faces // 4, 1)
        root_s = make_annotation_root(tmp, small)
        mem = [spawn("local", 1, root_s, tmp / "mem_local.parquet", args.chunk_mb, False),
               spawn("dask", 2, root_s, tmp / "mem_dask", args.chunk_mb, False)]
        print(f"\n== memory: {small} vs {args.faces} faces, partitions of {args.chunk_mb:g} MiB of list text ==")
        for label, a, b in (("local process", mem[0], res[0]), ("dask driver", mem[1], res[2])):
            print(f"  {label:<16} peak RSS {_mb(a['driver_peak_rss'])} -> {_mb(b['driver_peak_rss'])}")
        wa = max(mem[1]["worker_peak_rss"].values())
        wb = max(res[2]["worker_peak_rss"].values())
        print(f"  {'dask worker':<16} peak RSS {_mb(wa)} -> {_mb(wb)}  (max over the 2 workers)")
        quarter = spawn("dask", 2, root, tmp / "mem_dask_small_parts", args.chunk_mb / 4, False)
        wq = max(quarter["worker_peak_rss"].values())
        print(f"  {'dask worker':<16} peak RSS at {args.faces} faces with partitions of {args.chunk_mb / 4:g} MiB: "
              f"{_mb(wq)} ({quarter['units']} partitions)")


if __name__ == "__main__":
    sys.exit(main())
