"""Test support for the pfpld_train tests: a manifest of the real WFLW test faces in ../shared/data.

Parses the six official per-attribute WFLW test lists directly (a face is in list X iff its attribute
flag X is 1), merges duplicates, and writes a manifest with ``landmark_unify.write_manifest``. Not a
reader for users: the project's readers build real manifests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
