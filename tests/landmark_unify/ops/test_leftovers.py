"""Old names: the recipe registry dispatches by name, and the aliases of the curation operations warn."""
from __future__ import annotations

import dataclasses

import pytest

import landmark_unify as lu
from landmark_unify.ops import recipes


def test_a_recipe_runs_the_build_its_entry_names(monkeypatch, tmp_path, capsys):
    from landmark_unify.cli import main

    calls = []
    report = tmp_path / "fake.balance.md"
    report.write_text("balance\n", encoding="utf-8")

    def fake(sources, out, **options):
        calls.append((list(sources), str(out), options["policy"]))
        return {"faces": 0, "report_files": [str(report), str(report)]}

    fake_recipe = dataclasses.replace(recipes.RECIPES["wflw2"], name="fake", build=fake)
    monkeypatch.setitem(recipes.RECIPES, "fake", fake_recipe)
    out = tmp_path / "f.parquet"
    assert main(["build-manifest", "--recipe", "fake", "--source", "wflw=x", "-o", str(out), "-q"]) == 0
    assert calls == [(["wflw=x"], str(out), "strict")]
    assert recipes.RECIPES["wflw2"].build is recipes.build_wflw2
    assert all(callable(r.build) for r in recipes.RECIPES.values())
    assert not hasattr(recipes, "list_recipes")


def test_the_old_operation_names_warn_and_still_work(shared_data, tmp_path):
    from landmark_unify.ops.mine import mine_closed_eyes_file
    from landmark_unify.ops.relabel import relabel_manifest_file

    src = tmp_path / "lapa.parquet"
    lu.build_manifest([f"lapa={shared_data / 'LaPa'}"], src, progress=False)
    with pytest.deprecated_call(match="merge_manifests"):
        report = lu.merge_manifest_files([src], tmp_path / "m.parquet")
    assert sum(report.rows_out.values()) == 2
    with pytest.deprecated_call(match="relabel_pose"):
        counts = lu.relabel_manifest_file(src, tmp_path / "p.parquet")
    assert counts == {"filled": 2, "kept": 0, "unknown": 0}
    assert relabel_manifest_file is lu.relabel_manifest_file
    with pytest.deprecated_call(match="mine_closed_eyes"):
        assert mine_closed_eyes_file(src, tmp_path / "e.parquet", threshold=1.0) == (2, 2)
