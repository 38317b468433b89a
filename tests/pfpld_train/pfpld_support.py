"""Test support for the pfpld_train tests: a manifest of the real WFLW test faces in ../shared/data.

Parses the six official per-attribute WFLW test lists directly (a face is in list X iff its attribute
flag X is 1), merges duplicates, and writes a manifest with ``landmark_unify.write_manifest``. Not a
reader for users: the project's readers build real manifests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch and one OpenCV thread while a test module runs (import it into the module to use it).

    The workloads are tiny (a few faces, batches of 4): on a 2-core CI runner busy with other jobs,
    spinning intra-op threads cost more than they give. Measured on this machine with two other busy
    processes: the pfpld tests took 144 s with the default threads, 89 s with one.
    """
    import cv2
    import torch

    n, c = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(n)
    cv2.setNumThreads(c)


ATTRS = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
LIST_NAMES = {"largepose": "pose", "expression": "expression", "illumination": "illumination",
              "makeup": "makeup", "occlusion": "occlusion", "blur": "blur"}


def wflw_faces(shared_data: Path, with_images: bool = True) -> dict:
    """Column dict (see ``landmark_unify.manifest.table_from_columns``) of the distinct WFLW faces."""
    root = shared_data / "WFLW"
    lists = root / "WFLW_annotations" / "list_98pt_test"
    faces: dict[tuple, dict] = {}
    for f in sorted(lists.glob("list_98pt_test_*.txt")):
        attr = LIST_NAMES[f.stem[len("list_98pt_test_"):]]
        for lineno, line in enumerate(f.read_text().splitlines(), 1):
            t = line.split()
            if len(t) != 197:
                continue
            key = (t[196], tuple(t[:196]))
            rec = faces.setdefault(key, {"attrs": set(), "origin": (f.name, lineno)})
            rec["attrs"].add(attr)
    rows = sorted(faces.items(), key=lambda kv: (kv[0][0], kv[1]["origin"]))
    if with_images:
        rows = [kv for kv in rows if (root / "WFLW_images" / kv[0][0]).is_file()]
    lm = np.array([[float(v) for v in k[1]] for k, _ in rows], np.float32).reshape(-1, 98, 2)
    n = len(rows)
    cols = {
        "sample_id": [f"wflw-{i:05d}" for i in range(n)],
        "source": ["wflw"] * n,
        "split": ["test"] * n,
        "image_path": [k[0] for k, _ in rows],
        "landmarks": lm,
        "valid": np.ones((n, 98), bool),
        "bbox": np.concatenate([np.nanmin(lm, 1), np.nanmax(lm, 1)], 1),
        "source_schema": ["wflw98"] * n,
        "origin_file": [f"WFLW_annotations/list_98pt_test/{r['origin'][0]}" for _, r in rows],
        "origin_line": [r["origin"][1] for _, r in rows],
    }
    for a in ATTRS:
        cols[f"attr_{a}"] = [a in r["attrs"] for _, r in rows]
    return cols


def write_wflw_manifest(shared_data: Path, path: Path, with_images: bool = True, limit: int | None = None) -> Path:
    from landmark_unify.manifest import make_metadata, write_manifest

    cols = wflw_faces(shared_data, with_images)
    if limit is not None:
        cols = {k: v[:limit] for k, v in cols.items()}
    meta = make_metadata({"wflw": str(shared_data / "WFLW" / "WFLW_images")}, command="tests")
    return write_manifest(cols, path, meta)


def synthetic_manifest(folder: Path, n_images: int = 6, faces_per_image: int = 2, seed: int = 0,
                       pose: bool = True) -> Path:
    """A small manifest of drawn faces: every landmark is a white dot on a dark, noisy image.

    Points follow a fixed 98-point template under a random similarity per face; 60 and 72 are the
    outer eye corners. Pose is random (degrees) when ``pose``; a few points per face are invalid.
    """
    import cv2

    from landmark_unify.manifest import make_metadata, write_manifest

    rng = np.random.default_rng(seed)
    template = np.random.default_rng(1234).uniform(-0.5, 0.5, (98, 2))
    template[60] = [-0.35, -0.15]
    template[72] = [0.35, -0.15]
    folder.mkdir(parents=True, exist_ok=True)
    cols: dict = {k: [] for k in ("sample_id", "source", "split", "image_path", "source_schema", "origin_file",
                                  "pitch", "yaw", "roll")}
    lms, valids = [], []
    for i in range(n_images):
        h, w = 240, 320
        img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        name = f"img_{i:03d}.png"
        for j in range(faces_per_image):
            s = rng.uniform(50, 90)
            th = rng.uniform(-0.3, 0.3)
            r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
            c = np.array([(j + 0.5) * w / faces_per_image, h / 2]) + rng.uniform(-10, 10, 2)
            pts = (template @ r.T) * s + c
            for x, y in pts:
                cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
            v = np.ones(98, bool)
            v[rng.choice(np.setdiff1d(np.arange(98), [60, 72]), 5, replace=False)] = False
            lms.append(pts)
            valids.append(v)
            cols["sample_id"].append(f"syn-{i:03d}-{j}")
            cols["source"].append("synthetic")
            cols["split"].append("train")
            cols["image_path"].append(name)
            cols["source_schema"].append("wflw98")
            cols["origin_file"].append(name)
            for k, a in zip(("pitch", "yaw", "roll"), rng.uniform(-30, 30, 3)):
                cols[k].append(float(a) if pose else None)
        cv2.imwrite(str(folder / name), img)
    lm = np.array(lms, np.float32)
    cols["landmarks"] = lm
    cols["valid"] = np.array(valids)
    cols["bbox"] = np.concatenate([np.nanmin(lm, 1), np.nanmax(lm, 1)], 1)
    if pose:
        cols["pose_source"] = ["dataset"] * len(lm)
    meta = make_metadata({"synthetic": str(folder)}, command="tests")
    return write_manifest(cols, folder / "manifest.parquet", meta)


# --- export tests -------------------------------------------------------------------------------------------


def wflw_lists(shared_data: Path) -> Path:
    """The folder of official WFLW test lists (a face source for ``export`` and ``quantize-check``)."""
    return shared_data / "WFLW" / "WFLW_annotations" / "list_98pt_test"


def trained_like_model(seed: int = 0):
    """A PFPLD with random weights and non-trivial batch-norm statistics, so that folding is exercised."""
    import torch

    from pfpld_train.models.pfpld import build_model

    torch.manual_seed(seed)
    model = build_model()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def run_cli(module, argv: list[str]) -> int:
    """The command ``module`` run through the ``pfpld_train`` dispatcher (its error handling included)."""
    from pfpld_train.cli import main

    return main([module.__name__.rsplit(".", 1)[1].replace("_", "-"), *argv])


def to_onnx(model, path, size: int = 112) -> None:
    """A bare ``torch.onnx.export`` of ``model`` (one ``landmarks`` output), for converter tests."""
    import torch

    torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path), input_names=["input"],
                      output_names=["landmarks"], opset_version=17, dynamo=False)
