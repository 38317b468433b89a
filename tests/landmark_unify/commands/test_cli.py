"""The thin CLI: the README's main command on the demo data, inspect, validate, schemas, delegation."""
from __future__ import annotations

import os
import subprocess
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from landmark_unify.cli import main
from landmark_unify.manifest import read_manifest


def test_readme_main_command_on_the_demo_data(repo_root, tmp_path):
    """As a user runs it: from the repository root, relative paths, a fresh process."""
    out = tmp_path / "demo.parquet"
    cmd = [sys.executable, "-m", "landmark_unify.cli", "build-manifest", "-o", str(out),
           "--source", "ibug=landmark_unify/demo_data/300W", "--source", "coco=landmark_unify/demo_data/mmpose/wflw"]
    res = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert res.returncode == 0, res.stderr
    assert "9 faces" in res.stdout and "coverage" in res.stdout and "skipped: 0 records" in res.stdout
    df = read_manifest(out)
    assert len(df) == 9 and set(df["source"]) == {"ibug", "coco"}
    assert df.attrs["manifest"]["command"].startswith("landmark_unify build-manifest")


def test_inspect_and_validate(repo_root, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    demo = repo_root / "landmark_unify/demo_data/mmpose"
    args = ["build-manifest", "-o", str(out), "--no-progress", "--policy", "extended"]
    for d in ("cofw", "aflw", "lapa", "300wlp", "coco_wholebody"):
        args += ["--source", f"{d}:coco={demo / d}"]
    assert main(args) == 0
    built = capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    inspected = capsys.readouterr().out
    assert inspected.splitlines()[1:] == built.splitlines()[1:]
    for d in ("cofw", "aflw", "lapa", "300wlp", "coco_wholebody"):
        assert d in inspected
    assert main(["validate", str(out)]) == 0
    assert "valid" in capsys.readouterr().out
    # a file that breaks the spec: one column dropped
    bad = tmp_path / "bad.parquet"
    t = pq.read_table(out)
    pq.write_table(t.drop_columns(["bbox"]).replace_schema_metadata(t.schema.metadata), bad)
    assert main(["validate", str(bad)]) == 1
    assert "missing column 'bbox'" in capsys.readouterr().err
    pq.write_table(pa.table({"x": [1]}), bad)
    assert main(["validate", str(bad)]) == 1
    assert main(["inspect", str(tmp_path / "nope.parquet")]) == 1


def test_schemas_lists_layouts_and_counts(capsys):
    assert main(["schemas", "--readers"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == ["ibug68"] and "exact" not in ln and "points" not in ln)
    assert line.split()[2:] == ["43", "21", "0", "43", "64"]
    assert "lapa106" in out and "coco" in out


def test_engine_recipe_and_relabel_are_delegated(repo_root, tmp_path, capsys, monkeypatch):
    import landmark_unify.ops.build as build
    import landmark_unify.ops.relabel as relabel

    seen = {}

    def fake_build(sources, out, **kw):
        seen.update(kw, sources=list(sources), out=out)
        return types.SimpleNamespace(summary="engine build done")

    monkeypatch.setattr(build, "build_manifest", fake_build)
    src = f"ibug={repo_root / 'landmark_unify/demo_data/300W'}"
    assert main(["build-manifest", "-o", str(tmp_path / "d"), "--source", src, "--engine", "dask", "--workers", "3"]) == 0
    assert "engine build done" in capsys.readouterr().out
    run = seen["run"]  # the engine settings, once, as one RunOptions
    assert run.engine == "dask" and run.workers == 3 and seen["sources"] == [src] and seen["policy"] == "strict"

    with pytest.raises(SystemExit) as got:  # the recipes are the option's choices
        main(["build-manifest", "--recipe", "pfpld"])
    assert got.value.code == 2 and "invalid choice: 'pfpld'" in capsys.readouterr().err

    monkeypatch.undo()
    calls = []

    def fake_relabel(a, b, **kw):
        calls.append((a, b, kw["run"].engine))
        return types.SimpleNamespace(extra={"filled": 5, "kept": 1, "unknown": 0})

    monkeypatch.setattr(relabel, "relabel_pose", fake_relabel)
    out = tmp_path / "r.parquet"
    assert main(["build-manifest", "-o", str(out), "--source", src, "--relabel-pose", "--no-progress"]) == 0
    assert calls == [(str(out), str(out), "local")]
    assert "pose relabelled: fitted 5, dataset pose kept 1, unknown 0" in capsys.readouterr().out


def test_usage_errors(tmp_path, capsys):
    # --relabel-pose works on every engine; a bad source fails before any engine starts, nothing written
    assert main(["build-manifest", "-o", str(tmp_path / "d"), "--source", "ibug=x", "--engine", "dask",
                 "--relabel-pose"]) == 1
    assert "ibug" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main(["build-manifest", "--source", "ibug=x"]) == 2
    assert main(["build-manifest", "-o", str(tmp_path / "x.parquet")]) == 2
    assert main(["build-manifest", "-o", str(tmp_path / "x.parquet"), "--source", "nope=x"]) == 1
    assert "valid:" in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["inspect", "{missing}"], ["validate", "{missing}"], ["mine-closed-eyes", "{missing}", "-o", "{out}"],
    ["relabel-pose", "{missing}", "-o", "{out}"], ["merge", "{missing}", "-o", "{out}"],
    ["render", "{missing}", "-o", "{out}.png"], ["report", "{missing}", "-o", "{out}_dir"],
    ["inspect", "{junk}"], ["validate", "{junk}"], ["mine-closed-eyes", "{junk}", "-o", "{out}"],
])
def test_a_missing_or_unreadable_manifest_is_a_message_not_a_traceback(tmp_path, capsys, args):
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    names = {"missing": tmp_path / "nope.parquet", "junk": junk, "out": tmp_path / "out"}
    code = main([a.format(**names) for a in args])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert ("nope.parquet: file not found" in err) or ("junk.parquet: cannot read as Parquet" in err), err
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("args", [
    ["render", "M", "-o", "x.png", "--n", "0"], ["render", "M", "-o", "x.png", "--n", "-3"],
    ["render", "M", "-o", "x.png", "--size", "0"], ["render", "M", "-o", "x.png", "--cols", "0"],
    ["mine-closed-eyes", "M", "-o", "x.parquet", "--threshold", "-1"],
    ["mine-closed-eyes", "M", "-o", "x.parquet", "--threshold", "nan"],
    ["merge", "M", "-o", "x.parquet", "--tolerance", "-0.1"], ["report", "M", "-o", "d", "--closed-threshold", "-1"],
    ["relabel-pose", "M", "-o", "x.parquet", "--min-points", "0"],
])
def test_out_of_range_numbers_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "argument --" in capsys.readouterr().err


def test_render_with_no_matching_face_writes_nothing(repo_root, tmp_path, capsys):
    m = tmp_path / "demo.parquet"
    assert main(["build-manifest", "-o", str(m), "--source", f"coco={repo_root}/landmark_unify/demo_data/mmpose/wflw",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["render", str(m), "-o", str(tmp_path / "s.png"), "--where", "source == 'lapa'"]) == 1
    assert "none matching --where" in capsys.readouterr().err and not (tmp_path / "s.png").exists()
    assert main(["mine-closed-eyes", str(m), "-o", str(tmp_path / "c.parquet"), "--mode", "both"]) == 0
    assert "both eyes)" in capsys.readouterr().err


def test_inspect_and_validate_a_partitioned_dataset(repo_root, tmp_path, capsys):
    from landmark_unify.ops.build import build_manifest

    out = tmp_path / "ds"
    build_manifest([f"ibug={repo_root / 'landmark_unify/demo_data/300W'}"], out, engine="local", progress=False)
    assert out.is_dir()
    assert main(["inspect", str(out)]) == 0
    assert "5 faces" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0


def test_output_piped_into_a_closed_reader_stops_quietly(repo_root):
    """`landmark_unify schemas --readers | head -1`: no traceback, no 'Broken pipe' error."""
    proc = subprocess.Popen([sys.executable, "-m", "landmark_unify.cli", "schemas", "--readers"], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader went away before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_an_output_that_cannot_be_written_is_a_message(repo_root, tmp_path, capsys):
    src = f"coco={repo_root}/landmark_unify/demo_data/mmpose/wflw"
    occupied = tmp_path / "occupied"  # a folder that is no dataset is never replaced by one
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert main(["build-manifest", "-o", str(occupied), "--source", src, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "not a dataset" in err and str(occupied) in err and [p.name for p in occupied.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]
    m = tmp_path / "m.parquet"
    assert main(["build-manifest", "-o", str(m), "--source", src, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["render", str(m), "-o", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
