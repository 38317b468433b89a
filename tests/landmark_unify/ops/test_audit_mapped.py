"""The audit on faces mapped from another layout: the 1289 300W faces of the HRNet CSV (68 points, strict:
43 of the 98 canonical points valid, no contour, the brows' upper edge, the eyes' corners). Errors put on
the valid points are found and named like those of 98-point faces; the repairs are the layout's, cut to
the points the faces have."""
from __future__ import annotations

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.core import audit as ca
from landmark_unify.core.inject import inject
from landmark_unify.manifest import table_from_dataframe, valid_array, write_manifest
from landmark_unify.ops.audit import FLAG_Z, audit_manifest, read_audit

#: row -> (kind, options, the finding the audit must name)
INJECTED = {
    5: ("reverse", {"part": "brow_l"}, "reversed_order"),
    15: ("reverse", {"part": "lip_outer"}, "reversed_order"),
    25: ("swap_pair", {"part": "brow_l"}, "swapped_left_right"),
    35: ("swap_face", {}, "swapped_left_right"),
    45: ("move_point", {"point": 54, "size": 0.5, "angle": 1.0}, "outlier_point"),
    55: ("box_off", {"size": 1.0}, "wrong_face"),
}


@pytest.fixture(scope="module")
def mapped(shared_manifest, tmp_path_factory):
    df = lu.read_manifest(shared_manifest("hrnet-csv", "300W_hrnet_csv"))
    return df, tmp_path_factory.mktemp("mapped")


def test_repairs_cut_to_the_present_points(mapped):
    df, _ = mapped
    present = valid_array(df).mean(0) >= 0.5
    brow = [p for p in ca.outline_parts() if p.name == "brow_l"][0].indices
    run = brow[present[brow]]
    assert 0 < len(run) < len(brow)
    reps = {r.name: r for r in ca.repairs(present=present)}
    for r in reps.values():  # no relabelling moves a present point onto a missing one
        assert np.array_equal(present[r.perm], present)
    np.testing.assert_array_equal(reps["brow_l reversed"].perm[run], run[::-1])
    assert "brow_l ends exchanged" not in reps  # the brow is not a whole loop here
    assert "lip_outer ends exchanged" in reps
    # all points present: the layout's repairs unchanged
    assert [r.name for r in ca.repairs(present=np.ones(98, bool))] == [r.name for r in ca.repairs()]


def test_injected_errors_on_mapped_faces_are_found_and_named(mapped):
    df, d = mapped
    df = df.copy()
    meta = df.attrs["manifest"]
    for row, (kind, opts, _) in INJECTED.items():
        p, b = inject(df.at[row, "landmarks"], df.at[row, "bbox"], kind, **opts)
        assert np.array_equal(np.isfinite(p).all(1), df.at[row, "valid"])
        df.at[row, "landmarks"], df.at[row, "bbox"] = p, b
    path = d / "injected.parquet"
    write_manifest(table_from_dataframe(df), path, meta)
    out = read_audit(audit_manifest(path, d / "audit.parquet", progress=False, overwrite=True).output)
    rows = list(INJECTED)
    # every injected face among the top ranks, flagged and named
    assert out.loc[rows, "rank"].max() <= 2 * len(rows)
    for row, (_, _, want) in INJECTED.items():
        assert out.at[row, "suspicion"] >= FLAG_Z, row
        assert want in out.at[row, "findings"], (row, out.at[row, "findings"])
    clean = np.setdiff1d(np.arange(len(out)), rows)
    assert (out.loc[clean, "suspicion"] >= FLAG_Z).mean() < 0.01
    # invalid points carry no point suspicion
    ps = np.stack(out["point_suspicion"].to_numpy())
    assert np.isnan(ps[~valid_array(df)]).all()
