"""Manifest I/O: schema, atomic deterministic writes, validation, and row selection."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from landmark_unify import manifest as mf
from landmark_unify.errors import ManifestError
from landmark_unify.manifest.schema import fixed_list


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0, 500, (n, 98, 2)).astype(np.float32)
    valid = rng.random((n, 98)) > 0.1
    return mf.table_from_columns(dict(
        landmarks=lm, valid=valid, bbox=np.tile([0, 0, 500, 500], (n, 1)),
        sample_id=[f"id{i}" for i in range(n)], source=["s"] * n, split=["train"] * n,
        image_path=[f"{i}.jpg" for i in range(n)], source_schema=["wflw98"] * n, origin_file=["f.txt"] * n,
        origin_line=list(range(1, n + 1)),
    ))


@pytest.mark.parametrize("sliced", [False, True])
def test_take_rows_is_right_on_sliced_and_concatenated_tables(sliced):
    full = _table(12)
    table = pa.concat_tables([full.slice(0, 5), full.slice(5, 7)]) if sliced else full
    rows = np.array([6, 0, 11, 3])
    got = mf.take_rows(table, rows)
    want = mf.landmarks_array(mf.dataframe_from_table(full))[rows]
    np.testing.assert_array_equal(mf.landmarks_array(mf.dataframe_from_table(got)), want)
    assert got.column("sample_id").to_pylist() == [f"id{i}" for i in rows]
    mask = np.zeros(12, bool)
    mask[[2, 9]] = True
    assert mf.take_rows(table, mask).column("origin_line").to_pylist() == [3, 10]


def test_write_is_deterministic_and_atomic(tmp_path):
    meta = mf.make_metadata({"s": str(tmp_path)}, command="test")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    mf.write_manifest(_table(7), a, meta)
    mf.write_manifest(mf.read_manifest(a), b, meta)
    assert a.read_bytes() == b.read_bytes()
    assert mf.validate_manifest(a) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]


def test_validate_names_each_problem():
    t = _table(3)
    lm = mf.fixed_to_numpy(t.column("landmarks"), (98, 2), np.float32).copy()
    valid = mf.fixed_to_numpy(t.column("valid"), (98,), bool).copy()
    valid[1, 4] = False  # the point keeps its coordinates: invalid but finite
    lm[1, 4] = [1.0, 2.0]
    arrays = {"landmarks": fixed_list(lm, 2, 98, pa.float32()), "valid": fixed_list(valid, 98, None, pa.bool_())}
    bad = pa.Table.from_arrays([arrays.get(c, t.column(c)) for c in t.column_names], schema=mf.SCHEMA)
    problems = mf.validate_table(bad, mf.make_metadata({"s": "."}))
    assert any("not finite exactly at valid points" in p for p in problems)
    assert any("source_roots" in p for p in mf.validate_table(t, mf.make_metadata({})))
    assert mf.validate_table(t, mf.make_metadata({"s": "."})) == []


def test_read_manifest_names_a_missing_column(tmp_path):
    path = tmp_path / "m.parquet"
    mf.write_manifest(_table(2), path, mf.make_metadata({"s": "."}))
    import pyarrow.parquet as pq

    cut = pq.read_table(path).drop_columns(["valid"])
    pq.write_table(cut, tmp_path / "cut.parquet")
    with pytest.raises(ManifestError, match=r"cut\.parquet: missing manifest columns \['valid'\]"):
        mf.read_manifest(tmp_path / "cut.parquet")
