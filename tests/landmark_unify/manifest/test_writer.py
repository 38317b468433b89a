"""The streaming manifest writer: the bytes of write_manifest of all the rows, however the rows arrive and
whenever the final metadata becomes known (the footer is replaced, the data pages are kept)."""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark_unify import manifest as mf
from landmark_unify.ops.build import build_manifest


@pytest.fixture(scope="module")
def rows(shared_data, tmp_path_factory):
    """The 1966 real WFLW faces repeated past two row groups (140k rows)."""
    out = tmp_path_factory.mktemp("writer") / "wflw.parquet"
    build_manifest([f"wflw={shared_data}/WFLW"], out, progress=False)
    t = mf.read_table(out)
    t = pa.Table.from_arrays(t.columns, schema=mf.SCHEMA)
    return pa.concat_tables([t] * 72).slice(0, 140_000)


@settings(max_examples=6, deadline=None)
@given(st.integers(300, 70_000), st.booleans())
def test_streamed_file_equals_write_manifest(rows, tmp_path_factory, step, late_metadata):
    tmp = tmp_path_factory.mktemp("w")
    final = {"command": "test", "counts": {"a": 1}}
    mf.write_manifest(rows, tmp / "ref.parquet", final)
    provisional = {"command": "test", "counts": {"a": 0}} if late_metadata else final
    with mf.ManifestWriter(tmp / "s.parquet", lambda: provisional) as w:
        for a in range(0, rows.num_rows, step):
            w.write(rows.slice(a, step))
        w.close(final)
    assert (tmp / "s.parquet").read_bytes() == (tmp / "ref.parquet").read_bytes()
    assert mf.read_metadata(tmp / "s.parquet")["counts"] == {"a": 1}
    assert sorted(p.name for p in tmp.iterdir()) == ["ref.parquet", "s.parquet"]


def test_abort_leaves_nothing(rows, tmp_path):
    with pytest.raises(RuntimeError), mf.ManifestWriter(tmp_path / "s.parquet", {"a": 1}) as w:
        w.write(rows.slice(0, 70_000))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
