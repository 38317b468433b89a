"""The fault corpus: every command of ``landmark_unify`` over bad inputs, in process.

Each case ends in exit 0 with a correct output (a manifest that ``validate`` accepts, the bad records
counted), or exit 1 with a message naming the place (file, line/key/row, field), never a traceback, and
never a partial output or a leftover beside it. ``CORPUS_SIZE`` below counts the cases (report it).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from landmark_unify.cli import main
from landmark_unify.manifest import read_manifest, validate

_spec = importlib.util.spec_from_file_location("fault_corpus", Path(__file__).with_name("fault_corpus.py"))
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)


def run(argv, capsys):
    """``main(argv)`` in process: (exit code, stdout, stderr); a SystemExit (argparse) counts as its code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def no_output(out: Path) -> None:
    assert not out.exists(), f"{out} was written by a failed command"
    assert not fc.hidden_leftovers(out.parent, out.name), fc.hidden_leftovers(out.parent, out.name)
    stem = out.name.removesuffix(".parquet")
    for side in (f"{stem}.skipped.jsonl", f"{stem}.duplicates.jsonl"):
        assert not (out.parent / side).exists(), f"a failed command left {side}"


# --- build-manifest over bad annotation files ---------------------------------------------------------------

BIG = "1e40"  # finite in float64, infinite in float32
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() is True, int() refuses it
ARABIC_INDIC_12 = "\u0661\u0662 3"  # float() reads 12 (and x=12, y=3): digits of another script
FULLWIDTH_12 = "\uff11\uff12"  # float() reads 12
NUL_NAME = "a\x00b.jpg"

#: id -> (make(root) -> --source spec, text the error names, fatal under --on-error skip too)
SOURCES = {
    "wflw coordinate 1e40": (lambda r: f"wflw={fc.wflw_source(r, fields={2: {10: BIG}})}", ["line 3", "'x5'", "float32"], False),
    "wflw coordinate nan": (lambda r: f"wflw={fc.wflw_source(r, fields={1: {11: 'nan'}})}", ["line 2", "'y5'"], False),
    "wflw box inverted": (lambda r: f"wflw={fc.wflw_source(r, fields={0: {198: '10'}})}", ["line 1", "x_max_rect", "inverted"], False),
    "wflw box zero width": (lambda r: f"wflw={fc.wflw_source(r, fields={0: {198: '60'}})}", ["line 1", "zero area"], False),
    "wflw flag 2": (lambda r: f"wflw={fc.wflw_source(r, fields={3: {200: '2'}})}", ["line 4", "attr_pose"], False),
    "wflw image path leaves root": (lambda r: f"wflw={fc.wflw_source(r, fields={1: {206: '../../../etc/x.jpg'}})}",
                                    ["line 2", "'image_path'", "leaves the source root"], False),
    "coco keypoint 1e40": (lambda r: f"coco={fc.coco_source(r, anns={1: fc.coco_annotation(1, keypoints=[1e40, 1.0, 2] * 98)})}",
                           ["key '2'", "keypoints[0].x", "float32"], False),
    "coco box negative width": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, bbox=[10, 10, -5, 20])})}",
                                ["key '1'", "'bbox'", "w=-5"], False),
    "coco box zero height": (lambda r: f"coco={fc.coco_source(r, anns={2: fc.coco_annotation(2, bbox=[10, 10, 5, 0])})}",
                             ["key '3'", "'bbox'"], False),
    "coco box not a list": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, bbox='abc')})}",
                            ["key '1'", "'bbox'"], False),
    "coco box infinite": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, bbox=[float('inf'), 0, 5, 5])})}",
                          ["key '1'", "'bbox'"], False),
    "coco box beyond float32": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, bbox=[1e39, 0, 5, 5])})}",
                                ["key '1'", "'bbox'", "float32"], False),
    "coco width not a number": (lambda r: f"coco={fc.coco_source(r, images={1: {'id': 2, 'file_name': 'a.jpg', 'width': 'abc', 'height': 10}})}",
                                ["key '2'", "images.width"], False),
    "coco width negative": (lambda r: f"coco={fc.coco_source(r, images={1: {'id': 2, 'file_name': 'a.jpg', 'width': -4, 'height': 10}})}",
                            ["key '2'", "images.width"], False),
    "coco file_name leaves root": (lambda r: f"coco={fc.coco_source(r, images={0: {'id': 1, 'file_name': '../../../etc/passwd'}})}",
                                   ["key '1'", "'image_path'", "leaves the source root"], False),
    "coco absolute file_name": (lambda r: f"coco={fc.coco_source(r, images={0: {'id': 1, 'file_name': '/etc/passwd'}})}",
                                ["key '1'", "'image_path'"], False),
    "coco keypoints not triples": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, keypoints=[1, 2, 2, 3])})}",
                                   ["key '1'", "'keypoints'"], False),
    "coco keypoint text": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, keypoints=['a', 1, 2] * 98)})}",
                           ["key '1'", "keypoints[0].x"], False),
    "coco unknown image_id": (lambda r: f"coco={fc.coco_source(r, anns={3: fc.coco_annotation(3, image_id=99)})}",
                              ["key '4'", "'image_id'"], False),
    "coco image_id is a list": (lambda r: f"coco={fc.coco_source(r, anns={1: fc.coco_annotation(1, image_id=[2])})}",
                                ["key '2'", "'image_id'"], False),
    "coco image id is a list": (lambda r: f"coco={fc.coco_source(r, images={1: {'id': [2], 'file_name': 'a.jpg'}})}",
                                ["key '2'", "'image_id'"], False),
    "coco keypoint 400-digit integer": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, keypoints=[10**400, 1, 2] * 98)})}",
                                        ["key '1'", "keypoints[0].x"], False),
    "coco not json": (lambda r: f"coco={fc.coco_source(r, raw='{not json')}", ["test.json", "JSON"], False),
    "ibug point 1e40": (lambda r: f"ibug={fc.ibug_source(r, lines={1: {5: '1e40 3'}})}", ["face1.pts", "line 6", "'x2'", "float32"], False),
    "ibug point nan": (lambda r: f"ibug={fc.ibug_source(r, lines={0: {4: 'nan 3'}})}", ["face0.pts", "line 5", "'x1'"], False),
    "ibug truncated": (lambda r: f"ibug={fc.ibug_source(r, lines={2: {71: ''}})}", ["face2.pts", "closing"], False),
    "lapa point 1e40": (lambda r: f"lapa={fc.lapa_source(r, lines={0: {3: '5 -1e40'}})}", ["face0.txt", "line 4", "'y2'"], False),
    "lapa count not ascii": (lambda r: "lapa=" + str(fc.lapa_source(r, lines={1: {0: SUPERSCRIPT_TWO}})),
                             ["face1.txt", "line 1", "'count'"], False),
    "lapa wrong count": (lambda r: f"lapa={fc.lapa_source(r, lines={1: {0: '98'}})}", ["face1.txt", "line 1", "'count'"], False),
    "hrnet scale 0": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={1: fc.hrnet_row(1, scale='0')})}", ["line 3", "'scale'"], False),
    "hrnet scale -2": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, scale='-2')})}", ["line 2", "'scale'"], False),
    "hrnet scale 1e-45": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, scale='1e-45')})}", ["line 2", "'scale'"], False),
    "hrnet scale 1e40": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={2: fc.hrnet_row(2, scale='1e40')})}", ["line 4", "'scale'"], False),
    "hrnet centre 1e40": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={2: fc.hrnet_row(2, center_w='1e40')})}", ["line 4", "'center_w'"], False),
    "hrnet point inf": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={3: fc.hrnet_row(3, y7='inf')})}", ["line 5", "'y7'"], False),
    "hrnet image leaves root": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, image_name='../../x.jpg')})}",
                                ["line 2", "'image_path'"], False),
    "hrnet absolute image": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, image_name='/etc/x.jpg')})}",
                             ["line 2", "'image_path'"], False),
    "hrnet short line": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={1: 'a.jpg,1,2'})}", ["line 3", "'center_h'"], False),
    "300wlp point 1e40": (lambda r: f"300wlp={fc.mat_source(r, pt2d=np.full((2, 68), 1e40))}", ["IBUG_face0.mat", "pt2d", "float32"], False),
    "300wlp pose nan": (lambda r: f"300wlp={fc.mat_source(r, pose=np.full((1, 7), np.nan))}", ["IBUG_face0.mat", "Pose_Para"], False),
    "300wlp pose wrong shape": (lambda r: f"300wlp={fc.mat_source(r, pose=np.zeros((1, 3)))}", ["IBUG_face0.mat", "Pose_Para"], False),
    "300wlp not a mat file": (lambda r: f"300wlp={fc.mat_source(r, raw=b'garbage')}", ["IBUG_face0.mat", "'file'"], False),
    # numbers parsed strictly: what float()/int() take beyond decimal ASCII is an error, never a value
    "ibug point 1_000": (lambda r: f"ibug={fc.ibug_source(r, lines={0: {4: '1_000 3'}})}", ["face0.pts", "line 5", "'x1'"], False),
    "ibug point arabic-indic digits": (lambda r: f"ibug={fc.ibug_source(r, lines={0: {4: ARABIC_INDIC_12}})}",
                                       ["face0.pts", "line 5", "'x1'"], False),
    "ibug n_points 6_8": (lambda r: f"ibug={fc.ibug_source(r, lines={1: {1: 'n_points: 6_8'}})}", ["face1.pts", "line 2", "'n_points'"], False),
    "lapa count 1_06": (lambda r: f"lapa={fc.lapa_source(r, lines={0: {0: '1_06'}})}", ["face0.txt", "line 1", "'count'"], False),
    "wflw coordinate 1_000": (lambda r: f"wflw={fc.wflw_source(r, fields={1: {4: '1_000'}})}", ["line 2", "'x2'"], False),
    "wflw coordinate fullwidth digits": (lambda r: f"wflw={fc.wflw_source(r, fields={2: {5: FULLWIDTH_12}})}", ["line 3", "'y2'"], False),
    "hrnet point 1_0": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, x3='1_0')})}", ["line 2", "'x3'"], False),
    "coco keypoint as text": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, keypoints=['12', 1, 2] * 98)})}",
                              ["key '1'", "keypoints[0].x"], False),
    "coco keypoint true": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, keypoints=[True, 1, 2] * 98)})}",
                           ["key '1'", "keypoints[0].x"], False),
    "coco box as text": (lambda r: f"coco={fc.coco_source(r, anns={0: fc.coco_annotation(0, bbox=['10', '10', '5', '5'])})}",
                         ["key '1'", "'bbox'"], False),
    "coco width as text": (lambda r: f"coco={fc.coco_source(r, images={1: {'id': 2, 'file_name': 'a.jpg', 'width': '400', 'height': 400}})}",
                           ["key '2'", "images.width"], False),
    # COCO image list: an id listed twice is ambiguous, a file_name that is no text is no name
    "coco image id listed twice": (lambda r: f"coco={fc.coco_source(r, images={1: {'id': 1, 'file_name': 'other.jpg'}})}",
                                   ["key '1'", "'image_id'", "more than once"], False),
    "coco null file_name": (lambda r: f"coco={fc.coco_source(r, images={2: {'id': 3, 'file_name': None}})}",
                            ["key '3'", "images.file_name"], False),
    "coco file_name a number": (lambda r: f"coco={fc.coco_source(r, images={2: {'id': 3, 'file_name': 7}})}",
                                ["key '3'", "images.file_name"], False),
    # a NUL in a name: no file system takes it
    "coco file_name with NUL": (lambda r: f"coco={fc.coco_source(r, images={0: {'id': 1, 'file_name': NUL_NAME}})}",
                                ["key '1'", "'image_path'", "NUL"], False),
    "hrnet image name with NUL": (lambda r: f"hrnet-csv={fc.hrnet_source(r, rows={0: fc.hrnet_row(0, image_name=NUL_NAME)})}",
                                  ["line 2", "'image_path'", "NUL"], False),
    # implausible values stop the read: never wrapped into a plausible one
    "300wlp yaw 1e30 radians": (lambda r: f"300wlp={fc.mat_source(r, pose=np.array([[0.1, 1e30, 0.0, 0, 0, 0, 1]]))}",
                                ["IBUG_face0.mat", "Pose_Para[0, 1]", "turn and a half"], False),
    "300wlp roll 10 radians": (lambda r: f"300wlp={fc.mat_source(r, pose=np.array([[0.1, 0.2, 10.0, 0, 0, 0, 1]]))}",
                               ["IBUG_face0.mat", "Pose_Para[0, 2]"], False),
    "root missing": (lambda r: f"ibug={r / 'nowhere'}", ["nowhere", "root folder not found"], True),
    "no annotation files": (lambda r: (r.mkdir(), f"lapa={r}")[1], ["no LaPa landmark files"], True),
    "unknown kind": (lambda r: f"nope={r}", ["unknown reader kind"], True),
    "bad reader option": (lambda r: f"coco[offset=abc]={fc.coco_source(r)}", ["offset"], True),
}


def _broken_link(r: Path) -> str:
    fc.ibug_source(r)
    (r / "gone.pts").symlink_to(r / "missing-target.pts")
    return f"ibug={r}"


SOURCES["ibug broken link"] = (_broken_link, ["gone.pts", "broken link"], True)


# --- file system oddities: named errors, never a traceback or a silent skip --------------------------------------

def _link_loop(r: Path) -> str:
    fc.ibug_source(r / "a")
    (r / "a" / "back").symlink_to("..")  # a/back -> the root: a/back/a/back/... forever
    return f"ibug={r}"


def _root_loop(r: Path) -> str:
    r.mkdir()
    (r / "x").symlink_to(r / "y")
    (r / "y").symlink_to(r / "x")
    return f"ibug={r / 'x'}"


def _two_ways_in(r: Path) -> str:
    fc.ibug_source(r / "a")
    (r / "b").symlink_to(r / "a")  # the same faces under a/ and b/: would be read twice, as other faces
    return f"ibug={r}"


def _name_not_utf8(r: Path) -> str:
    fc.ibug_source(r)
    import os

    with open(os.path.join(os.fsencode(r), b"face\xff.pts"), "wb") as f:
        f.write((r / "face0.pts").read_bytes())
    return f"ibug={r}"


SOURCES.update({
    "folder link loop under the root": (_link_loop, ["back", "'root'", "loop"], True),
    "root is a link loop": (_root_loop, ["'root'", "loop"], True),
    "two links into one folder": (_two_ways_in, ["'root'", "same folder"], True),
    "file name not UTF-8": (_name_not_utf8, ["face\\xff.pts", "not UTF-8"], True),
})


def test_a_linked_folder_under_the_root_is_followed(tmp_path, capsys):
    other = fc.ibug_source(tmp_path / "elsewhere", n=2)
    src = fc.ibug_source(tmp_path / "src", n=1)
    (src / "more").symlink_to(other)
    out = tmp_path / "m.parquet"
    code, _, err = run(["build-manifest", "--source", f"ibug={src}", "-o", out, "-q"], capsys)
    assert code == 0, err
    df = read_manifest(out)
    assert sorted(df["origin_file"]) == ["face0.pts", "more/face0.pts", "more/face1.pts"]
    assert validate(out) == []


@pytest.mark.parametrize("case", sorted(SOURCES))
def test_build_manifest_over_bad_annotations(case, tmp_path, capsys):
    make, where, fatal = SOURCES[case]
    spec = make(tmp_path / "src")
    out = tmp_path / "out" / "m.parquet"
    code, _, err = run(["build-manifest", "--source", spec, "-o", out, "-q"], capsys)
    assert code == 1, err
    for w in where:
        assert w in err, f"{w!r} not in: {err}"
    no_output(out)
    # skip: the rest is written, valid, and the bad record counted (or, for a fatal case, the same error)
    code, stdout, err = run(["build-manifest", "--source", spec, "-o", out, "-q", "--on-error", "skip"], capsys)
    if fatal:
        assert code == 1 and where[0] in err
        no_output(out)
        return
    assert code == 0, err
    assert validate(out) == []
    skipped = out.parent / "m.skipped.jsonl"
    assert skipped.exists() and skipped.read_text().count("\n") >= 1
    assert "skipped" in stdout
    assert read_manifest(out).attrs["manifest"]["num_skipped"] >= 1


def test_outside_root_allowed_explicitly(tmp_path, capsys):
    src = fc.hrnet_source(tmp_path / "src", rows={0: fc.hrnet_row(0, image_name="../shared/x.jpg")})
    out = tmp_path / "m.parquet"
    code, _, err = run(["build-manifest", "--source", f"hrnet-csv={src}", "-o", out, "-q", "--allow-outside-root"], capsys)
    assert code == 0, err
    assert validate(out) == [] and "../shared/x.jpg" in set(read_manifest(out)["image_path"])


def test_build_over_its_own_annotation_file_needs_overwrite(tmp_path, capsys):
    src = fc.coco_source(tmp_path / "src")
    ann = src / "test.json"
    before = ann.read_bytes()
    code, _, err = run(["build-manifest", "--source", f"coco={src}", "-o", ann, "-q"], capsys)
    assert code == 1 and "source annotation file" in err and "--overwrite" in err
    assert ann.read_bytes() == before


@pytest.mark.timeout(120)  # a hang guard, not a timing
def test_bad_scheduler_address_fails_fast(tmp_path, capsys):

    src = fc.coco_source(tmp_path / "src")
    for address, says in (("not a url", "not of the form"), ("http://x:1", "unknown protocol"), ("tcp://host", "no port"),
                          ("tcp://h:99999", "port")):
        code, _, err = run(["build-manifest", "--source", f"coco={src}", "-o", tmp_path / "ds", "-q", "--engine", "dask",
                            "--scheduler", address], capsys)
        assert code == 1 and "bad scheduler address" in err and says in err, err
        assert not (tmp_path / "ds").exists()


@pytest.mark.timeout(120)  # a hang guard, not a timing
def test_unreachable_scheduler_is_reported_within_seconds(tmp_path, capsys):

    pytest.importorskip("distributed")
    src = fc.coco_source(tmp_path / "src")
    code, _, err = run(["build-manifest", "--source", f"coco={src}", "-o", tmp_path / "ds", "-q", "--engine", "dask",
                        "--scheduler", "tcp://127.0.0.1:9"], capsys)
    assert code == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err, err
    assert not (tmp_path / "ds").exists() and not fc.hidden_leftovers(tmp_path, "ds")


def test_an_unlistable_folder_is_an_error_not_a_silent_skip(tmp_path, capsys, monkeypatch):
    import landmark_unify.readers._base as base

    src = fc.ibug_source(tmp_path / "src")
    (src / "sub").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # as if 'sub' could not be listed (chmod 000 does not stop root)
        for item in real_walk(top, onerror=onerror, **kw):
            yield item
            if onerror is not None and Path(item[0]) == src:
                onerror(PermissionError(13, "Permission denied", str(src / "sub")))

    monkeypatch.setattr(base.os, "walk", walk)
    out = tmp_path / "m.parquet"
    for mode in ("raise", "skip"):
        code, _, err = run(["build-manifest", "--source", f"ibug={src}", "-o", out, "-q", "--on-error", mode], capsys)
        assert code == 1 and str(src / "sub") in err and "cannot list folder" in err, err
        no_output(out)


# --- every command over broken manifests ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    good = fc.good_manifest(folder / "good.parquet")
    return good, fc.broken_manifests(good, folder / "broken")


def _commands(inp: Path, out_dir: Path, good: Path) -> dict[str, tuple[list, Path]]:
    return {
        "inspect": (["inspect", inp], None),
        "merge": (["merge", inp, "-o", out_dir / "merged.parquet", "-q", "--no-image-hash"], out_dir / "merged.parquet"),
        "merge-second": (["merge", good, inp, "-o", out_dir / "merged2.parquet", "-q"],
                         out_dir / "merged2.parquet"),
        "mine-closed-eyes": (["mine-closed-eyes", inp, "-o", out_dir / "mined.parquet", "-q"], out_dir / "mined.parquet"),
        "relabel-pose": (["relabel-pose", inp, "-o", out_dir / "posed.parquet", "-q"], out_dir / "posed.parquet"),
        "relabel-pose-dataset": (["relabel-pose", inp, "-o", out_dir / "posed_ds", "-q"], out_dir / "posed_ds"),
        "report": (["report", inp, "-o", out_dir / "report"], out_dir / "report"),
        "render": (["render", inp, "-o", out_dir / "sheet.png"], out_dir / "sheet.png"),
        "export": (["export", inp, "-o", out_dir / "coco.json"], out_dir / "coco.json"),
    }


COMMANDS = ("inspect", "merge", "merge-second", "mine-closed-eyes", "relabel-pose", "relabel-pose-dataset", "report",
            "render", "export")
BROKEN = ("missing-source", "landmarks-50-points", "landmarks-3-coords", "yaw-as-text", "null-image-path",
          "bbox-3-values", "valid-as-int", "null-weight", "no-metadata", "not-parquet", "missing-file",
          "dataset-without-success", "metadata-a-list", "source-roots-a-list", "source-root-a-number",
          "dataset-no-parts", "dataset-no-order", "dataset-part-escapes", "dataset-order-unknown-part",
          "dataset-order-past-part", "dataset-metadata-a-list", "dataset-rows-text", "dataset-doc-a-list",
          # one gate for every read: newer formats, repeated or resized parts
          "format-newer", "format-not-a-version", "dataset-format-newer", "dataset-version-newer",
          "dataset-part-listed-twice", "dataset-part-copied", "dataset-part-resized", "dataset-part-format-newer")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("broken", BROKEN)
def test_every_command_refuses_a_broken_manifest(corpus, broken, command, tmp_path, capsys):
    good, cases = corpus
    path, expect = cases[broken]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv, out = _commands(path, out_dir, good)[command]
    code, _, err = run(argv, capsys)
    assert code == 1, err
    assert f"{argv[0]}: error:" in err and str(path) in err and expect in err, err
    if out is not None:
        no_output(out)


@pytest.mark.parametrize("broken", BROKEN)
def test_validate_names_the_problem(corpus, broken, capsys):
    _, cases = corpus
    path, _ = cases[broken]
    code, _, err = run(["validate", path], capsys)
    assert code == 1 and "INVALID" in err and str(path) in err


def test_the_corpus_manifest_itself_is_fine_everywhere(corpus, tmp_path, capsys):
    good, _ = corpus
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in COMMANDS:
        argv, out = _commands(good, out_dir, good)[name]
        code, _, err = run(argv, capsys)
        assert code == 0, (name, err)
        if out is not None and str(out).endswith(".parquet") or name == "relabel-pose-dataset":
            assert validate(out) == [], name


@pytest.mark.parametrize("command", ["merge", "mine-closed-eyes", "relabel-pose", "render", "export"])
def test_writing_over_the_input_needs_overwrite(corpus, command, tmp_path, capsys):
    good, _ = corpus
    inp = tmp_path / "in.parquet"
    inp.write_bytes(good.read_bytes())
    before = inp.read_bytes()
    argv = [command, inp, "-o", inp] + (["-q"] if command not in ("render", "export") else [])
    code, _, err = run(argv, capsys)
    assert code == 1 and "--overwrite" in err and str(inp) in err, err
    assert inp.read_bytes() == before
    if command not in ("render", "export"):  # explicitly allowed: done, and still a valid manifest
        code, _, err = run(argv + ["--overwrite"], capsys)
        assert code == 0, err
        assert validate(inp) == []


@pytest.mark.parametrize("command", ["merge", "mine-closed-eyes", "relabel-pose"])
def test_writing_into_an_input_dataset_needs_overwrite(corpus, command, tmp_path, capsys):
    good, _ = corpus
    ds = tmp_path / "ds"
    assert run(["mine-closed-eyes", good, "-o", ds, "-q", "--closed-threshold", "10"], capsys)[0] == 0
    before = fc_snapshot(ds)
    code, _, err = run([command, ds, "-o", ds / "source=coco" / "x.parquet", "-q"], capsys)
    assert code == 1 and "lies inside" in err and "--overwrite" in err, err
    assert fc_snapshot(ds) == before and validate(ds) == []


def fc_snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_merge_leaves_no_sidecar(corpus, tmp_path, capsys):
    good, cases = corpus
    out = tmp_path / "m.parquet"
    # duplicates exist (the same manifest twice), then the run fails on its broken third input
    code, _, err = run(["merge", good, good, cases["null-weight"][0], "-o", out, "-q"], capsys)
    assert code == 1
    no_output(out)
    out.mkdir()  # an output that cannot be written: fails after the duplicates were found
    code, _, err = run(["merge", good, good, "-o", out, "-q"], capsys)
    assert code == 1 and "folder" in err
    assert not (tmp_path / "m.duplicates.jsonl").exists()


def test_a_weight_that_overflows_float32_is_refused(corpus, tmp_path, capsys):
    good, _ = corpus
    code, _, err = run(["merge", good, "-o", tmp_path / "x.parquet", "-q", "--weight", "coco=1e39"], capsys)
    assert code == 2 and "--weight" in err and "coco=1e39" in err, err  # refused by the option's declared range
    heavy = tmp_path / "heavy.parquet"
    assert run(["merge", good, "-o", heavy, "-q", "--weight", "coco=1e30"], capsys)[0] == 0
    out = tmp_path / "m.parquet"
    code, _, err = run(["merge", heavy, "-o", out, "-q", "--weight", "coco=1e30"], capsys)
    assert code == 1 and "'weight'" in err and str(heavy) in err and "row" in err, err
    no_output(out)


def test_dataset_output_with_a_bad_single_file_leaves_nothing(corpus, tmp_path, capsys):
    good, _ = corpus
    code, _, err = run(["mine-closed-eyes", good, "-o", tmp_path / "ds", "-q", "--single-file", "/proc/x.parquet"],
                       capsys)
    assert code == 1
    assert not (tmp_path / "ds").exists() and not fc.hidden_leftovers(tmp_path, "ds")


@pytest.mark.parametrize("where", ["__import__('os').system('true')", "source.__class__", "nope == 1", "yaw == 'x'"])
@pytest.mark.parametrize("command", ["render", "report", "mine-closed-eyes", "export"])
def test_every_filter_refuses_bad_expressions(corpus, command, where, tmp_path, capsys):
    good, _ = corpus
    out = tmp_path / "out.x"
    code, _, err = run([command, good, "-o", out, "--where", where], capsys)
    assert code == 1 and "bad filter" in err
    assert not out.exists()


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(corpus, tmp_path, capsys):
    from landmark_unify.io import owner_tag

    good, _ = corpus
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = owner_tag().split("-")[0]
    left = [tmp_path / f".m.parquet.{tag}-{dead.pid}-abcdefgh.tmp", tmp_path / f".ds.staging-{tag}-{dead.pid}-0123abcd",
            tmp_path / f".ds.old-{tag}-{dead.pid}-0123abce", tmp_path / f".ds.aborted-{tag}-{dead.pid}-0123abcf"]
    left[0].write_text("partial")
    for d in left[1:]:
        d.mkdir()
        (d / "part-00000.parquet").write_text("partial")
    alive = tmp_path / f".m.parquet.{tag}-{os.getpid()}-zzzzzzzz.tmp"  # this process: still running
    alive.write_text("in use")
    code, _, err = run(["mine-closed-eyes", good, "-o", tmp_path / "m.parquet", "-q"], capsys)
    assert code == 0 and "removed leftover" in err and str(dead.pid) in err
    code, _, err = run(["mine-closed-eyes", good, "-o", tmp_path / "ds", "-q"], capsys)
    assert code == 0 and err.count("removed leftover") == 3
    assert not any(p.exists() for p in left) and alive.exists()


def test_a_run_killed_between_the_renames_of_a_publish_is_repaired(corpus, tmp_path, capsys):
    """Where the platform cannot swap two folders atomically, publish renames twice; killed in between,
    the old dataset is only at .NAME.old-OWNER: the next run puts it back before anything else."""
    import subprocess
    import sys

    from landmark_unify.io import owner_tag, restore_replaced

    good, _ = corpus
    assert run(["mine-closed-eyes", good, "-o", tmp_path / "ds", "-q"], capsys)[0] == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = tmp_path / f".ds.old-{owner_tag().split('-')[0]}-{dead.pid}-0123abcd"
    (tmp_path / "ds").rename(old)
    assert restore_replaced(tmp_path / "ds") == tmp_path / "ds"
    assert "restored" in capsys.readouterr().err
    assert validate(tmp_path / "ds") == [] and not old.exists()
    (tmp_path / "ds").rename(old)  # the next run on it: the old dataset is back first, then replaced
    code, _, err = run(["mine-closed-eyes", good, "-o", tmp_path / "ds", "-q"], capsys)
    assert code == 0 and "restored" in err and not fc.hidden_leftovers(tmp_path, "ds")


# --- outputs: one door (landmark_unify.outputs) ----------------------------------------------------------------
#
# Every case: exit 1 with a message (or 0 with the right result), no traceback, each file of the user's
# byte-identical (hashed before and after), no partial output and no temporary entry left.

def _earlier(argv, capsys):
    code, _, err = run(argv, capsys)
    assert code == 0, err


def _lu_skipped_sidecar_is_a_folder(t, good, capsys):
    src = fc.wflw_source(t / "src", fields={1: {11: "nan"}})
    argv = ["build-manifest", "--source", f"wflw={src}", "-o", t / "m.parquet", "-q", "--on-error", "skip"]
    _earlier(argv, capsys)  # an earlier manifest and sidecar
    (t / "m.skipped.jsonl").unlink()
    (t / "m.skipped.jsonl").mkdir()  # the sidecar cannot be written: after the manifest was
    return argv, "m.skipped.jsonl"


def _lu_duplicates_sidecar_is_a_folder(t, good, capsys):
    _earlier(["merge", good, "-o", t / "merged.parquet", "-q"], capsys)
    (t / "merged.duplicates.jsonl").mkdir()
    return ["merge", good, good, "-o", t / "merged.parquet", "-q"], "merged.duplicates.jsonl"


def _lu_relabel_after_build_fails(t, good, capsys):
    src = fc.coco_source(t / "src")
    argv = ["build-manifest", "--source", f"coco={src}", "-o", t / "m.parquet", "-q"]
    _earlier(argv, capsys)
    np.savez(t / "shape.npz", foo=np.zeros(3))  # a face model file without the face
    return argv + ["--relabel-pose", "--mean-shape", t / "shape.npz"], "nothing was written"


def _lu_report_into_user_folder(t, good, capsys):
    (t / "rep").mkdir()
    (t / "rep" / "notes.md").write_text("mine")
    return ["report", good, "-o", t / "rep", "--overwrite"], "did not write"


def _lu_report_over_earlier_report(t, good, capsys):
    _earlier(["report", good, "-o", t / "rep"], capsys)
    return ["report", good, "-o", t / "rep"], "--overwrite"


def _lu_report_into_folder_of_its_input(t, good, capsys):
    (t / "rep").mkdir()
    m = t / "rep" / "m.parquet"
    m.write_bytes(good.read_bytes())
    return ["report", m, "-o", t / "rep", "--overwrite"], "replacing the folder would delete it"


def _lu_dataset_over_user_folder(t, good, capsys):
    (t / "ds").mkdir()
    (t / "ds" / "notes.txt").write_text("mine")
    return ["mine-closed-eyes", good, "-o", t / "ds", "-q"], "not a dataset"


def _lu_render_over_folder(t, good, capsys):
    (t / "sheet.png").mkdir()
    (t / "sheet.png" / "a.png").write_bytes(b"x")
    return ["render", good, "-o", t / "sheet.png"], "folder"


def _lu_export_over_folder(t, good, capsys):
    (t / "coco.json").mkdir()
    return ["export", good, "-o", t / "coco.json"], "folder"


def _lu_build_while_another_writes(t, good, capsys):
    import landmark_unify.outputs as lo

    src = fc.coco_source(t / "src")
    lock = lo._Lock(t / "m.parquet")
    lock.acquire()
    _lu_build_while_another_writes.held = lock
    return ["build-manifest", "--source", f"coco={src}", "-o", t / "m.parquet", "-q"], "being written by another run"


LU_OUTPUT_CASES = {f.__name__.removeprefix("_lu_"): f for f in (
    _lu_skipped_sidecar_is_a_folder, _lu_duplicates_sidecar_is_a_folder, _lu_relabel_after_build_fails,
    _lu_report_into_user_folder, _lu_report_over_earlier_report, _lu_report_into_folder_of_its_input,
    _lu_dataset_over_user_folder, _lu_render_over_folder, _lu_export_over_folder, _lu_build_while_another_writes)}


@pytest.mark.parametrize("case", sorted(LU_OUTPUT_CASES))
def test_outputs_that_would_harm_the_users_files_are_refused(corpus, case, tmp_path, capsys):
    good, _ = corpus
    argv, says = LU_OUTPUT_CASES[case](tmp_path, good, capsys)
    fc.assert_refused_untouched(lambda: run(argv, capsys), tmp_path, says, LU_OUTPUT_CASES[case])


def test_a_write_outside_the_declared_outputs_is_refused(tmp_path):
    from landmark_unify.io import write_text_atomic
    from landmark_unify.outputs import OutputError, writing

    with pytest.raises(OutputError, match="not inside a declared output"):
        with writing("test") as tx:
            folder = tx.folder(tmp_path / "out")
            write_text_atomic("inside\n", folder.path("a.txt"))
            write_text_atomic("outside\n", tmp_path / "elsewhere.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="leads outside"):
        with writing("test") as tx:
            tx.folder(tmp_path / "out").path("..", "..", "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_report_over_its_earlier_report_with_overwrite(corpus, tmp_path, capsys):
    good, _ = corpus
    _earlier(["report", good, "-o", tmp_path / "rep"], capsys)
    first = fc.snapshot(tmp_path / "rep")
    code, out, err = run(["report", good, "-o", tmp_path / "rep", "--overwrite"], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "rep" / "index.html"), err
    again = fc.snapshot(tmp_path / "rep")
    marker = ".landmark_unify-output.json"  # names the command line, which gained --overwrite
    assert {k: v for k, v in again.items() if k != marker} == {k: v for k, v in first.items() if k != marker}
    assert marker in again and fc.temporaries(tmp_path) == []


def _lu_interrupted(good: Path, t: Path) -> dict[str, list]:
    src = fc.coco_source(t / "src")
    return {
        "build-manifest": ["build-manifest", "--source", f"coco={src}", "-o", t / "m.parquet", "-q", "--relabel-pose"],
        "build-manifest-dataset": ["build-manifest", "--source", f"coco={src}", "-o", t / "ds", "-q",
                                   "--single-file", t / "single.parquet", "--relabel-pose"],
        "merge": ["merge", good, good, "-o", t / "merged.parquet", "-q"],
        "mine-closed-eyes": ["mine-closed-eyes", good, "-o", t / "mined", "-q", "--closed-threshold", "10"],
        "relabel-pose": ["relabel-pose", good, "-o", t / "posed.parquet", "-q"],
        "render": ["render", good, "-o", t / "sheet.png"],
        "report": ["report", good, "-o", t / "rep", "--overwrite"],
        "export": ["export", good, "-o", t / "coco.json"],
    }


LU_INTERRUPTED = ("build-manifest", "build-manifest-dataset", "merge", "mine-closed-eyes", "relabel-pose", "render",
                  "report", "export")


@pytest.mark.parametrize("at", [1, 2, -1])
@pytest.mark.parametrize("command", LU_INTERRUPTED)
def test_ctrl_c_rolls_back_every_output(corpus, command, at, tmp_path, capsys, monkeypatch):
    """Ctrl-C at the ``at``-th file a command publishes (-1: its last, after a dataset was renamed into
    place where it writes one and then relabels it), over the outputs of an earlier run: exit 130,
    ``interrupted; nothing written``, no traceback, the earlier outputs byte-identical."""
    import landmark_unify.io as lio

    good, _ = corpus
    argv = _lu_interrupted(good, tmp_path)[command]
    real, calls = lio.publish, []
    monkeypatch.setattr(lio, "publish", lambda tmp, path: (calls.append(path), real(tmp, path))[1])
    _earlier(argv, capsys)
    at = len(calls) if at == -1 else at
    monkeypatch.setattr(lio, "publish", real)
    calls = fc.interrupt_publish(monkeypatch, at)
    before = fc.snapshot(tmp_path)
    code, _, err = run(argv, capsys)
    if code == 0:  # it published fewer files than that: done, the same result
        assert len(calls) < at and fc.snapshot(tmp_path) == before, err
        return
    assert code == 130 and err.strip().endswith("interrupted; nothing written"), err
    assert fc.snapshot(tmp_path) == before and fc.temporaries(tmp_path) == []


#: How many bad-input cases this corpus holds (runs of a command on one bad input or situation).
CORPUS_SIZE = (2 * len(SOURCES)                # build-manifest over bad annotations, --on-error raise and skip
               + 1 + 1 + 4 + 1 + 2           # outside root, own annotation file, scheduler addresses, unreachable, unlistable
               + 1                            # a linked folder under the root is followed
               + 7                            # a NUL in an image path: validate (2), 3 writers, render, image_paths
               + 4                            # damaged --mean-shape files
               + len(COMMANDS) * len(BROKEN)  # every command over every broken manifest
               + len(BROKEN)                  # validate over them
               + 5 + 3 + 2 + 2 + 1           # overwrite guards (over, inside), failed merge sidecar, float32 weight, single file
               + 4 * 4                        # filter escapes and misfits on the four filtering commands
               + 2 + 1)                       # leftovers of killed runs, interrupted publish
#: Output cases (refused harms, a write outside -o, an earlier report replaced) and Ctrl-C cases.
OUTPUT_CORPUS_SIZE = len(LU_OUTPUT_CASES) + 2 + 1
INTERRUPT_CORPUS_SIZE = 3 * len(LU_INTERRUPTED)


# --- a NUL in an image path: invalid, never opened, never written again --------------------------------------

def test_a_nul_in_an_image_path(corpus, tmp_path, capsys):
    good, _ = corpus
    bad = fc.with_image_path(good, tmp_path / "nul.parquet", 1, "face1\x00.jpg")
    problems = validate(bad)
    assert any("NUL" in p and "'image_path'" in p and "first row 1" in p for p in problems), problems
    code, _, err = run(["validate", bad], capsys)
    assert code == 1 and "NUL" in err
    for command in ("merge", "mine-closed-eyes", "relabel-pose"):  # the runner's last check: nothing written
        out = tmp_path / f"{command}.parquet"
        keep_all = ["--closed-threshold", "10"] if command == "mine-closed-eyes" else []
        code, _, err = run([command, bad, "-o", out, "-q", *keep_all], capsys)
        assert code == 1 and "row 1" in err and "'image_path'" in err, (command, err)
        no_output(out)
    # the commands that only read images never open it: the face has no image, like a missing file
    code, _, err = run(["render", bad, "-o", tmp_path / "sheet.png"], capsys)
    assert code == 0, err
    from landmark_unify.manifest import image_paths

    assert image_paths(read_manifest(bad))[1] is None


@pytest.mark.parametrize("damage", ["npz-cut-in-half", "npz-cut-at-the-end", "npy-cut-in-half", "npz-of-text"])
def test_a_damaged_mean_shape_is_named(corpus, damage, tmp_path, capsys):
    from landmark_unify.face_models import resolve_mean3d_path

    good, _ = corpus
    shipped = resolve_mean3d_path().read_bytes() if damage.startswith("npz") else None
    bad = tmp_path / ("mean.npy" if damage.startswith("npy") else "mean.npz")
    if damage == "npz-cut-in-half":
        bad.write_bytes(shipped[: len(shipped) // 2])
    elif damage == "npz-cut-at-the-end":
        bad.write_bytes(shipped[:-30])
    elif damage == "npy-cut-in-half":
        np.save(bad, np.zeros((68, 3)))
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        bad.write_text("not a zip file\n")
    out = tmp_path / "posed.parquet"
    code, _, err = run(["relabel-pose", good, "-o", out, "-q", "--mean-shape", bad], capsys)
    assert code == 1 and str(bad) in err and "cannot read the mean 3D face" in err, err
    no_output(out)
