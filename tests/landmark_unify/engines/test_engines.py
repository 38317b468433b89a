"""The distributed path gives the local path's rows and values: real samples, a dask LocalCluster of 2
worker processes on 127.0.0.1 started here, partitioned datasets read back by us, pandas and DuckDB."""
from __future__ import annotations

import filecmp
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landmark_unify import manifest as mf
from landmark_unify.engines import EngineError, get_engine
from landmark_unify.engines.dask import DaskEngine
from landmark_unify.errors import ManifestError, ParseError
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.check_images import check_images
from landmark_unify.ops.merge import merge_manifests
from landmark_unify.ops.mine import mine_closed_eyes
from landmark_unify.ops.relabel import relabel_pose

WFLW_ATTR = "WFLW/WFLW_annotations/list_98pt_test/list_98pt_test_largepose.txt"
ARRAY_COLUMNS = ("landmarks", "valid", "bbox")


def rect_list_root(shared_data: Path, dest: Path, n_lines: int | None = None, repeat: int = 1,
                   bad_line: int | None = None) -> Path:
    """A WFLW root whose rect_attr train list is made of real WFLW test lines (box from the points, pose
    flag set), images linked to the real ones. ``bad_line`` (1-based) gets a non-numeric coordinate."""
    lines = (shared_data / WFLW_ATTR).read_text().splitlines()[:n_lines]
    out = []
    for line in lines:
        tok = line.split()
        p = np.asarray(tok[:196], float).reshape(98, 2)
        box = [int(np.floor(p[:, 0].min())), int(np.floor(p[:, 1].min())), int(np.ceil(p[:, 0].max())),
               int(np.ceil(p[:, 1].max()))]
        out.append(" ".join(tok[:196] + [str(v) for v in box] + ["1", "0", "0", "0", "0", "0"] + [tok[-1]]))
    out = out * repeat
    if bad_line is not None:
        tok = out[bad_line - 1].split()
        tok[7] = "oops"
        out[bad_line - 1] = " ".join(tok)
    root = dest / "WFLW"
    d = root / "WFLW_annotations/list_98pt_rect_attr_train_test"
    d.mkdir(parents=True)
    (d / "list_98pt_rect_attr_train.txt").write_text("\n".join(out) + "\n")
    (root / "WFLW_images").symlink_to(shared_data / "WFLW" / "WFLW_images")
    return root


def sources(shared_data: Path, rect_root: Path) -> list[str]:
    s = shared_data
    return [f"wflw={s}/WFLW", f"w2:wflw={rect_root}", f"lapa={s}/LaPa", f"ibug={s}/300W", f"300wlp={s}/300W_LP",
            f"aflw2000={s}/AFLW2000", f"coco={s}/mmpose_tests/wflw"]


def assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame, close: dict | None = None) -> None:
    """Same rows in the same order, same values exactly (NaN equal to NaN), same dtypes; columns named in
    ``close`` are compared to that absolute tolerance instead."""
    close = close or {}
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for name, fn in (("landmarks", mf.landmarks_array), ("valid", mf.valid_array), ("bbox", mf.bbox_array)):
        np.testing.assert_array_equal(fn(a), fn(b), err_msg=name)
    rest = [c for c in a.columns if c not in ARRAY_COLUMNS and c not in close]
    pd.testing.assert_frame_equal(a[rest].reset_index(drop=True), b[rest].reset_index(drop=True), check_exact=True)
    for c, tol in close.items():
        x, y = a[c].to_numpy(np.float64, na_value=np.nan), b[c].to_numpy(np.float64, na_value=np.nan)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=c)
        np.testing.assert_allclose(x, y, rtol=0, atol=tol, equal_nan=True, err_msg=c)


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("distributed")
    eng = DaskEngine(workers=2)  # LocalCluster: 2 worker processes, 127.0.0.1, dashboard off
    try:
        assert eng.workers == 2
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in eng.worker_pids())
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, engine):
    """The same sources built by the local path and by dask (file and dataset forms)."""
    tmp = tmp_path_factory.mktemp("built")
    rect = rect_list_root(shared_data, tmp, n_lines=300, repeat=2)  # 600 lines, ~40 KB each 64 KB unit
    srcs = sources(shared_data, rect)
    kw = dict(policy="extended", on_error="skip", check_images=True, command="test", chunk_bytes=64 << 10,
              progress=False)
    local = build_manifest(srcs, tmp / "local.parquet", **kw)
    dfile = build_manifest(srcs, tmp / "dask.parquet", engine=engine, **kw)
    dset = build_manifest(srcs, tmp / "dask_ds", engine=engine, **kw)
    lset = build_manifest(srcs, tmp / "local_ds", engine="local", **kw)
    return {"tmp": tmp, "local": local, "dfile": dfile, "dset": dset, "lset": lset, "sources": srcs, "kw": kw}


def test_build_on_dask_equals_local(built):
    local, dfile, dset = built["local"], built["dfile"], built["dset"]
    run = dset.extra["run"]
    assert run.engine == "dask" and run.workers == 2 and run.units > 3
    assert local.num_faces == dfile.num_faces == dset.num_faces > 300
    # the single file is the local file, byte for byte (same rows, order, values, metadata, row groups)
    assert filecmp.cmp(local.out, dfile.out, shallow=False)
    a = mf.read_manifest(local.out)
    b = mf.read_dataset(dset.out)
    assert_frames_equal(a, b)
    assert a.attrs["manifest"] == b.attrs["manifest"]
    # skipped records: the same, in the same order (bad images, duplicated lines)
    assert local.skipped == dfile.skipped == dset.skipped
    assert any(r["field"] == "image" for r in dset.skipped)
    side = [json.loads(x) for x in (dset.out / "_skipped.jsonl").read_text().splitlines()]
    assert side == local.skipped
    assert mf.validate_dataset(dset.out) == []
    assert mf.validate_manifest(dfile.out) == []
    assert dset.faces_per_source == local.faces_per_source


def test_dataset_layout_is_hive_and_engine_independent(built):
    dset, lset = built["dset"].out, built["lset"].out
    doc = mf.read_dataset_info(dset)
    for part in doc["parts"]:
        p = dset / part["path"]
        assert p.parent.name == f"split={part['split']}" and p.parent.parent.name == f"source={part['source']}"
        t = mf.read_table(p)
        assert set(t.column("source").to_pylist()) == {part["source"]}
        assert mf.validate_manifest(p) == []  # every part is a manifest on its own
    assert (dset / mf.SUCCESS_FILE).exists()
    # the local engine writes the same directory, file for file, byte for byte
    files = sorted(str(p.relative_to(dset)) for p in dset.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(lset)) for p in lset.rglob("*") if p.is_file())
    for f in files:
        assert filecmp.cmp(dset / f, lset / f, shallow=False), f
    assert not list(dset.parent.glob(".*staging*"))


def test_dataset_queries_from_duckdb_and_pandas(built):
    duckdb = pytest.importorskip("duckdb")
    local = mf.read_manifest(built["local"].out)
    ds = built["dset"].out
    counts = duckdb.sql(
        f"SELECT source, split, count(*) AS n FROM read_parquet('{ds}/*/*/*.parquet', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL").df()
    expect = local.groupby(["source", "split"]).size().reset_index(name="n").sort_values(["source", "split"])
    assert counts["n"].tolist() == expect["n"].tolist()
    assert counts["source"].tolist() == expect["source"].tolist()
    one = duckdb.sql(f"SELECT sample_id, yaw FROM read_parquet('{ds}/source=w2/*/*.parquet') ORDER BY sample_id").df()
    assert sorted(local.loc[local.source == "w2", "sample_id"]) == one["sample_id"].tolist()
    # pandas: the columns are in the files too, so read without re-deriving them from the folder names
    df = pd.read_parquet(ds, partitioning=None, filters=[("source", "==", "lapa")])
    assert sorted(df["sample_id"]) == sorted(local.loc[local.source == "lapa", "sample_id"])


def test_curation_on_dask_equals_local(built, engine):
    tmp = built["tmp"]
    src = built["local"].out
    mined = mine_closed_eyes(src, tmp / "eyes_local.parquet", threshold=0.2, mode="either", progress=False)
    kept, total = mined.extra["kept"], mined.extra["total"]
    assert 0 < kept < total
    for inp in (src, built["dset"].out):  # a file or a dataset as input
        run = mine_closed_eyes(inp, tmp / "eyes_dask.parquet", threshold=0.2, engine=engine,
                                             rows_per_partition=97, progress=False)
        assert run.units > 3 and run.rows == kept
        a, b = mf.read_manifest(tmp / "eyes_local.parquet"), mf.read_manifest(tmp / "eyes_dask.parquet")
        assert_frames_equal(a, b)
        if inp == src:
            assert a.attrs["manifest"] == b.attrs["manifest"]
    local = relabel_pose(src, tmp / "pose_local.parquet", progress=False)
    counts = {k: local.extra[k] for k in ("filled", "kept", "unknown")}
    run = relabel_pose(src, tmp / "pose_ds", engine=engine, rows_per_partition=7, progress=False)
    assert {k: run.extra[k] for k in counts} == counts
    a, b = mf.read_manifest(tmp / "pose_local.parquet"), mf.read_dataset(tmp / "pose_ds")
    # pose.estimate_pose's float32 angles depend on the batch they are fitted in, by up to about 6e-4 degrees
    # (its point set and numpy's reduction order follow the batch): compared to 1e-3 degrees, all else exact
    angles = [f"{p}{a}" for p in ("", "fit_") for a in ("pitch", "yaw", "roll")]
    assert_frames_equal(a, b, close=dict.fromkeys(angles, 1e-3))
    assert b.attrs["manifest"]["pose_fit"] == a.attrs["manifest"]["pose_fit"]
    assert mf.compare_manifests(tmp / "pose_local.parquet", tmp / "pose_ds", atol=1e-3) == []
    assert any("'yaw'" in d for d in mf.compare_manifests(src, tmp / "pose_ds", atol=1e-3))
    assert any("'yaw'" in d for d in mf.compare_manifests(src, tmp / "pose_ds"))


def test_image_checks_on_dask(built, engine):
    tmp = built["tmp"]
    local = check_images(built["local"].out, tmp / "img_local.parquet", on_error="skip",
                                       engine="local", rows_per_partition=64, progress=False)
    dask = check_images(built["dset"].out, tmp / "img_dask.parquet", on_error="skip",
                                      engine=engine, rows_per_partition=64, progress=False)
    a, b = mf.read_manifest(tmp / "img_local.parquet"), mf.read_manifest(tmp / "img_dask.parquet")
    assert_frames_equal(a, b)
    assert local.skipped == dask.skipped
    # the build already dropped faces without images: every row is checked and has its size
    assert dask.extra["checked"] == len(mf.read_manifest(built["local"].out)) and dask.extra["bad"] == 0
    assert a["image_width"].notna().all()


def test_parse_error_on_a_worker_fails_the_run_and_leaves_nothing(shared_data, tmp_path, engine):
    root = rect_list_root(shared_data, tmp_path, n_lines=200, bad_line=150)
    out = tmp_path / "out_ds"
    with pytest.raises(ParseError) as info:
        build_manifest([f"wflw={root}"], out, on_error="raise", engine=engine, chunk_bytes=32 << 10,
                                     progress=False)
    assert info.value.line == 150 and info.value.field == "y3"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["WFLW"]  # no staging directory left


def test_incomplete_dataset_is_refused(built, tmp_path):
    import shutil

    ds = tmp_path / "copy"
    shutil.copytree(built["dset"].out, ds)
    (ds / mf.SUCCESS_FILE).unlink()
    with pytest.raises(ManifestError, match="_SUCCESS"):
        mf.read_dataset(ds)
    assert "_SUCCESS" in mf.validate_dataset(ds)[0]
    (ds / mf.SUCCESS_FILE).write_text("{}")
    extra = ds / "source=lapa" / "split=test" / "part-99999.parquet"
    shutil.copy(next(ds.rglob("part-*.parquet")), extra)
    assert any("not listed" in p for p in mf.validate_dataset(ds))


def test_engine_arguments():
    with pytest.raises(EngineError, match="valid"):
        get_engine("spark")
    with pytest.raises(EngineError, match="dask"):
        get_engine("ray")


def test_refuses_to_replace_a_non_dataset_directory(tmp_path, built):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ManifestError, match="not a dataset"):
        mine_closed_eyes(built["local"].out, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_merge_on_dask_equals_local(built, engine, shared_data):

    tmp = built["tmp"]
    lapa = tmp / "lapa.parquet"
    build_manifest([f"lapa={shared_data}/LaPa", f"ibug={shared_data}/300W"], lapa, progress=False)
    weights = ["w2=2", "lapa=0.5"]
    local = merge_manifests([built["local"].out, lapa, built["dfile"].out], tmp / "merged_local.parquet", weights)
    assert {d["reason"] for d in local.duplicates} == {"sample_id", "image content and landmarks"}
    # the same inputs, the third one as a dataset: same rows, values, duplicates, counts
    rep = merge_manifests([built["local"].out, lapa, built["dset"].out], tmp / "merged_dask", weights,
                                   engine=engine, rows_per_partition=128, progress=False)
    assert rep.run.units > 5
    assert rep.duplicates == local.duplicates
    assert (rep.rows_in, rep.rows_out, rep.weights) == (local.rows_in, local.rows_out, local.weights)
    a, b = mf.read_manifest(tmp / "merged_local.parquet"), mf.read_dataset(tmp / "merged_dask")
    assert_frames_equal(a, b)
    assert b.loc[b.source == "w2", "weight"].eq(2).all()
    dup = [json.loads(x) for x in (tmp / "merged_dask" / "_duplicates.jsonl").read_text().splitlines()]
    assert dup == local.duplicates
    # single-file form: the local file byte for byte when the inputs are the same files
    merge_manifests([built["local"].out, lapa, built["dfile"].out], tmp / "merged_dask.parquet", weights,
                        engine=engine, rows_per_partition=128, progress=False)
    assert filecmp.cmp(tmp / "merged_local.parquet", tmp / "merged_dask.parquet", shallow=False)


def test_take_rows_is_right_on_sliced_tables(built):
    t = mf.read_table(built["local"].out)
    s = t.slice(5, 100)
    got = mf.take_rows(s, [3, 4, 10, 2])
    want = [mf.landmarks_array(mf.dataframe_from_table(t.slice(5 + i, 1)))[0] for i in (3, 4, 10, 2)]
    np.testing.assert_array_equal(mf.landmarks_array(mf.dataframe_from_table(got)), np.stack(want))


def test_build_manifest_command_with_dask_engine(shared_data, tmp_path, capsys):
    """The README's cluster example: build-manifest --engine dask --workers 2 (a LocalCluster of its own)."""
    pytest.importorskip("distributed")
    from landmark_unify.cli import main

    srcs = ["--source", f"ibug={shared_data}/300W", "--source", f"coco={shared_data}/mmpose_tests/wflw"]
    assert main(["build-manifest", "-o", str(tmp_path / "demo.parquet"), "--no-progress", *srcs]) == 0
    assert main(["build-manifest", "-o", str(tmp_path / "demo_ds"), "--engine", "dask", "--workers", "2",
                 "--single-file", str(tmp_path / "demo_one.parquet"), "--no-progress", *srcs]) == 0
    assert "engine dask x2" in capsys.readouterr().out
    assert mf.compare_manifests(tmp_path / "demo.parquet", tmp_path / "demo_ds") == []
    # the same rows and metadata; only the recorded command lines differ
    assert mf.compare_manifests(tmp_path / "demo.parquet", tmp_path / "demo_one.parquet") == []
    one, loc = mf.read_metadata(tmp_path / "demo_one.parquet"), mf.read_metadata(tmp_path / "demo.parquet")
    assert "--engine dask" in one.pop("command") and "--engine" not in loc.pop("command")
    assert one == loc
    assert mf.validate_dataset(tmp_path / "demo_ds") == []


def test_readme_dask_snippet_compares_like_with_like(tmp_path):
    """The README's dask example with --weight ibug=2 --relabel-pose: the local build with the same options
    and form is equal to the last bit; a single file differs only in fitted angles, within 1e-3 degrees."""
    pytest.importorskip("distributed")
    from landmark_unify.cli import main

    demo = Path(__file__).resolve().parents[3] / "landmark_unify" / "demo_data"
    opts = ["--weight", "ibug=2", "--relabel-pose", "--no-progress", "--source", f"ibug={demo / '300W'}",
            "--source", f"coco={demo / 'mmpose' / 'wflw'}"]
    assert main(["build-manifest", "-o", str(tmp_path / "demo_ds"), "--engine", "dask", "--workers", "2", *opts]) == 0
    assert main(["build-manifest", "-o", str(tmp_path / "demo_local_ds"), *opts]) == 0
    assert main(["build-manifest", "-o", str(tmp_path / "demo_pose.parquet"), *opts]) == 0
    assert mf.compare_manifests(tmp_path / "demo_local_ds", tmp_path / "demo_ds") == []
    single = mf.compare_manifests(tmp_path / "demo_pose.parquet", tmp_path / "demo_ds")
    assert all(re.match(r"column '(pitch|yaw|roll)'", d) for d in single)
    assert mf.compare_manifests(tmp_path / "demo_pose.parquet", tmp_path / "demo_ds", atol=1e-3) == []
    assert mf.read_manifest(tmp_path / "demo_ds")["weight"].max() == 2


@pytest.fixture(scope="module")
def sample_table(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "wflw.parquet"
    build_manifest([f"wflw={shared_data}/WFLW"], out, progress=False)
    return mf.read_table(out).slice(0, 80)


def test_parts_restore_the_row_order_for_any_mix_of_keys(sample_table):
    """A unit whose rows alternate between (source, split) keys is split into hive parts and read back in
    its own order, values intact (property test over key sequences)."""
    import tempfile

    import pyarrow as pa
    from hypothesis import given, settings
    from hypothesis import strategies as st

    keys = st.lists(st.tuples(st.sampled_from(["wflw", "la pa", "x/y"]), st.sampled_from(["train", "test"])),
                    min_size=1, max_size=80)

    @settings(max_examples=25, deadline=None)
    @given(keys, st.integers(0, 3))
    def check(seq, offset):
        n = len(seq)
        t = sample_table.slice(offset, n)  # a sliced table, as read_slice hands them over
        t = t.set_column(t.schema.get_field_index("source"), t.schema.field("source"), pa.array([k[0] for k in seq]))
        t = t.set_column(t.schema.get_field_index("split"), t.schema.field("split"), pa.array([k[1] for k in seq]))
        with tempfile.TemporaryDirectory() as tmp:
            staged = mf.StagedDataset(Path(tmp) / "ds")
            parts, runs = mf.write_parts(t, staged.staging, 7, {"source_roots": {}})
            staged.finalize([(parts, runs)], {"source_roots": {}})
            staged.publish()
            back = mf.read_dataset_table(Path(tmp) / "ds")
            assert len(parts) == len(set(seq))
            assert back.column("sample_id").to_pylist() == t.column("sample_id").to_pylist()
            assert back.column("source").to_pylist() == [k[0] for k in seq]
            np.testing.assert_array_equal(mf.landmarks_array(mf.dataframe_from_table(back)),
                                          mf.landmarks_array(mf.dataframe_from_table(t)))
            odd = [p for p in parts if p["source"] == "x/y"]
            for p in odd:  # hive values are URL-quoted: one folder level per key
                assert p["path"].startswith("source=x%2Fy/split=")

    check()


def test_duplicate_ids_across_units_follow_the_local_rule(shared_data, tmp_path, monkeypatch):
    """Units that repeat another unit's faces (sample_id seen before): dropped and listed under skip,
    the first one raised under raise, exactly as the local build does (engine local: same process)."""
    import pyarrow as pa

    from landmark_unify.ops import build

    root = rect_list_root(shared_data, tmp_path, n_lines=120)
    units = build.plan_units([f"wflw={root}"], 32 << 10)
    assert len(units) >= 3
    orig = build.process_unit
    first, _ = orig(units[0])

    def repeating(unit, policy="strict", on_error="raise", check_images=False, **kw):
        t, s = orig(unit, policy, on_error, check_images, **kw)
        # (the local build plans its units without counting lines: compare where they start)
        return (pa.concat_tables([t, first.slice(2, 3)]) if unit.start != units[0].start else t), s

    monkeypatch.setattr(build, "process_unit", repeating)
    kw = dict(on_error="skip", chunk_bytes=32 << 10, progress=False)
    local = build.build_manifest([f"wflw={root}"], tmp_path / "local.parquet", **kw)
    dist = build_manifest([f"wflw={root}"], tmp_path / "ds", engine="local", **kw)
    assert len(local.skipped) == 3 * (len(units) - 1) and dist.skipped == local.skipped
    assert mf.compare_manifests(tmp_path / "local.parquet", tmp_path / "ds") == []
    assert mf.validate_dataset(tmp_path / "ds") == []
    kw["on_error"] = "raise"
    with pytest.raises(ParseError) as a:
        build.build_manifest([f"wflw={root}"], tmp_path / "local2.parquet", **kw)
    with pytest.raises(ParseError) as b:
        build_manifest([f"wflw={root}"], tmp_path / "ds2", engine="local", **kw)
    assert str(a.value) == str(b.value) and "duplicate" in str(b.value)
    assert not (tmp_path / "ds2").exists()


def test_curation_commands_with_dask_engine(built, tmp_path, capsys):
    """mine-closed-eyes, relabel-pose and merge with --engine dask --workers 2, and with a dataset input."""
    from landmark_unify.cli import main

    src = str(built["local"].out)
    assert main(["mine-closed-eyes", src, "-o", str(tmp_path / "eyes.parquet"), "--closed-threshold", "0.2"]) == 0
    assert main(["mine-closed-eyes", src, "-o", str(tmp_path / "eyes_ds"), "--closed-threshold", "0.2", "--engine", "dask",
                 "--workers", "2", "--partition-rows", "100", "--single-file", str(tmp_path / "eyes_ds.parquet")]) == 0
    assert mf.compare_manifests(tmp_path / "eyes.parquet", tmp_path / "eyes_ds") == []
    assert mf.compare_manifests(tmp_path / "eyes.parquet", tmp_path / "eyes_ds.parquet") == []
    # a dataset input takes the partitioned path on the local engine
    assert main(["relabel-pose", str(tmp_path / "eyes_ds"), "-o", str(tmp_path / "pose.parquet")]) == 0
    assert main(["merge", src, str(tmp_path / "eyes_ds"), "-o", str(tmp_path / "merged_ds"), "--engine", "dask",
                 "--workers", "2", "--weight", "lapa=2", "--no-progress"]) == 0
    assert main(["merge", src, str(tmp_path / "eyes.parquet"), "-o", str(tmp_path / "merged.parquet"),
                 "--weight", "lapa=2", "--no-progress"]) == 0
    assert mf.compare_manifests(tmp_path / "merged.parquet", tmp_path / "merged_ds") == []
    out = capsys.readouterr()
    assert "duplicates dropped" in out.out and "pose fitted for" in out.err


def test_weight_and_relabel_pose_on_dask_equal_local(shared_data, tmp_path, capsys):
    """Every option works on every engine: build-manifest --weight ... --relabel-pose with --engine dask
    gives the rows and values of the local engine (pose angles within float32 rounding of the batch)."""
    pytest.importorskip("distributed")
    from landmark_unify.cli import main

    srcs = ["--source", f"ibug={shared_data}/300W", "--source", f"lapa={shared_data}/LaPa",
            "--source", f"aflw2000={shared_data}/AFLW2000", "--weight", "lapa=2.5", "--weight", "ibug=0.5",
            "--relabel-pose", "--quiet"]
    assert main(["build-manifest", "-o", str(tmp_path / "local.parquet"), *srcs]) == 0
    assert main(["build-manifest", "-o", str(tmp_path / "dask_ds"), "--engine", "dask", "--workers", "2", *srcs]) == 0
    out = capsys.readouterr().out
    assert "pose relabelled: fitted" in out
    local, dask = mf.read_manifest(tmp_path / "local.parquet"), mf.read_manifest(tmp_path / "dask_ds")
    assert_frames_equal(local, dask, close={c: 1e-3 for c in ("pitch", "yaw", "roll", "fit_pitch", "fit_yaw", "fit_roll")})
    assert local.groupby("source")["weight"].first().to_dict() == {"aflw2000": 1.0, "ibug": 0.5, "lapa": 2.5}
    assert (local["pose_source"] == "fit").sum() > 0 and local["pose_source"].notna().all()
    assert local.attrs["manifest"]["pose_fit"] == dask.attrs["manifest"]["pose_fit"]
    assert mf.validate_dataset(tmp_path / "dask_ds") == []
