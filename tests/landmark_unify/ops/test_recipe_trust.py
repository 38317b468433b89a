"""Recipes that can be trusted, on the real samples: byte-identical rebuilds, the whole command recorded,
warnings for held-out splits and unchecked images, --splits, and --help listing the recipes."""
from __future__ import annotations

import pytest

from landmark_unify.cli import main
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.manifest import read_manifest, read_metadata
from landmark_unify.ops.recipes import build_wflw2, parse_splits


def _args(shared_data, out, *extra):
    return ["build-manifest", "--recipe", "wflw2", "--source", f"wflw={shared_data / 'WFLW'}",
            "--source", f"lapa={shared_data / 'LaPa'}", "--source", f"300wlp={shared_data / '300W_LP'}",
            "-o", str(out), "-q", *extra]


def test_the_same_command_gives_the_same_bytes_and_records_itself(shared_data, tmp_path, capsys):
    out = tmp_path / "wflw2.parquet"
    args = _args(shared_data, out, "--weight", "lapa=3", "--splits", "wflw=test")
    assert main(args) == 0
    first = out.read_bytes()
    first_balance = out.with_name("wflw2.balance.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    assert out.read_bytes() == first
    assert out.with_name("wflw2.balance.json").read_bytes() == first_balance
    meta = read_metadata(out)
    # no temporary folder in the metadata: the parts are named as in OUT.parts/
    assert ".parts-" not in str(meta)
    assert [m["path"] for m in meta["merged_from"]] == ["wflw2.parts/wflw.splits.pose.parquet",
                                                        "wflw2.parts/lapa.closed.pose.parquet",
                                                        "wflw2.parts/300wlp.pose.parquet"]
    # the whole command, --weight and --splits included, recorded and printed
    assert "--weight lapa=3" in meta["command"] and "--splits wflw=test" in meta["command"]
    assert f"command: {meta['command']}" in capsys.readouterr().err
    assert meta["recipe"]["splits"] == {"wflw": ["test"]}


def test_warnings_for_held_out_splits_and_unchecked_images(shared_data, tmp_path):
    logged = []
    balance = build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={shared_data / 'LaPa'}",
                           f"300wlp={shared_data / '300W_LP'}"], tmp_path / "w.parquet", progress=False,
                          log=logged.append, fit_pose=False)
    warnings = balance["warnings"]
    assert any(w.startswith("wflw: 1966 faces of held-out split(s) test (1966) go into this training set") and
               "--splits wflw=train" in w for w in warnings)
    # the shared WFLW sample has images for 303 of its 1966 faces
    assert any(w.startswith("wflw: images not checked (no --check-images): 1663 of 1966 faces") for w in warnings)
    assert sum("warning:" in m for m in logged) == len(warnings)
    assert read_metadata(tmp_path / "w.parquet")["recipe"]["warnings"] == warnings


def test_splits_choose_the_faces_and_silence_the_warning(shared_data, tmp_path):
    out = tmp_path / "s.parquet"
    balance = build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={shared_data / 'LaPa'}",
                           f"300wlp={shared_data / '300W_LP'}"], out, progress=False, log=lambda m: None,
                          fit_pose=False, check_images=True, on_error="skip", splits=["wflw=test", "300wlp=train"])
    df = read_manifest(out)
    assert (df["source"] == "wflw").sum() == 303 and (df["source"] == "300wlp").sum() == 1
    assert not any("held-out" in w and w.startswith("wflw") for w in balance["warnings"])
    assert not any("images not checked" in w for w in balance["warnings"])
    with pytest.raises(LandmarkUnifyError, match=r"no faces of split\(s\) \['train'\].*its splits: \['test'\]"):
        build_wflw2([f"wflw={shared_data / 'WFLW'}", f"lapa={shared_data / 'LaPa'}",
                     f"300wlp={shared_data / '300W_LP'}"], tmp_path / "x.parquet", progress=False,
                    log=lambda m: None, fit_pose=False, splits={"wflw": "train"})


def test_parse_splits():
    assert parse_splits(["wflw=train,lapa=train,val"]) == {"wflw": ("train",), "lapa": ("train", "val")}
    assert parse_splits(["wflw=train", "wflw=test"]) == {"wflw": ("train", "test")}
    with pytest.raises(LandmarkUnifyError):
        parse_splits(["train"])


def test_help_lists_the_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["build-manifest", "--help"])
    text = capsys.readouterr().out
    assert "recipes (--recipe NAME):" in text and "wflw2: WFLW + LaPa closed-eye faces" in text
    assert "--source wflw=ROOT --source lapa=ROOT --source 300wlp=ROOT" in text and "--splits" in text
