"""Balance tables and the report command (histograms as PNG + HTML)."""
from __future__ import annotations

import cv2
import numpy as np

import landmark_unify as lu
from landmark_unify.ops.build import build_manifest
from landmark_unify.report.colors import source_colour
from landmark_unify.report.html import balance_markdown, balance_report, draw_histograms, yaw_bin_labels, yaw_bins


def test_yaw_bins_edges():
    labels = yaw_bin_labels()
    assert labels[0] == "< -90" and labels[-2:] == [">= 90", "unknown"] and len(labels) == 15
    got = yaw_bins([-120, -90, -75.01, -0.1, 0, 14.99, 15, 89.9, 90, np.nan])
    assert [labels[i] for i in got] == ["< -90", "[-90, -75)", "[-90, -75)", "[-15, 0)", "[0, 15)", "[0, 15)",
                                        "[15, 30)", "[75, 90)", ">= 90", "unknown"]


def test_histogram_bars_are_drawn_in_their_bins():
    img = draw_histograms({"a": np.array([0.05] * 10), "b": np.array([])}, (0.0, 1.0), 0.1, "t", "x")
    assert img.dtype == np.uint8 and img.shape[1] == 720
    left, right = 64, 720 - 16
    x_mid = int(left + 0.05 * (right - left))
    col = img[34 + 100, x_mid]  # inside panel a, bin [0, 0.1)
    assert tuple(col) == source_colour("a")  # a source's colour comes from its name
    assert tuple(img[34 + 100, int(left + 0.55 * (right - left))]) == (235, 235, 235)  # empty bin


def test_balance_and_report_on_real_faces(shared_data, tmp_path):
    from landmark_unify.cli import main

    src = build_manifest([f"wflw={shared_data / 'WFLW'}", f"aflw2000={shared_data / 'AFLW2000'}"],
                         tmp_path / "m.parquet", progress=False).out
    posed = tmp_path / "posed.parquet"
    assert main(["relabel-pose", str(src), "-o", str(posed)]) == 0
    df = lu.read_manifest(posed)
    rep = balance_report(df)
    assert rep["faces"] == 1982
    a = rep["sources"]["aflw2000"]
    assert a["faces"] == 16 and a["pose_source"] == {"dataset": 16, "fit": 0, "model": 0, "unknown": 0}
    assert sum(a["yaw_bins"].values()) == 16 and a["yaw_bins"]["[60, 75)"] == 2  # yaw 65.6 and 70.9
    assert a["eye_state"]["open"] == 16  # the 6-point EAR of the source points (ear_formula ibug6)
    w = rep["sources"]["wflw"]
    assert w["attributes"]["blur"]["true"] + w["attributes"]["blur"]["false"] == 1966
    assert "| [60, 75) | 2 | " in balance_markdown(rep)  # first column: aflw2000
    out = tmp_path / "report"
    assert main(["report", str(posed), "-o", str(out)]) == 0
    html = (out / "index.html").read_text()
    for name in ("yaw", "pitch", "roll", "ear"):
        img = cv2.imread(str(out / f"{name}.png"))
        assert img is not None and img.shape[1] == 720
        assert f"src='{name}.png'" in html
    assert "Yaw, 15-degree bins" in html and "1982 faces" in html
    assert "<h2>EAR</h2>" in html and "<h2>Yaw</h2>" in html


def test_an_empty_panel_has_no_count_axis():
    """A source with no known value (e.g. EAR of 68-point faces) gets an empty panel, not 'peak 1'."""
    img = draw_histograms({"a": np.array([0.05] * 10), "b": np.array([np.nan])}, (0.0, 1.0), 0.1, "t", "x")
    ph, top = 170, 34
    assert (img[top + 14:top + 32, 4:40] < 200).any()  # panel a: its peak count is written at the left
    assert (img[top + ph + 14:top + ph + 32, 4:40] == 255).all()  # panel b: nothing written there
