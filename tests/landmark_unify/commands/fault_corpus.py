"""Builders of the fault corpus: small synthetic dataset sources and manifests, good and broken.

Shared by the corpus test of every command (test_fault_corpus.py), the property tests and the trainer's
corpus (tests/pfpld_train/commands/test_fault_corpus.py imports it by path). Nothing here needs ../shared.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RECT = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"


def face_points(k: int, i: int = 0, size: float = 200.0) -> np.ndarray:
    """``(k, 2)`` plausible points of face ``i`` (an ellipse of points, distinct per face)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    cx, cy = 150.0 + 7 * i, 160.0 + 3 * i
    return np.stack([cx + size / 3 * np.cos(t), cy + size / 2.5 * np.sin(t)], 1)


def fmt(v: float) -> str:
    return f"{v:.3f}"


# --- sources -----------------------------------------------------------------------------------------------

def hrnet_source(root: Path, n: int = 4, rows: dict[int, str] | None = None) -> Path:
    """An HRNet CSV source; ``rows`` replaces whole data lines (by index) with given text."""
    root.mkdir(parents=True, exist_ok=True)
    head = "image_name,scale,center_w,center_h," + ",".join(f"original_{i}_{a}" for i in range(68) for a in "xy")
    lines = [head]
    for i in range(n):
        pts = face_points(68, i) + 1
        lines.append(",".join([f"img/face{i}.jpg", "1.2", fmt(150 + i), fmt(160)] + [fmt(v) for v in pts.ravel()]))
    for i, text in (rows or {}).items():
        lines[1 + i] = text
    (root / "face_landmarks_300w_test.csv").write_text("\n".join(lines) + "\n")
    return root


def hrnet_row(i: int = 0, **fields) -> str:
    """A data line of :func:`hrnet_source` with fields replaced (image_name, scale, center_w, center_h, x0...)."""
    pts = face_points(68, i) + 1
    vals = {"image_name": f"img/face{i}.jpg", "scale": "1.2", "center_w": fmt(150), "center_h": fmt(160)}
    vals.update({f"{a}{k}": fmt(pts[k, j]) for k in range(68) for j, a in enumerate("xy")})
    vals.update({k: str(v) for k, v in fields.items()})
    order = ["image_name", "scale", "center_w", "center_h"] + [f"{a}{k}" for k in range(68) for a in "xy"]
    return ",".join(vals[k] for k in order)


def coco_annotation(i: int, k: int = 98, **over) -> dict:
    pts = face_points(k, i)
    kp = []
    for x, y in pts:
        kp += [round(float(x), 3), round(float(y), 3), 2]
    ann = {"id": i + 1, "image_id": i + 1, "keypoints": kp, "num_keypoints": k, "bbox": [60.0, 60.0, 180.0, 200.0]}
    ann.update(over)
    return ann


def coco_source(root: Path, n: int = 4, anns: dict[int, dict] | None = None, images: dict[int, dict] | None = None,
                raw: str | None = None, with_images: bool = False) -> Path:
    """A COCO keypoint source with ``n`` faces; ``anns`` / ``images`` replace entries; ``raw`` the whole text;
    ``with_images``: 400x400 JPEGs beside the json."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {"images": [{"id": i + 1, "file_name": f"face{i}.jpg", "width": 400, "height": 400} for i in range(n)],
           "annotations": [coco_annotation(i) for i in range(n)],
           "categories": [{"id": 1, "name": "face"}]}
    for i, a in (anns or {}).items():
        doc["annotations"][i] = a
    for i, im in (images or {}).items():
        doc["images"][i] = im
    (root / "test.json").write_text(raw if raw is not None else json.dumps(doc))
    if with_images:
        import cv2

        for i in range(n):
            img = np.full((400, 400, 3), 90 + 20 * i, np.uint8)
            cv2.ellipse(img, (150 + 7 * i, 160 + 3 * i), (66, 80), 0, 0, 360, (200, 180, 160), -1)
            cv2.imwrite(str(root / f"face{i}.jpg"), img)
    return root


def ibug_source(root: Path, n: int = 3, lines: dict[int, dict[int, str]] | None = None) -> Path:
    """``.pts`` files; ``lines[file][line_index]`` replaces a line of a file (0-based within the file)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pts = face_points(68, i) + 1
        text = ["version: 1", "n_points: 68", "{"] + [f"{fmt(x)} {fmt(y)}" for x, y in pts] + ["}"]
        for j, t in ((lines or {}).get(i, {})).items():
            text[j] = t
        (root / f"face{i}.pts").write_text("\n".join(text) + "\n")
    return root


def lapa_source(root: Path, n: int = 2, lines: dict[int, dict[int, str]] | None = None) -> Path:
    d = root / "test" / "landmarks"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pts = face_points(106, i)
        text = ["106"] + [f"{fmt(x)} {fmt(y)}" for x, y in pts]
        for j, t in ((lines or {}).get(i, {})).items():
            text[j] = t
        (d / f"face{i}.txt").write_text("\n".join(text) + "\n")
    return root


def wflw_source(root: Path, n: int = 4, fields: dict[int, dict[int, str]] | None = None) -> Path:
    """A WFLW rect_attr list; ``fields[line][field_index]`` replaces a token."""
    path = root / RECT
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        pts = face_points(98, i)
        tok = [fmt(v) for v in pts.ravel()] + ["60", "60", "240", "260", "0", "0", "1", "0", "0", "0",
                                                  f"1--x/face{i}.jpg"]
        for j, t in ((fields or {}).get(i, {})).items():
            tok[j] = t
        rows.append(" ".join(tok))
    path.write_text("\n".join(rows) + "\n")
    return root


def mat_source(root: Path, n: int = 2, pt2d=None, pose=None, raw: bytes | None = None) -> Path:
    """300W-LP-style ``IBUG/*.mat`` files: ``pt2d`` (2, 68) and ``Pose_Para`` (1, 7) of the first file
    replaced when given; ``raw`` replaces the first file's bytes."""
    from scipy.io import savemat

    d = root / "IBUG"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = (face_points(68, i) + 1).T
        pp = np.array([[0.1, -0.2, 0.05, 0, 0, 0, 1.0]])
        if i == 0 and pt2d is not None:
            p = pt2d
        if i == 0 and pose is not None:
            pp = pose
        savemat(str(d / f"IBUG_face{i}.mat"), {"pt2d": p, "Pose_Para": pp})
        if i == 0 and raw is not None:
            (d / f"IBUG_face{i}.mat").write_bytes(raw)
    return root


# --- manifests -----------------------------------------------------------------------------------------------

def good_manifest(path: Path) -> Path:
    """A valid manifest of 4 COCO faces (with pose and eye columns) built from a synthetic source."""
    from landmark_unify.ops.build import build_manifest

    src = coco_source(path.parent / (path.stem + "_src"), with_images=True)
    build_manifest([f"coco={src}"], path, progress=False)
    return path


def _replace_column(table: pa.Table, name: str, array) -> pa.Table:
    i = table.schema.get_field_index(name)
    arr = array if isinstance(array, (pa.Array, pa.ChunkedArray)) else pa.array(array)
    return table.set_column(i, pa.field(name, arr.type), arr)


def broken_manifests(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Manifests from elsewhere, each broken one way: ``{case: (path, text the error must contain)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    t = pq.read_table(good)
    meta = t.schema.metadata
    out: dict[str, tuple[Path, str]] = {}

    def save(name: str, table: pa.Table, expect: str, keep_meta: bool = True) -> None:
        p = folder / f"{name}.parquet"
        pq.write_table(table.replace_schema_metadata(meta if keep_meta else None), p)
        out[name] = (p, expect)

    save("missing-source", t.drop_columns(["source"]), "'source'")
    lm = [[pt for pt in row[:50]] for row in t.column("landmarks").to_pylist()]
    save("landmarks-50-points", _replace_column(t, "landmarks", lm), "'landmarks'")
    lm3 = [[pt + [0.0] for pt in row] for row in t.column("landmarks").to_pylist()]
    save("landmarks-3-coords", _replace_column(t, "landmarks", lm3), "'landmarks'")
    save("yaw-as-text", _replace_column(t, "yaw", pa.array([None if v is None else f"{v}" for v in
                                                              t.column("yaw").to_pylist()], pa.string())), "'yaw'")
    paths = t.column("image_path").to_pylist()
    paths[1] = None
    save("null-image-path", _replace_column(t, "image_path", pa.array(paths, pa.string())), "'image_path'")
    save("bbox-3-values", _replace_column(t, "bbox", [b[:3] for b in t.column("bbox").to_pylist()]), "'bbox'")
    save("valid-as-int", _replace_column(t, "valid", [[int(v) for v in row] for row in t.column("valid").to_pylist()]),
         "'valid'")
    w = t.column("weight").to_pylist()
    w[2] = None
    save("null-weight", _replace_column(t, "weight", pa.array(w, pa.float32())), "'weight'")
    save("no-metadata", t, "metadata", keep_meta=False)
    text = folder / "not-parquet.parquet"
    text.write_text("this is not a parquet file\n")
    out["not-parquet"] = (text, "Parquet")
    out["missing-file"] = (folder / "nowhere.parquet", "not found")
    ds = folder / "incomplete_ds"
    ds.mkdir(exist_ok=True)
    (ds / "_manifest.json").write_text("{}")
    out["dataset-without-success"] = (ds, "_SUCCESS")
    m = json.loads(meta[b"landmark_unify"])
    for name, bad_meta, expect in (("metadata-a-list", [1, 2], "metadata"),
                                   ("source-roots-a-list", {**m, "source_roots": ["x"]}, "source_roots"),
                                   ("source-root-a-number", {**m, "source_roots": {"coco": 3}}, "source_roots")):
        p = folder / f"{name}.parquet"
        pq.write_table(t.replace_schema_metadata({b"landmark_unify": json.dumps(bad_meta).encode()}), p)
        out[name] = (p, expect)
    from landmark_unify.manifest import dataset_to_file  # noqa: F401  (a dataset to break)
    from landmark_unify.ops.mine import mine_closed_eyes

    good_ds = folder / "good_ds"
    mine_closed_eyes(good, good_ds, threshold=10.0, progress=False)
    for name, mutate in (("dataset-no-parts", lambda d: d.pop("parts")),
                         ("dataset-no-order", lambda d: d.pop("order")),
                         ("dataset-part-escapes", lambda d: d["parts"][0].__setitem__("path", "../../../etc/x.parquet")),
                         ("dataset-order-unknown-part", lambda d: d.__setitem__("order", [["x.parquet", 0, 5]])),
                         ("dataset-order-past-part", lambda d: d["order"][0].__setitem__(2, 10**6)),
                         ("dataset-metadata-a-list", lambda d: d.__setitem__("metadata", [1])),
                         ("dataset-rows-text", lambda d: d["parts"][0].__setitem__("rows", "abc")),
                         ("dataset-doc-a-list", None)):
        dst = folder / name
        shutil.copytree(good_ds, dst)
        doc = json.loads((dst / "_manifest.json").read_text())
        if mutate is not None:
            mutate(doc)
        (dst / "_manifest.json").write_text(json.dumps(doc if mutate is not None else [doc]))
        out[name] = (dst, "_manifest.json" if name != "dataset-metadata-a-list" else "metadata")
    # formats newer than this version reads: never read, never rewritten as the current format
    p = folder / "format-newer.parquet"
    pq.write_table(t.replace_schema_metadata({b"landmark_unify": json.dumps({**m, "format_version": "9.0"}).encode()}), p)
    out["format-newer"] = (p, "newer")
    p = folder / "format-not-a-version.parquet"
    pq.write_table(t.replace_schema_metadata({b"landmark_unify": json.dumps({**m, "format_version": "1.\u0662"}).encode()}), p)
    out["format-not-a-version"] = (p, "format_version")
    for name, mutate, expect in (
            ("dataset-format-newer", lambda d, root: d["metadata"].__setitem__("format_version", "9.0"), "newer"),
            ("dataset-version-newer", lambda d, root: d.__setitem__("version", 9), "newer"),
            ("dataset-part-listed-twice", _list_part_twice, "twice"),
            ("dataset-part-copied", _copy_part, "more than once"),
            ("dataset-part-resized", _resize_part, "rows"),
            ("dataset-part-format-newer", _newer_part, "newer")):
        dst = folder / name
        shutil.copytree(good_ds, dst)
        doc = json.loads((dst / "_manifest.json").read_text())
        mutate(doc, dst)
        (dst / "_manifest.json").write_text(json.dumps(doc))
        out[name] = (dst, expect)
    return out


def _list_part_twice(doc: dict, root: Path) -> None:
    part = doc["parts"][0]
    doc["parts"].append(dict(part))
    doc["order"].append([part["path"], 0, part["rows"]])
    doc["rows"] += part["rows"]


def _copy_part(doc: dict, root: Path) -> None:
    """A part copied under another name and listed as a unit of its own: consistent, but every face twice."""
    part = dict(doc["parts"][0])
    copy = part["path"].replace("part-", "part-copy-")
    shutil.copy(root / part["path"], root / copy)
    part.update(path=copy, unit=len(doc["parts"]))
    doc["parts"].append(part)
    doc["order"].append([copy, 0, part["rows"]])
    doc["rows"] += part["rows"]
    doc["units"] = doc.get("units", 0) + 1


def _resize_part(doc: dict, root: Path) -> None:
    """The first part replaced by a file with its rows twice (the list unchanged)."""
    p = root / doc["parts"][0]["path"]
    t = pq.read_table(p)
    pq.write_table(pa.concat_tables([t, t]), p)


def _newer_part(doc: dict, root: Path) -> None:
    p = root / doc["parts"][0]["path"]
    t = pq.read_table(p)
    meta = json.loads(t.schema.metadata[b"landmark_unify"])
    pq.write_table(t.replace_schema_metadata({b"landmark_unify": json.dumps({**meta, "format_version": "9.0"}).encode()}), p)


def with_image_path(good: Path, out: Path, row: int, value: str) -> Path:
    """A copy of ``good`` whose row ``row`` has ``image_path`` ``value`` (a NUL, say)."""
    t = pq.read_table(good)
    paths = t.column("image_path").to_pylist()
    paths[row] = value
    pq.write_table(_replace_column(t, "image_path", pa.array(paths, pa.string())), out)
    return out


def with_landmarks(good: Path, out: Path, value: float) -> Path:
    """A copy of ``good`` whose first valid point of row 0 is ``value`` (finite 1e30, inf: 'validate' flags
    inf, not 1e30; the trainer must refuse both)."""
    t = pq.read_table(good)
    rows = t.column("landmarks").to_pylist()
    valid = t.column("valid").to_pylist()
    k = valid[0].index(True)
    rows[0][k] = [value, value]
    typ = t.schema.field("landmarks").type
    t = t.set_column(t.schema.get_field_index("landmarks"), t.schema.field("landmarks"), pa.array(rows, typ))
    pq.write_table(t, out)
    return out


def hidden_leftovers(folder: Path, name: str) -> list[str]:
    """Hidden temporary entries of output ``name`` in ``folder`` (``.NAME.*``)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


# --- outputs: what a command leaves behind ---------------------------------------------------------------------

#: Names of the temporary entries this project makes beside an output while it runs.
TEMPORARY = (".staging-", ".aborted-", ".old-", ".tmp", ".lock", ".parts-")


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: ``{relative path: sha256 of the bytes}`` (``"dir"`` for a
    folder); two snapshots are equal when no file changed, appeared or went."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() and not p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_refused_untouched(call, root: Path, says: str, case) -> None:
    """``call()`` (a command run, ``-> (code, out, err)``) must refuse with exit 1 and ``says`` in its error,
    and leave every file under ``root`` as it was. ``case.held``, where a case sets it, is a lock another
    run holds on the output: it is released after the call, and its lock file is not compared."""
    before = snapshot(root)
    held = getattr(case, "held", None)
    try:
        code, _, err = call()
    finally:
        if held is not None:  # the other run ends: its lock goes with it
            held.release()
            before.pop(str(Path(held.file).relative_to(root)))
    assert code == 1 and says in err, err
    after = snapshot(root)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def temporaries(root: Path) -> list[str]:
    """Temporary entries of a run (staging folders, temporary files, locks, old versions) under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if any(t in p.name for t in TEMPORARY))


def photos(folder: Path, n: int = 2, size: int = 240) -> list[Path]:
    """``n`` small JPEG photos of a drawn face in ``folder``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = np.full((size, size, 3), 40 + (30 * i) % 180, np.uint8)
        cv2.ellipse(img, (size // 2, size // 2), (size // 4, size // 3), 0, 0, 360, (190, 170, 150), -1)
        p = folder / f"photo{i}.jpg"
        cv2.imwrite(str(p), img)
        out.append(p)
    return out


def interrupt_publish(monkeypatch, at: int) -> list:
    """Make the output layer raise KeyboardInterrupt (Ctrl-C) as it publishes its ``at``-th file; returns the
    list of the paths it was asked to publish, filled as the command runs."""
    import landmark_unify.io as lio

    real, calls = lio.publish, []

    def ctrl_c(tmp, path):
        calls.append(path)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(tmp, path)

    monkeypatch.setattr(lio, "publish", ctrl_c)
    return calls
