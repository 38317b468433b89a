"""The one image reader (:mod:`landmark_unify.images`): EXIF orientation, the header's pixel limit,
truncated, corrupt, empty and foreign files, on files built here and on the real shared photos."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark_unify.images import (
    MAX_IMAGE_PIXELS,
    ImageError,
    ImageTooLargeError,
    ImageTruncatedError,
    image_info,
    orient,
    probe,
    read_image,
)
from landmark_unify.ops.build import image_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


def _picture(h: int = 30, w: int = 50) -> np.ndarray:
    """A BGR picture whose every pixel says where it is (so a rotation or mirror shows)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 5 % 256, y * 8 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def _exif(orientation: int, big_endian: bool = False) -> bytes:
    """A TIFF-structured EXIF body with one IFD entry: the orientation (SHORT)."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8)
    return head + struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"


def _jpeg_with_orientation(img: np.ndarray, orientation: int, big_endian: bool = False) -> bytes:
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    body = b"Exif\x00\x00" + _exif(orientation, big_endian)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` (its IDAT holds a few compressed rows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (3 * width + 1) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# --- EXIF orientation: one rule, OpenCV's, and the size every reader reports ----------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_exif_orientation_is_applied_as_opencv_applies_it(orientation, big_endian, tmp_path):
    pic = _picture()
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg_with_orientation(pic, orientation, big_endian))
    info = image_info(path)
    assert (info.format, info.orientation) == ("jpeg", orientation)
    assert (info.stored_width, info.stored_height) == (50, 30)
    mine = read_image(path, channel_order="bgr")
    assert np.array_equal(mine, cv2.imread(str(path), cv2.IMREAD_COLOR))  # OpenCV's own EXIF rule
    # the size from the header, the size --check-images records and the decoded shape agree
    assert info.size == (mine.shape[1], mine.shape[0]) == image_size(path)
    assert info.size == ((30, 50) if orientation >= 5 else (50, 30))
    assert np.array_equal(read_image(path), mine[..., ::-1])  # RGB by default


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_a_png_exif_chunk(orientation, tmp_path):
    pic = _picture(20, 40)
    plain = cv2.imencode(".png", pic)[1].tobytes()
    # eXIf goes before IDAT: after IHDR (33 bytes)
    data = plain[:33] + _chunk(b"eXIf", _exif(orientation)) + plain[33:]
    path = tmp_path / "p.png"
    path.write_bytes(data)
    assert image_info(path).orientation == orientation
    assert np.array_equal(read_image(path, channel_order="bgr"), orient(pic, orientation))


def test_orient_is_a_rotation_or_mirror_of_the_picture():
    pic = _picture(3, 5)
    assert np.array_equal(orient(pic, 3), np.rot90(pic, 2))
    assert np.array_equal(orient(pic, 6), np.rot90(pic, -1))  # 90 degrees clockwise
    assert np.array_equal(orient(pic, 8), np.rot90(pic, 1))
    assert np.array_equal(orient(pic, 2), pic[:, ::-1]) and np.array_equal(orient(pic, 4), pic[::-1])
    assert np.array_equal(orient(orient(pic, 5), 5), pic)


def test_out_of_range_orientation_is_ignored(tmp_path):
    path = tmp_path / "o.jpg"
    path.write_bytes(_jpeg_with_orientation(_picture(), 9))
    assert image_info(path).orientation == 1 and read_image(path).shape == (30, 50, 3)


# --- the pixel limit, from the header, before decoding ---------------------------------------------------

def test_a_png_declaring_too_many_pixels_is_refused_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(30000, 30000))
    assert path.stat().st_size < 200_000  # a small file...
    info = probe(path.read_bytes(), path)
    assert (info.format, info.size) == ("png", (30000, 30000)) and info.pixels > MAX_IMAGE_PIXELS

    def no_decode(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    for call in (read_image, image_info):
        with pytest.raises(ImageTooLargeError, match=r"huge\.png: 30000x30000 pixels .* limit of 100,000,000"):
            call(path)
    assert isinstance(image_size(path), Exception) and "limit" in str(image_size(path))


def test_the_limit_is_a_parameter(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(cv2.imencode(".png", _picture(30, 50))[1].tobytes())
    assert read_image(path, max_pixels=1500).shape == (30, 50, 3)
    with pytest.raises(ImageTooLargeError):
        read_image(path, max_pixels=1499)


# --- truncated, corrupt, empty, foreign ------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo(shared_data) -> Path:
    return shared_data / "upstream_pfpld" / "test.jpg"


def test_a_truncated_jpeg_is_named_and_never_decoded(photo, tmp_path, capfd):
    data = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageTruncatedError, match=r"cut\.jpg: truncated JPEG: no end-of-image marker"):
        read_image(cut)
    assert "Premature end" not in capfd.readouterr().err  # libjpeg was never asked
    assert isinstance(image_size(cut), Exception)
    # trailing bytes after a complete image are not a truncation
    tail = tmp_path / "tail.jpg"
    tail.write_bytes(data + b"\0" * 100)
    assert np.array_equal(read_image(tail), read_image(photo))


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.999))
def test_a_file_cut_anywhere_is_an_error_never_a_partial_image(shared_data, tmp_path_factory, fraction):
    for name in ("upstream_pfpld/test.jpg", "300W/eos/image_0010.png"):
        data = (shared_data / name).read_bytes()
        path = tmp_path_factory.mktemp("cut") / Path(name).name
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ImageError, match=Path(name).name):
            read_image(path)


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, not an image\n", "not an image of a known format"),
    (bytes(range(256)) * 40, "not an image of a known format"),
    (b"\xff\xd8\xff\xe0" + bytes(200), "corrupt JPEG|truncated JPEG"),
    (b"\x89PNG\r\n\x1a\n" + bytes(30), "corrupt PNG|truncated PNG"),
    (b"BM" + bytes(10), "truncated"),
    (b"RIFF\xff\xff\x00\x00WEBPVP8 ", "truncated WebP"),
    (b"P6\n# just a header\n", "PNM"),
    (b"P6\n10 10\n255\n" + bytes(50), "truncated PNM"),
], ids=["empty", "text", "garbage", "jpeg-header-only", "png-header-only", "bmp-stub", "webp-stub",
        "pnm-header", "pnm-short"])
def test_bad_files_are_typed_errors_naming_the_file(content, match, tmp_path):
    path = tmp_path / "bad.img"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as got:
        read_image(path)
    assert got.value.path == str(path) and str(got.value).startswith(f"{path}: ")
    with pytest.raises(ImageError):
        image_info(path)


def test_a_png_without_iend_or_with_a_bad_crc(tmp_path):
    data = cv2.imencode(".png", _picture())[1].tobytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[:-12])  # IEND gone
    with pytest.raises(ImageTruncatedError, match="IEND"):
        read_image(cut)
    bad = bytearray(data)
    bad[40] ^= 0xFF  # inside IDAT: the checksum no longer matches
    flipped = tmp_path / "crc.png"
    flipped.write_bytes(bytes(bad))
    with pytest.raises(ImageError, match=r"crc\.png"):
        read_image(flipped)


def test_missing_files_folders_and_non_images(tmp_path, monkeypatch):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "notes.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ImageError, match="notes.json: cannot be decoded: not an image"):
        read_image(tmp_path / "notes.json")
    with pytest.raises(ValueError):
        read_image(tmp_path / "notes.json", channel_order="gbr")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_every_format_size_from_its_header(ext, tmp_path):
    pic = _picture(37, 61)
    if ext == ".pgm":
        pic = pic[..., 0]
    ok, enc = cv2.imencode(ext, pic)
    assert ok
    path = tmp_path / f"x{ext}"
    path.write_bytes(enc.tobytes())
    assert image_info(path).size == (61, 37)
    img = read_image(path, channel_order="bgr")
    assert img.shape == (37, 61, 3)
    if ext in (".png", ".bmp", ".ppm", ".tiff"):  # lossless
        assert np.array_equal(img, pic)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(enc.tobytes()[: len(enc) // 2])
    if ext != ".tiff":  # a TIFF's strips are found through its directory: the decoder refuses a short one
        with pytest.raises(ImageTruncatedError):
            read_image(cut)
    else:
        with pytest.raises(ImageError):
            read_image(cut)


# --- the real photos -------------------------------------------------------------------------------------

def test_every_shared_photo_reads_as_opencv_reads_it(shared_data):
    """Every image of the shared samples: the header's size is the decoded size, and the pixels are OpenCV's
    (none of them carries an EXIF rotation, so the upright image is the stored one)."""
    paths = sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    assert len(paths) >= 290
    formats = set()
    for p in paths[::7] + [p for p in paths if p.suffix.lower() != ".jpg"]:
        info = image_info(p)
        formats.add(info.format)
        img = read_image(p, channel_order="bgr")
        assert info.size == (img.shape[1], img.shape[0]), p
        assert np.array_equal(img, cv2.imread(str(p), cv2.IMREAD_COLOR)), p
    assert formats == {"jpeg", "png", "pnm"}
    for p in paths:  # headers only: cheap
        assert image_info(p).orientation == 1


def test_no_other_module_decodes_images():
    """The one door: no module of either package but landmark_unify/images.py calls OpenCV's decoders."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    found = []
    for pkg in ("landmark_unify", "pfpld_train"):
        for path in (repo / pkg).rglob("*.py"):
            if path == repo / "landmark_unify" / "images.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in ("imread", "imdecode", "imreadmulti"):
                    found.append(f"{path.relative_to(repo)}:{node.lineno} {node.attr}")
    assert found == [], "read pixels with landmark_unify.images.read_image"


def test_build_check_images_and_render_refuse_a_huge_png_by_name(shared_data, tmp_path, capsys, monkeypatch):
    """The PNG of 30000x30000 pixels that build --check-images (1.9 GB) and render (5.4 GB) decoded whole:
    --check-images names it (an error, or a counted skip) and render draws a grey tile and names it; neither
    decodes it."""
    import shutil

    from landmark_unify.cli import main

    root = tmp_path / "300W"
    shutil.copytree(shared_data / "300W" / "eos", root)
    huge = root / "image_0010.png"
    huge.write_bytes(_png_declaring(30000, 30000))
    real_decode = cv2.imdecode

    def guarded(buf, flags):
        assert len(buf) != huge.stat().st_size, "the huge PNG was decoded"
        return real_decode(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", guarded)
    out = tmp_path / "m.parquet"
    assert main(["build-manifest", "-o", str(out), "--source", f"ibug={root}", "--check-images", "-q"]) == 1
    err = capsys.readouterr().err
    assert "image_0010.png" in err and "30000x30000" in err and "limit" in err and not out.exists()
    assert main(["build-manifest", "-o", str(out), "--source", f"ibug={root}", "--check-images", "-q",
                 "--on-error", "skip"]) == 0
    capsys.readouterr()
    import landmark_unify as lu

    df = lu.read_manifest(out)
    assert len(df) == 1 and (df["image_width"].iloc[0], df["image_height"].iloc[0]) == image_size(root / "image_0001.png")
    plain = tmp_path / "plain.parquet"
    assert main(["build-manifest", "-o", str(plain), "--source", f"ibug={root}", "-q"]) == 0
    sheet = tmp_path / "s.png"
    assert main(["render", str(plain), "-o", str(sheet), "--size", "64"]) == 0
    captured = capsys.readouterr()
    assert f"{huge}: 30000x30000 pixels" in captured.err and "grey tile" in captured.err
    assert "1 without an image file" in captured.out and sheet.is_file()
