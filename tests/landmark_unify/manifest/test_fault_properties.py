"""Property tests: a manifest from elsewhere, broken at random (a column dropped, retyped, nulled, a list
resized), is read into the right columns and types or refused with a ManifestError naming the file and the
column; commands on it exit 0 or 1 with a message, never a traceback."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from landmark_unify.cli import main
from landmark_unify.errors import ManifestError
from landmark_unify.manifest import COLUMN_NAMES, SCHEMA, read_manifest, validate

_spec = importlib.util.spec_from_file_location(
    "fault_corpus", Path(__file__).resolve().parents[1] / "commands" / "fault_corpus.py")
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)

TYPES = [pa.string(), pa.float64(), pa.float32(), pa.int64(), pa.bool_(), pa.list_(pa.float32()),
         pa.list_(pa.list_(pa.float64())), pa.null()]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return fc.good_manifest(tmp_path_factory.mktemp("good") / "good.parquet")


def _mutate(table: pa.Table, kind: str, column: str, typ: pa.DataType, row: int, length: int) -> pa.Table:
    i = table.schema.get_field_index(column)
    col = table.column(column)
    if kind == "drop":
        return table.remove_column(i)
    if kind == "retype":
        values = col.to_pylist()
        try:
            arr = pa.array(values).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
            arr = pa.array([None] * len(values), typ)
        return table.set_column(i, pa.field(column, arr.type), arr)
    if kind == "null":
        values = col.to_pylist()
        values[row % len(values)] = None
        arr = pa.array(values, col.type)
        return table.set_column(i, pa.field(column, col.type), arr)
    # resize: a list column as variable-length lists of another length
    values = col.to_pylist()
    v = values[row % len(values)]
    if isinstance(v, list):
        values[row % len(values)] = (v * (length // max(len(v), 1) + 1))[:length]
        arr = pa.array(values)
        return table.set_column(i, pa.field(column, arr.type), arr)
    return table


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["drop", "retype", "null", "resize"]), column=st.sampled_from(COLUMN_NAMES),
       typ=st.sampled_from(TYPES), row=st.integers(0, 3), length=st.integers(0, 200))
def test_broken_manifests_are_read_right_or_refused(good, tmp_path_factory, kind, column, typ, row, length):
    t = pq.read_table(good)
    assume(column in t.column_names)
    bad = _mutate(t, kind, column, typ, row, length)
    path = tmp_path_factory.mktemp("bad") / "bad.parquet"
    pq.write_table(bad, path)
    try:
        df = read_manifest(path)
    except ManifestError as exc:
        assert str(path) in str(exc) and column in str(exc), str(exc)
        assert validate(path), "validate accepted what the read refused"
    else:
        assert set(COLUMN_NAMES) <= set(df.columns)
        for name in COLUMN_NAMES:  # what was read has the manifest's types
            if name in bad.column_names:
                assert bad.schema.field(name).type.equals(SCHEMA.field(name).type), name
    for argv in (["inspect", str(path)], ["mine-closed-eyes", str(path), "-o", str(path.with_name("o.parquet")), "-q"]):
        try:
            code = main(argv)
        except SystemExit as exc:  # pragma: no cover - argparse
            code = exc.code
        assert code in (0, 1)
        if code == 1:
            assert not path.with_name("o.parquet").exists()
