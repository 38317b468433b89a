"""The build's summary is counted unit by unit (table_stats, merge_stats); it must equal the summary of the
whole manifest, however the rows are cut."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark_unify import manifest as mf
from landmark_unify.ops.build import build_manifest
from landmark_unify.report.summary import merge_stats, summary_text, table_stats


@pytest.fixture(scope="module")
def mixed(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats") / "mixed.parquet"
    s = shared_data
    build_manifest([f"wflw={s}/WFLW", f"ibug={s}/300W", f"lapa={s}/LaPa", f"300wlp={s}/300W_LP",
                    f"aflw2000={s}/AFLW2000", f"coco={s}/mmpose_tests/wflw"], out, weights=["lapa=2"], progress=False)
    return mf.read_table(out)


def test_summary_of_pieces_equals_the_whole(mixed):
    meta = {"format_version": "x", "policy": "strict"}
    whole = summary_text(mixed, meta)
    assert "lapa" in whole and "aflw2000" in whole
    for step in (1, 7, 997, mixed.num_rows):
        pieces = [table_stats(mixed.slice(a, step)) for a in range(0, mixed.num_rows, step)]
        assert summary_text(merge_stats(pieces), meta) == whole


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=8))
def test_any_cut_gives_the_same_counts(mixed, cuts):
    bounds = sorted({min(c, mixed.num_rows) for c in cuts} | {0, mixed.num_rows})
    pieces = [table_stats(mixed.slice(a, b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
    merged = merge_stats(pieces)
    whole = table_stats(mixed)
    assert merged["faces"] == whole["faces"] and list(merged["sources"]) == list(whole["sources"])
    assert summary_text(merged) == summary_text(whole)


def test_build_report_counts_without_reading_back(shared_data, tmp_path):
    rep = build_manifest([f"ibug={shared_data}/300W", f"lapa={shared_data}/LaPa"], tmp_path / "m.parquet",
                         progress=False, chunk_bytes=1)
    assert rep.faces_per_source == {"ibug": 7, "lapa": 2}
    assert rep.summary.splitlines()[1:] == summary_text(mf.read_table(tmp_path / "m.parquet"),
                                                        rep.metadata).splitlines()[1:]
