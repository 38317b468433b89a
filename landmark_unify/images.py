"""The one door through which both packages read pixels: :func:`read_image`, and :func:`image_info` for the
size alone.

Every image is checked from its header before a single pixel is decoded:

- **format**: JPEG, PNG, BMP, WebP, TIFF and the PNM family (PPM, PGM, PBM); anything else is refused;
- **size**: width and height come from the header (PNG ``IHDR``, JPEG ``SOFn``, the BMP info header, WebP's
  ``VP8``/``VP8L``/``VP8X`` chunk, TIFF's first IFD, the PNM header), and an image of more than
  :data:`MAX_IMAGE_PIXELS` pixels is refused (:class:`ImageTooLargeError`) without being decoded: a few
  kilobytes of PNG can declare gigabytes of pixels;
- **completeness**: a JPEG without its end-of-image marker after the scan, a PNG without ``IEND``, a chunk,
  BMP pixel array, RIFF body or PNM raster running past the end of the file is truncated
  (:class:`ImageTruncatedError`);
- **orientation**: the EXIF orientation tag (JPEG ``APP1``, PNG ``eXIf``, WebP ``EXIF``, TIFF) is applied, with
  OpenCV's rule for the eight values, by this module and nowhere else. The decoder is told to ignore it, so the
  width and height :func:`image_info` reports (``ImageInfo.size``) are always those of the decoded array.

Errors are :class:`ImageError` (a :class:`~landmark_unify.errors.LandmarkUnifyError`) naming the file.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LandmarkUnifyError

#: The most pixels (width x height) an image may have: 100 megapixels, 300 MB decoded as 8-bit RGB. A photo
#: of any current camera is below it; a header that declares more is refused before decoding.
MAX_IMAGE_PIXELS = 100_000_000

#: The formats :func:`read_image` reads (as :attr:`ImageInfo.format` names them).
FORMATS = ("jpeg", "png", "bmp", "webp", "tiff", "pnm")

#: The channel orders :func:`read_image` returns.
CHANNEL_ORDERS = ("rgb", "bgr")

_ORIENTATION_TAG = 0x0112


class ImageError(LandmarkUnifyError):
    """An image file is missing, not an image, corrupt, truncated or too large. ``path`` and ``reason``."""

    def __init__(self, path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTruncatedError(ImageError):
    """The file ends before the image does."""


class ImageTooLargeError(ImageError):
    """The header declares more than the pixel limit (:data:`MAX_IMAGE_PIXELS`)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: ``format``, the stored ``stored_width`` x ``stored_height`` and the EXIF
    ``orientation`` (1 to 8; 1 when absent). ``size`` is ``(width, height)`` after the orientation is applied:
    the shape :func:`read_image` returns."""

    format: str
    stored_width: int
    stored_height: int
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        if self.orientation >= 5:  # 5-8 transpose the image
            return self.stored_height, self.stored_width
        return self.stored_width, self.stored_height

    @property
    def pixels(self) -> int:
        return self.stored_width * self.stored_height


# --- headers ---------------------------------------------------------------------------------------------

def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of a TIFF-structured block (EXIF's body, or a TIFF file); 1 when absent or out
    of range (1 to 8)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(end + "H", tiff, ifd)
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            break
        tag, typ = struct.unpack_from(end + "HH", tiff, at)
        if tag == _ORIENTATION_TAG and typ == 3:  # SHORT
            (value,) = struct.unpack_from(end + "H", tiff, at + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg(data: bytes, path) -> ImageInfo:
    pos, n = 2, len(data)
    orientation = 1
    size = None
    while True:
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 4 > n:
            raise ImageTruncatedError(path, "truncated JPEG: the file ends inside its header")
        if data[pos] != 0xFF:
            raise ImageError(path, f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ImageError(path, f"corrupt JPEG: segment of length {length} at byte {pos}")
        body = data[pos + 4:pos + 2 + length]
        if pos + 2 + length > n:
            raise ImageTruncatedError(path, "truncated JPEG: the file ends inside its header")
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00" and orientation == 1:
            orientation = _exif_orientation(body[6:])
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if len(body) < 5:
                raise ImageError(path, "corrupt JPEG: short frame header")
            h, w = struct.unpack_from(">HH", body, 1)
            size = (w, h)
        elif marker == 0xDA:  # start of scan: the header is over
            if size is None:
                raise ImageError(path, "corrupt JPEG: a scan before the frame header")
            # entropy-coded data never holds FF D9 (an FF in it is followed by 00 or a restart marker), so the
            # end-of-image marker after the first scan is there exactly when the image is complete
            if data.rfind(b"\xff\xd9") < pos + 2 + length:  # searched from the end: found at once
                raise ImageTruncatedError(path, "truncated JPEG: no end-of-image marker after the scan")
            return ImageInfo("jpeg", size[0], size[1], orientation)
        elif marker == 0xD9:
            raise ImageError(path, "corrupt JPEG: end of image before any scan")
        pos += 2 + length


def _png(data: bytes, path) -> ImageInfo:
    n = len(data)
    if n < 33 or data[12:16] != b"IHDR":
        raise (ImageTruncatedError if n < 33 else ImageError)(path, "corrupt PNG: no IHDR chunk")
    w, h = struct.unpack_from(">II", data, 16)
    orientation = 1
    pos = 8
    while True:
        if pos + 8 > n:
            raise ImageTruncatedError(path, "truncated PNG: the file ends before its IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > n:
            raise ImageTruncatedError(path, f"truncated PNG: the file ends inside its {ctype.decode('latin-1')!r} chunk")
        if ctype == b"eXIf":
            orientation = _exif_orientation(data[pos + 8:pos + 8 + length])
        elif ctype == b"IEND":
            return ImageInfo("png", w, h, orientation)
        pos += 12 + length


def _bmp(data: bytes, path) -> ImageInfo:
    if len(data) < 26:
        raise ImageTruncatedError(path, "truncated BMP: the file ends inside its header")
    (offset,) = struct.unpack_from("<I", data, 10)
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # OS/2 core header
        w, h = struct.unpack_from("<HH", data, 18)
        bpp, compression = struct.unpack_from("<H", data, 24)[0], 0
    else:
        if len(data) < 34:
            raise ImageTruncatedError(path, "truncated BMP: the file ends inside its header")
        w, h = struct.unpack_from("<ii", data, 18)
        bpp, compression = struct.unpack_from("<HI", data, 28)
    h = abs(h)  # negative: stored top-down
    if w <= 0 or h <= 0:
        raise ImageError(path, f"corrupt BMP: size {w}x{h}")
    if compression in (0, 3) and bpp in (1, 4, 8, 16, 24, 32):  # uncompressed: the pixel array's size is known
        stride = (w * bpp + 31) // 32 * 4
        if offset + stride * h > len(data):
            raise ImageTruncatedError(path, "truncated BMP: the file ends inside its pixel array")
    return ImageInfo("bmp", w, h)


def _webp(data: bytes, path) -> ImageInfo:
    (riff,) = struct.unpack_from("<I", data, 4)
    if 8 + riff > len(data):
        raise ImageTruncatedError(path, "truncated WebP: the file is shorter than its RIFF header says")
    pos, size, orientation = 12, None, 1
    while pos + 8 <= 8 + riff:
        ctype, length = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if ctype == b"VP8X" and len(body) >= 10:
            size = (1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little"))
        elif ctype == b"VP8 " and size is None and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            w, h = struct.unpack_from("<HH", body, 6)
            size = (w & 0x3FFF, h & 0x3FFF)
        elif ctype == b"VP8L" and size is None and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
        elif ctype == b"EXIF":
            orientation = _exif_orientation(body[6:] if body[:6] == b"Exif\x00\x00" else body)
        pos += 8 + length + (length & 1)
    if size is None:
        raise ImageError(path, "corrupt WebP: no VP8, VP8L or VP8X chunk")
    return ImageInfo("webp", size[0], size[1], orientation)


def _tiff(data: bytes, path) -> ImageInfo:
    end = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", data, 4)
    if ifd + 2 > len(data):
        raise ImageTruncatedError(path, "truncated TIFF: the file ends before its first directory")
    (count,) = struct.unpack_from(end + "H", data, ifd)
    if ifd + 2 + 12 * count > len(data):
        raise ImageTruncatedError(path, "truncated TIFF: the file ends inside its first directory")
    found = {}
    for k in range(count):
        tag, typ = struct.unpack_from(end + "HH", data, ifd + 2 + 12 * k)
        if tag in (256, 257) and typ in (3, 4):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = struct.unpack_from(end + ("H" if typ == 3 else "I"), data, ifd + 2 + 12 * k + 8)[0]
    if 256 not in found or 257 not in found:
        raise ImageError(path, "corrupt TIFF: no image width or length in its first directory")
    return ImageInfo("tiff", found[256], found[257], _exif_orientation(data))


def _pnm(data: bytes, path) -> ImageInfo:
    kind = data[1:2]
    fields, pos, n = [], 2, len(data)
    wanted = 2 if kind in (b"1", b"4") else 3
    while len(fields) < wanted:
        while pos < n and data[pos:pos + 1].isspace():
            pos += 1
        if pos < n and data[pos:pos + 1] == b"#":
            while pos < n and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < n and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise (ImageTruncatedError if pos >= n else ImageError)(path, "corrupt PNM: bad header")
        fields.append(int(data[start:pos]))
    w, h = fields[0], fields[1]
    if kind in (b"4", b"5", b"6"):  # binary raster: its size is known
        per = {b"4": 0, b"5": 1, b"6": 3}[kind] * (2 if wanted == 3 and fields[2] > 255 else 1)
        need = ((w + 7) // 8) * h if kind == b"4" else w * h * per
        if pos + 1 + need > n:
            raise ImageTruncatedError(path, "truncated PNM: the file ends inside its raster")
    return ImageInfo("pnm", w, h)


def probe(data: bytes, path: str | os.PathLike = "<bytes>") -> ImageInfo:
    """The :class:`ImageInfo` of the encoded image ``data`` (``path`` names it in errors), from its header and
    structure only; raises :class:`ImageError` for an empty, unknown, corrupt or truncated file."""
    if not data:
        raise ImageError(path, "empty file, not an image")
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data, path)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data, path)
        if data[:2] == b"BM":
            return _bmp(data, path)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data, path)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data, path)
        if data[:1] == b"P" and data[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and data[2:3].isspace():
            return _pnm(data, path)
    except struct.error:  # a read past the end of a header field
        raise ImageTruncatedError(path, "truncated image: the file ends inside its header") from None
    raise ImageError(path, "cannot be decoded: not an image of a known format (JPEG, PNG, BMP, WebP, TIFF, PNM)")


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "image file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot be read: {exc.strerror or exc}") from None


def _checked(data: bytes, path, max_pixels: int | None) -> ImageInfo:
    info = probe(data, path)
    if info.stored_width <= 0 or info.stored_height <= 0:
        raise ImageError(path, f"corrupt {info.format.upper()}: size {info.stored_width}x{info.stored_height}")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if info.pixels > limit:
        raise ImageTooLargeError(path, f"{info.stored_width}x{info.stored_height} pixels ({info.pixels:,}) is more "
                                       f"than the limit of {limit:,} pixels; not decoded")
    return info


def image_info(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageInfo:
    """The header facts of the image file ``path`` (format, size after EXIF orientation), checked as
    :func:`read_image` checks it but without decoding the pixels."""
    return _checked(_read_bytes(path), path, max_pixels)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (rows, columns, ...) turned upright for an EXIF ``orientation`` of 1 to 8 (OpenCV's rule:
    2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
    counter-clockwise)."""
    if orientation in (5, 6, 7, 8):
        image = image.swapaxes(0, 1)
    if orientation in (2, 6):
        image = image[:, ::-1]
    elif orientation in (3, 7):
        image = image[::-1, ::-1]
    elif orientation in (4, 8):
        image = image[::-1]
    return np.ascontiguousarray(image) if orientation != 1 else image


def read_image_with_bytes(path: str | os.PathLike, *, channel_order: str = "rgb",
                          max_pixels: int | None = None) -> tuple[bytes, np.ndarray]:
    """:func:`read_image`, with the file's bytes as read (for content keys: one read of the file)."""
    data = _read_bytes(path)
    return data, decode_image(data, path, channel_order=channel_order, max_pixels=max_pixels)


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>", *, channel_order: str = "rgb",
                 max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` of bytes already read."""
    import cv2

    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}; got {channel_order!r}")
    info = _checked(data, path, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(path, f"corrupt {info.format.upper()}: the decoder refused it")
    if img.shape[:2] != (info.stored_height, info.stored_width):
        raise ImageError(path, f"corrupt {info.format.upper()}: decoded {img.shape[1]}x{img.shape[0]}, header says "
                               f"{info.stored_width}x{info.stored_height}")
    img = orient(img, info.orientation)
    if channel_order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_image(path: str | os.PathLike, *, channel_order: str = "rgb", max_pixels: int | None = None) -> np.ndarray:
    """The image file ``path`` as ``(H, W, 3) uint8``, RGB (or ``channel_order="bgr"``), upright by its EXIF
    orientation. Checked from its header first (format, size against ``max_pixels``, default
    :data:`MAX_IMAGE_PIXELS`, completeness): raises :class:`ImageError` naming the file for a missing, empty,
    unknown, corrupt, truncated (:class:`ImageTruncatedError`) or too large (:class:`ImageTooLargeError`)
    image."""
    return decode_image(_read_bytes(path), path, channel_order=channel_order, max_pixels=max_pixels)


__all__ = ["CHANNEL_ORDERS", "FORMATS", "MAX_IMAGE_PIXELS", "ImageError", "ImageInfo", "ImageTooLargeError",
           "ImageTruncatedError", "decode_image", "image_info", "orient", "probe", "read_image"]
