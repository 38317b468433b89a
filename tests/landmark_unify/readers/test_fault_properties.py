"""Property tests: generated bad records never give an invalid manifest, a traceback or a silent loss.

For any record a build either stops with a ParseError naming where (``--on-error raise``), or writes a
manifest that ``validate`` accepts in which every record is a face or a counted skip (``skip``)."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landmark_unify.errors import LandmarkUnifyError, ParseError
from landmark_unify.manifest import read_manifest, validate
from landmark_unify.ops.build import build_manifest

_spec = importlib.util.spec_from_file_location(
    "fault_corpus", Path(__file__).resolve().parents[1] / "commands" / "fault_corpus.py")
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: numbers that break things: huge (finite in float64, not float32), tiny, non-finite, negative, zero
NASTY = st.sampled_from([0.0, -0.0, -2.0, 1e-45, 1e-300, 1e38, 3.5e38, 1e40, -1e40, 1e308, math.inf, -math.inf,
                         math.nan, 150.0, 1.2])
NUMBERS = st.one_of(NASTY, st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                    st.sampled_from([10**400, -10**400]))
TOKENS = st.one_of(NUMBERS.map(repr), st.sampled_from(["", "abc", "1e", "--1", "0x10", "1,5", " ", "None"]))
PATHS = st.sampled_from(["img/a.jpg", "../a.jpg", "../../etc/passwd", "/etc/passwd", "a/../../b.jpg", "a/./b.jpg",
                         "C:/x.jpg", "", "ok.jpg"])


def _outcome(spec: str, out: Path, n: int) -> None:
    """The build under raise and skip: a ParseError or a valid manifest; under skip faces + skips == n."""
    try:
        build_manifest([spec], out, progress=False)
    except ParseError as err:
        assert err.path and (err.line is not None or err.key is not None or err.field is not None), err
        assert not out.exists()
    else:
        assert validate(out) == []
    out.unlink(missing_ok=True)
    try:
        rep = build_manifest([spec], out, on_error="skip", progress=False)
    except LandmarkUnifyError:
        assert not out.exists()
        return
    assert validate(out) == []
    assert rep.num_faces + len(rep.skipped) == n, (rep.num_faces, rep.skipped)
    assert len(read_manifest(out)) == rep.num_faces


@SETTINGS
@given(scale=TOKENS, cx=TOKENS, point=TOKENS, k=st.integers(0, 135), image=PATHS)
def test_hrnet_rows(tmp_path_factory, scale, cx, point, k, image):
    root = tmp_path_factory.mktemp("hrnet")
    names = [f"{a}{j}" for j in range(68) for a in "xy"]
    row = fc.hrnet_row(1, scale=scale, center_w=cx, image_name=image, **{names[k]: point})
    src = fc.hrnet_source(root / "src", n=3, rows={1: row.replace("\n", " ")})
    _outcome(f"hrnet-csv={src}", root / "m.parquet", 3)
    shutil.rmtree(root)


JSON_VALUES = st.one_of(NUMBERS, st.text(max_size=3), st.none(), st.booleans(), st.lists(NUMBERS, max_size=5))


@SETTINGS
@given(bbox=st.one_of(st.lists(JSON_VALUES, min_size=0, max_size=5), JSON_VALUES),
       kp_value=JSON_VALUES, kp_index=st.integers(0, 293), width=JSON_VALUES, file_name=PATHS)
def test_coco_annotations(tmp_path_factory, bbox, kp_value, kp_index, width, file_name):
    root = tmp_path_factory.mktemp("coco")
    ann = fc.coco_annotation(2, bbox=bbox)
    ann["keypoints"][kp_index] = kp_value
    image = {"id": 3, "file_name": file_name, "width": width, "height": 400}
    src = fc.coco_source(root / "src", n=4, anns={2: ann}, images={2: image})
    doc = json.loads((src / "test.json").read_text())  # json.dumps wrote NaN/Infinity: JSON the reader accepts
    assert doc["annotations"][2]["id"] == 3
    _outcome(f"coco={src}", root / "m.parquet", 4)
    shutil.rmtree(root)


@SETTINGS
@given(line=st.integers(0, 71), text=st.one_of(st.tuples(TOKENS, TOKENS).map(" ".join), TOKENS))
def test_pts_files(tmp_path_factory, line, text):
    root = tmp_path_factory.mktemp("pts")
    src = fc.ibug_source(root / "src", n=2, lines={1: {line: text}})
    _outcome(f"ibug={src}", root / "m.parquet", 2)
    shutil.rmtree(root)


@SETTINGS
@given(field=st.integers(0, 206), token=st.one_of(TOKENS, PATHS))
def test_wflw_lines(tmp_path_factory, field, token):
    root = tmp_path_factory.mktemp("wflw")
    src = fc.wflw_source(root / "src", n=3, fields={1: {field: token or "x"}})
    _outcome(f"wflw={src}", root / "m.parquet", 3)
    shutil.rmtree(root)


# --- the strict number parser: decimal ASCII numbers only, the same value float() gives them -------------------

from landmark_unify.readers._base import FLOAT32_MAX, parse_float, parse_int  # noqa: E402

FLOAT32_FINITE = st.floats(min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX, allow_nan=False)
#: decimal digits of other scripts (Arabic-Indic, fullwidth, Devanagari, ...): float() and int() read them
OTHER_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@settings(max_examples=300, deadline=None)
@given(x=FLOAT32_FINITE, style=st.sampled_from(["{!r}", "{:e}", "{:.3f}", "{:.0f}", "{:+g}"]))
def test_parse_float_reads_every_decimal_number_as_float_does(x, style):
    text = style.format(x)
    assert parse_float(text, "f.txt", line=1, field="x0") == float(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=12))
def test_parse_float_accepts_only_plain_ascii_decimals(text):
    try:
        v = parse_float(text, "f.txt", line=7, field="y3")
    except ParseError as err:
        assert err.line == 7 and err.field == "y3"
        return
    assert text.isascii() and "_" not in text and text == text.strip() and "\x00" not in text
    assert math.isfinite(v) and v == float(text) and abs(v) <= FLOAT32_MAX


@settings(max_examples=200, deadline=None)
@given(x=st.integers(0, 10**9), at=st.integers(0, 12), bad=st.one_of(st.just("_"), OTHER_DIGITS, st.just("\x00")))
def test_a_number_with_an_underscore_or_a_foreign_digit_is_refused(x, at, bad):
    text = str(x)
    text = text[:max(1, min(at, len(text)))] + bad + text[max(1, min(at, len(text))):]
    for parse in (parse_float, parse_int):
        try:
            parse(text, "f.pts", line=3, field="x1")
        except ParseError as err:
            assert err.line == 3 and err.field == "x1" and "f.pts" in str(err)
        else:
            raise AssertionError(f"{parse.__name__} accepted {text!r}")


@settings(max_examples=200, deadline=None)
@given(i=st.integers(-10**17, 10**17))
def test_parse_int_reads_whole_numbers(i):
    assert parse_int(str(i), "f.txt", line=1, field="count") == i
    for text in (f"{i}.0", f"{i}e0", f" {i}", f"{i:_}" if abs(i) >= 1000 else f"{i}_"):
        try:
            parse_int(text, "f.txt", line=1, field="count")
        except ParseError:
            continue
        raise AssertionError(f"parse_int accepted {text!r}")
