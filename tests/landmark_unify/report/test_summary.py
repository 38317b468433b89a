"""Summaries a person can read, on the real samples: skipped records grouped by reason with a few examples
(the sidecar keeps them all), and inspect's distributions (eye state, attributes, pose and yaw, weights,
coverage); progress bars count faces with a rate."""
from __future__ import annotations

import json
import re

import pytest

from landmark_unify.cli import main
from landmark_unify.report.summary import SKIPPED_EXAMPLES


def test_skipped_records_are_grouped_not_flooded(shared_data, tmp_path, capsys):
    out = tmp_path / "w.parquet"
    assert main(["build-manifest", "-o", str(out), "--source", f"wflw={shared_data / 'WFLW'}", "--check-images",
                 "--on-error", "skip", "-q"]) == 0
    built = capsys.readouterr().out
    side = out.with_name("w.skipped.jsonl")
    records = [json.loads(x) for x in side.read_text().splitlines()]
    assert len(records) == 1663  # the shared WFLW sample has images for 303 of its 1966 faces
    assert len(built.splitlines()) < 40
    assert f"skipped: 1663 records, by reason; every record is listed in {side}" in built
    assert "  1663 x wflw: image: image file not found\n" in built
    assert built.count("e.g. ") == SKIPPED_EXAMPLES and "... and 1660 more" in built
    assert main(["inspect", str(out)]) == 0
    inspected = capsys.readouterr().out
    assert inspected.splitlines()[1:] == built.splitlines()[1:]


@pytest.fixture(scope="module")
def mixed(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("summary") / "m.parquet"
    d = shared_data
    assert main(["build-manifest", "-o", str(out), "-q", "--source", f"wflw={d / 'WFLW'}",
                 "--source", f"aflw2000={d / 'AFLW2000'}", "--source", f"ibug={d / '300W'}",
                 "--weight", "ibug=2.5"]) == 0
    return out


def test_inspect_shows_the_distributions(mixed, capsys):
    capsys.readouterr()
    assert main(["inspect", str(mixed)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()

    def row(title, source):
        start = next(i for i, ln in enumerate(lines) if ln.startswith(title))
        return next(ln for ln in lines[start + 1:] if ln.split()[:1] == [source]).split()

    assert "ibug" in text and "weight 2.5" in text
    # eye state and EAR formula per source: WFLW's 83 faces with both eyes closed, 54 with one
    assert row("eye state", "wflw") == ["wflw", "1829", "54", "83", "0", "wflw8", "1966"]
    assert row("eye state", "aflw2000") == ["aflw2000", "16", "0", "0", "0", "ibug6", "16"]
    # WFLW attribute flags (flagged / known), none known for the 68-point sources
    assert row("WFLW attributes", "wflw")[1] == "326/1966"
    # pose provenance and yaw bins: AFLW2000-3D's 16 dataset poses, yaw 65.6 and 70.9 beyond 60
    header = row("pose (source", "source")
    aflw = dict(zip(header, row("pose (source", "aflw2000")))
    assert aflw["dataset"] == "16" and aflw[">=60"] == "2" and aflw["-15..15"] == "8"
    assert dict(zip(header, row("pose (source", "wflw")))["none"] == "1966"
    assert row("valid-point coverage", "wflw")[1:] == ["100.0%"] * 6


def test_progress_counts_faces_with_a_rate(shared_data, tmp_path, capsys):
    """Off a terminal (pytest captures stderr) the build's progress is one closing line: the count is
    what the build decided, the rate's value depends on speed and is not asserted."""
    from landmark_unify.ops.build import build_manifest

    build_manifest([f"wflw={shared_data / 'WFLW'}"], tmp_path / "p.parquet", progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("p.parquet: ")]
    assert len(lines) == 1
    assert re.fullmatch(r"p\.parquet: 1966 faces in \d+\.\d s \(\S+ faces/s\)", lines[0])


def test_progress_counts_what_it_is_told(monkeypatch):
    """The bar's count and its closing line; on a terminal the same count drives a tqdm bar."""
    import io

    from landmark_unify.progress import Progress, progress

    out = io.StringIO()
    with Progress(total=5, desc="cache", unit="faces", stream=out) as bar:
        bar.update(2)
        bar.update(3)
        bar.set_postfix_str("1 unreadable")
    assert bar.n == 5
    assert re.fullmatch(r"cache: 5 faces in \d+\.\d s \(\S+ faces/s\), 1 unreadable\n", out.getvalue())
    out = io.StringIO()
    with Progress(total=5, desc="cache", unit="faces", stream=out) as bar:
        bar.update(4)
    assert out.getvalue().startswith("cache: 4/5 faces in ")  # stopped short: the total is shown
    out = io.StringIO()
    assert list(progress(range(3), desc="x", unit="images", stream=out, enabled=False)) == [0, 1, 2]
    assert out.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with Progress(total=3, desc="t", unit="faces", stream=tty) as bar:
        bar.update(3)
    assert bar.n == 3 and bar._bar is not None and bar._bar.n == 3
