"""One colour scheme: groups and axes declared once, stable source colours, a legend drawn in the image."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.report import colors, html, render


def test_the_scheme_is_declared_once():
    assert render.GROUP_COLOURS is colors.GROUP_COLOURS
    assert render.AXIS_COLOURS is colors.AXIS_COLOURS
    assert html.PALETTE is colors.PALETTE
    lay = get_layout("wflw98")
    pc = colors.point_colours("wflw98")
    assert pc.shape == (98, 3) and tuple(pc[lay.index("pupil_l")]) == colors.GROUP_COLOURS["pupil"]


def test_source_colours_do_not_depend_on_what_else_is_in_the_report():
    assert colors.source_colour("wflw") == colors.SOURCE_COLOURS["wflw"]
    assert len(set(colors.SOURCE_COLOURS.values())) == len(colors.SOURCE_COLOURS)  # known kinds all differ
    # an unknown label gets a colour from its name alone, the same in another process (no salted hash())
    code = "from landmark_unify.report.colors import source_colour as c; print(c('my_closed_eyes'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == str(colors.source_colour("my_closed_eyes"))
    assert colors.source_colour("my_closed_eyes") in colors.PALETTE
    # the histogram panel of wflw has wflw's colour, alone or after other sources
    wflw = colors.source_colour("wflw")
    for series in ({"wflw": np.zeros(5)}, {"aflw2000": np.zeros(5), "lapa": np.zeros(5), "wflw": np.zeros(5)}):
        img = html.draw_histograms(series, (-10.0, 10.0), 5.0, "t", "x")
        assert np.all(img == wflw, axis=-1).any()
    img = html.draw_histograms({"lapa": np.zeros(5)}, (-10.0, 10.0), 5.0, "t", "x")
    assert not np.all(img == wflw, axis=-1).any()


def test_the_legend_names_every_colour_and_wraps():
    rows = [("landmarks:", colors.group_legend_items()), ("pose axes:", colors.axis_legend_items()),
            "a note long enough to wrap onto more than one line of a narrow band " * 2]
    wide = colors.legend(900, rows)
    narrow = colors.legend(200, rows)
    assert wide.shape[1] == 900 and narrow.shape[1] == 200 and narrow.shape[0] > wide.shape[0]
    for c in [colors.GROUP_COLOURS[g] for g in get_layout("wflw98").present_groups] + list(colors.AXIS_COLOURS):
        assert np.all(wide == c, axis=-1).any(), c
    img = np.zeros((50, 300), np.uint8)
    out = colors.with_legend(img, rows)
    assert out.shape[1:] == (300, 3) and out.shape[0] > 50 and not out[:50].any()


def test_axis_colours_are_not_group_colours():
    """The pose axes read as axes: far from every landmark group's colour (red lips, green nose) and from
    each other."""
    groups = np.array(list(colors.GROUP_COLOURS.values()), np.float64)
    axes = np.array(colors.AXIS_COLOURS, np.float64)
    assert np.linalg.norm(axes[:, None] - groups[None], axis=-1).min() > 100
    pairs = [np.linalg.norm(axes[i] - axes[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(pairs) > 100


def test_histogram_labels_say_what_they_count():
    assert html.QUANTITIES["ear"][4] == "eyes" and {html.QUANTITIES[k][4] for k in ("yaw", "pitch", "roll")} == {"faces"}
    assert html.panel_label("wflw", 3932, 178, "eyes") == "wflw  (3932 eyes, peak 178)"
    assert html.panel_label("300wlp", 1, 1) == "300wlp  (1 face, peak 1)"
    assert html.panel_label("lapa", 0, 1, "eyes") == "lapa  (no known value)"
    # the threshold marker is a colour no source takes
    assert html.MARKER_COLOUR not in colors.PALETTE and html.MARKER_COLOUR not in colors.SOURCE_COLOURS.values()


def test_pose_axes_have_a_halo():
    img = np.zeros((40, 40, 3), np.uint8)
    colors.draw_axis(img, (5, 20), (35, 20), colors.AXIS_COLOURS[0])
    assert np.all(img == colors.AXIS_COLOURS[0], axis=-1).any()
    assert (img.sum(-1) > 600).any()  # the light halo around the dark arrow
