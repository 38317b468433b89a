"""The wflw2 recipe on the real samples: each source's faces once, LaPa closed-eye faces only, weights."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.core.eyes import CLOSED_THRESHOLD
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.ops.recipes import build_wflw2


@pytest.fixture(scope="module")
def lapa_with_closed_eyes(shared_data, tmp_path_factory):
    """A copy of the LaPa samples where one face's eyes are closed (lids moved onto the corner line)."""
    root = tmp_path_factory.mktemp("lapa") / "LaPa"
    shutil.copytree(shared_data / "LaPa", root)
    txt = sorted((root / "test/landmarks").glob("*.txt"))[1]
    lines = txt.read_text().splitlines()
    pts = np.array([[float(v) for v in ln.split()] for ln in lines[1:]])
    for corner_a, corner_b, lids in ((66, 70, (67, 68, 69, 71, 72, 73)), (75, 79, (76, 77, 78, 80, 81, 82))):
        a, b = pts[corner_a], pts[corner_b]
        for k in lids:
            t = np.dot(pts[k] - a, b - a) / np.dot(b - a, b - a)
            pts[k] = a + t * (b - a)
    txt.write_text(lines[0] + "\n" + "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts) + "\n")
    return root


def test_wflw2_recipe_on_the_samples(shared_data, tmp_path, capsys):
    from landmark_unify.cli import main

    out = tmp_path / "manifests" / "wflw2.parquet"
    rc = main(["build-manifest", "--recipe", "wflw2", "--source", f"wflw={shared_data / 'WFLW'}",
               "--source", f"lapa={shared_data / 'LaPa'}", "--source", f"300wlp={shared_data / '300W_LP'}",
               "-o", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert lu.validate_manifest(out) == []
    df = lu.read_manifest(out)
    # each source's faces once; the two LaPa samples are open-eyed (EAR 0.124 and 0.25), so none is kept
    assert df["source"].value_counts().to_dict() == {"wflw": 1966, "300wlp": 1}
    assert df["sample_id"].is_unique
    assert (df["weight"] == 1.0).all()
    wflw = df[df["source"] == "wflw"]
    assert (wflw["pose_source"] == "fit").all() and wflw["yaw"].notna().all()
    lp = df[df["source"] == "300wlp"].iloc[0]
    assert lp["pose_source"] == "dataset" and abs(lp["yaw"] - (-44.0087)) < 1e-3 and np.isfinite(lp["fit_yaw"])
    balance = json.loads((tmp_path / "manifests" / "wflw2.balance.json").read_text())
    assert balance["sources"]["lapa"]["faces"] == 0
    assert sum(balance["sources"]["wflw"]["yaw_bins"].values()) == 1966
    assert balance["sources"]["wflw"]["eye_state"]["both_closed"] == int((wflw["eye_state"] == "both_closed").sum())
    assert "## Yaw, 15-degree bins" in capsys.readouterr().out
    # the per-source staging files are gone: only the manifest and its balance report remain
    assert sorted(p.name for p in out.parent.iterdir()) == ["wflw2.balance.json", "wflw2.balance.md", "wflw2.parquet"]


def test_wflw2_keeps_lapa_closed_eyes_with_weights(shared_data, lapa_with_closed_eyes, tmp_path):
    out = tmp_path / "wflw2.parquet"
    balance = build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={lapa_with_closed_eyes}",
                           f"300wlp={shared_data / '300W_LP'}"], out, weights=["lapa=3", "300wlp=0.5"],
                          progress=False, log=lambda m: None)
    df = lu.read_manifest(out)
    assert df["source"].value_counts().to_dict() == {"wflw": 1966, "lapa": 1, "300wlp": 1}
    lapa = df[df["source"] == "lapa"].iloc[0]
    assert lapa["eye_state"] == "both_closed" and lapa["ear_left"] <= CLOSED_THRESHOLD
    assert lapa["weight"] == 3.0 and df[df["source"] == "300wlp"]["weight"].iloc[0] == 0.5
    assert balance["sources"]["lapa"]["weight_sum"] == 3.0
    assert balance["merge"]["duplicates"] == 0
    assert lu.image_paths(df[df["source"] == "lapa"])[0].exists()


def test_wflw2_leaves_no_staging_folder_after_an_error(shared_data, tmp_path):
    bad = tmp_path / "lapa" / "test" / "landmarks"
    bad.mkdir(parents=True)
    (bad / "x.txt").write_text("106\n1 2\n")
    out = tmp_path / "out" / "wflw2.parquet"
    with pytest.raises(lu.LandmarkUnifyError):
        build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={tmp_path / 'lapa'}", f"300wlp={shared_data / '300W_LP'}"],
                    out, progress=False, log=lambda *_: None)
    assert not out.parent.exists()  # the folder made for the output went with it


def test_wflw2_needs_its_three_sources(shared_data, tmp_path):
    with pytest.raises(LandmarkUnifyError, match="300wlp=ROOT"):
        build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={shared_data / 'LaPa'}"], tmp_path / "x.parquet")
    with pytest.raises(LandmarkUnifyError, match="kinds"):
        build_wflw2([f"aflw2000={shared_data / 'AFLW2000'}"], tmp_path / "x.parquet")
    with pytest.raises(LandmarkUnifyError, match="two sources"):
        build_wflw2([f"wflw={shared_data / 'WFLW'}", f"w2:wflw={shared_data / 'WFLW'}"], tmp_path / "x.parquet")


def test_unknown_recipe_via_the_cli(tmp_path, capsys):
    from landmark_unify.cli import main

    with pytest.raises(SystemExit) as got:  # the recipes are the choices of --recipe
        main(["build-manifest", "--recipe", "nope", "-o", str(tmp_path / "x.parquet")])
    assert got.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_wflw2_weights_from_the_command_line(shared_data, lapa_with_closed_eyes, tmp_path, capsys):
    from landmark_unify.cli import main

    out = tmp_path / "wflw2.parquet"
    rc = main(["build-manifest", "--recipe", "wflw2", "--source", f"wflw={shared_data / 'WFLW'}",
               "--source", f"lapa={lapa_with_closed_eyes}", "--source", f"300wlp={shared_data / '300W_LP'}",
               "--weight", "lapa=4", "--weight", "wflw=0.25", "-o", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    df = lu.read_manifest(out)
    assert df.groupby("source")["weight"].unique().map(list).to_dict() == {"lapa": [4.0], "wflw": [0.25], "300wlp": [1.0]}
    assert df.attrs["manifest"]["source_weights"] == {"lapa": 4.0, "wflw": 0.25, "300wlp": 1.0}
    recipe = df.attrs["manifest"]["recipe"]  # what built it, beside the merge's own keys
    assert recipe["name"] == "wflw2" and recipe["weights"] == {"lapa": 4.0, "wflw": 0.25, "300wlp": 1.0}
    assert recipe["policy"] == "strict" and recipe["closed_threshold"] == CLOSED_THRESHOLD
    assert [s.split(":")[0] for s in recipe["sources"]] == ["wflw", "lapa", "300wlp"]
    command = df.attrs["manifest"]["command"]  # the whole command line, --weight included
    assert command.startswith("landmark_unify build-manifest --recipe wflw2 --source wflw=") and "--weight lapa=4" in command
    assert "merged_from" in df.attrs["manifest"]
    assert main(["build-manifest", "--recipe", "wflw2", "--source", f"wflw={shared_data / 'WFLW'}",
                 "--source", f"lapa={lapa_with_closed_eyes}", "--source", f"300wlp={shared_data / '300W_LP'}",
                 "--weight", "ibug=2", "-o", str(tmp_path / "y.parquet"), "--no-progress"]) == 1
    assert "ibug" in capsys.readouterr().err and not (tmp_path / "y.parquet").exists()
