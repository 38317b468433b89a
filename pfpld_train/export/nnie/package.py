"""The folder handed to HiSilicon's ``nnie_mapper``: Caffe model, ``.cfg``, calibration images, reports.

Layout of ``out_dir`` (file stem ``pfpld``)::

    pfpld.prototxt, pfpld.caffemodel   Caffe 1.0 model (batch norms folded)
    pfpld.onnx                          the same network as ONNX (float32), used by the int8 simulation
    pfpld.cfg                           mapper configuration (keys below; run the mapper in this folder)
    calib/NNNNNN.jpg, calib/image_list.txt   face crops, 112 x 112, 8-bit colour images
    compatibility.txt / .json           NNIE constraint check, one line per finding
    int8_report.json                    int8 simulation: NME and pose drift int8 vs fp32 (held-out faces)
    report.json                         everything checked, with the parity figures
    README.md                           board side: input layout, output order, fixed-point scale

The cfg keys written are the mapper's: ``[prototxt_file] [caffemodel_file] [batch_num] [net_type]
[sparse_rate] [compile_mode] [is_simulation] [log_level] [instruction_name] [RGB_order] [data_scale]
[internal_stride] [image_list] [image_type] [mean_file] [norm_type]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landmark_unify.images import ImageError, read_image
from landmark_unify.io import write_bytes_atomic

from ..errors import ExportError
from ..faces import PFPLD_PREPROCESS, FaceSet

__all__ = ["write_calibration_images", "write_cfg", "write_board_readme", "CFG_KEYS", "MAX_CALIB_IMAGES"]

CFG_KEYS = ("prototxt_file", "caffemodel_file", "batch_num", "net_type", "sparse_rate", "compile_mode",
            "is_simulation", "log_level", "instruction_name", "RGB_order", "data_scale", "internal_stride",
            "image_list", "image_type", "mean_file", "norm_type")

#: Most calibration images the mapper takes (``[batch_num]``).
MAX_CALIB_IMAGES = 256

#: NNIE returns output blobs as signed 32-bit fixed point with 12 fractional bits.
NNIE_FIXED_POINT_SCALE = 4096


def write_calibration_images(faces: FaceSet, out_dir: str | Path, fmt: str = "jpg") -> Path:
    """Write ``faces.crops`` (RGB) as 8-bit colour images and an image list; returns the list's path.

    The list holds paths relative to ``out_dir``'s parent (the package folder), one per line, in the
    order the crops are given. ``fmt``: ``jpg`` (quality 95), ``png`` or ``bmp``.
    """
    import cv2

    if fmt not in ("jpg", "png", "bmp"):
        raise ExportError(f"calibration image format must be jpg, png or bmp, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpg" else []
    lines = []
    for i, crop in enumerate(faces.crops):
        name = f"{i:06d}.{fmt}"
        ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ExportError(f"{out_dir / name}: cannot encode image")
        write_bytes_atomic(buf.tobytes(), out_dir / name)
        lines.append(f"./{out_dir.name}/{name}")
    listing = out_dir / "image_list.txt"
    write_bytes_atomic(("\n".join(lines) + "\n").encode(), listing)
    return listing


def read_calibration_images(listing: str | Path) -> np.ndarray:
    """The images named in an image list (relative to the list's parent folder's parent) as RGB crops."""
    listing = Path(listing)
    base = listing.parent.parent
    crops = []
    for line in listing.read_text().splitlines():
        if line.strip():
            try:
                crops.append(read_image(base / line.strip()))
            except ImageError as exc:
                raise ExportError(f"{listing}: cannot read {line.strip()}: {exc.reason}") from None
    return np.stack(crops)


def write_cfg(path: str | Path, *, stem: str, image_list: str, n_images: int, compile_mode: int = 0) -> dict:
    """Write the mapper ``.cfg`` for the PFPLD network; returns the key/value dict written.

    Values: U8 colour image input (``image_type 1``) in RGB order (as in training), normalisation
    ``norm_type 3`` = pixel x ``data_scale`` with ``data_scale`` = 1/255, no mean; ``batch_num`` = number of
    calibration images (at most 256).
    """
    if compile_mode not in (0, 1, 2):
        raise ExportError(f"compile_mode must be 0, 1 or 2, got {compile_mode}")
    pre = PFPLD_PREPROCESS
    values = {
        "prototxt_file": f"./{stem}.prototxt",
        "caffemodel_file": f"./{stem}.caffemodel",
        "batch_num": str(max(1, min(int(n_images), MAX_CALIB_IMAGES))),
        "net_type": "0",
        "sparse_rate": "0",
        "compile_mode": str(compile_mode),
        "is_simulation": "0",
        "log_level": "0",
        "instruction_name": f"./{stem}_inst",
        "RGB_order": pre.color,
        "data_scale": f"{pre.scale:.10f}",
        "internal_stride": "16",
        "image_list": image_list,
        "image_type": "1",
        "mean_file": "null",
        "norm_type": "3",
    }
    comments = {
        "batch_num": "calibration images used by the quantizer (all images of image_list, at most 256)",
        "net_type": "0 = plain CNN (no ROI/PSROI pooling, no recurrent layer)",
        "compile_mode": "0 = 8-bit (low bandwidth); 1 = high precision (16-bit) if the int8 drift is too large",
        "is_simulation": "0 = instructions for the chip; 1 = for the PC simulator",
        "RGB_order": "the network was trained on RGB: channel 0 = R, 1 = G, 2 = B",
        "data_scale": "1/255: the network expects pixel / 255 in [0, 1] (pfpld_train.models.pfpld)",
        "image_type": "1 = 8-bit 3-channel image input (planar U8 on the board); the calibration list holds "
                      "112 x 112 face crops",
        "mean_file": "no mean subtraction (norm_type 3)",
        "norm_type": "3 = multiply pixels by data_scale only",
    }
    lines = [
        "# nnie_mapper configuration for the PFPLD landmark + pose network (written by pfpld_train export).",
        "# Run the mapper from this folder: paths are relative to it.",
        "# Input: 1 x 3 x 112 x 112, RGB, x = pixel * 0.0039215686 (= 1/255), the standard face crop.",
        "# Outputs: landmarks (196 = x0 y0 ... x97 y97 in crop units) and pose (3 = pitch yaw roll, radians).",
        "# If a mapper version rejects comment lines, delete the lines starting with '#'.",
    ]
    for key in CFG_KEYS:
        if key in comments:
            lines.append(f"# {key}: {comments[key]}")
        lines.append(f"[{key}] {values[key]}")
    write_bytes_atomic(("\n".join(lines) + "\n").encode(), Path(path))
    return values


def write_board_readme(path: str | Path, *, stem: str, outputs_in_order: list[str], report: dict) -> None:
    """README for the board side: input layout, output order and the fixed-point scale."""
    parity = {k: ", ".join(f"{n} {v:.2g}" for n, v in d.items()) for k, d in report.get("parity", {}).items()}
    int8 = report.get("int8", {})
    if report.get("caffe", {}).get("pose_trained", True):
        pose_doc = ("- `pose`: 3 values, pitch, yaw, roll in **radians** (300W-LP Pose_Para convention; x 57.29578 for\n"
                    "  degrees).")
    else:
        pose_doc = ("- `pose`: 3 values, **UNTRAINED**: no training face had a pose, so this output is not a head pose.\n"
                    "  Do not read it (the blob is still there because the network's graph has it).")
    text = f"""# PFPLD on NNIE: board-side notes

Files: `{stem}.prototxt` + `{stem}.caffemodel` (Caffe 1.0, batch norms folded), `{stem}.cfg` (mapper
configuration), `calib/` (calibration face crops and `image_list.txt`), `{stem}.onnx` (float reference).
Compile with `nnie_mapper {stem}.cfg` run from this folder; it writes `{stem}_inst.wk`.

## Input
- One blob `input`, 1 x 3 x 112 x 112, **U8, planar (CHW), channel order R, G, B** (`[RGB_order] RGB`).
  Rows are laid out with the stride of the input blob's descriptor (16-byte aligned for U8; 112 for a
  112-pixel row, so the three planes are contiguous).
- The mapper folds the normalisation into the model: feed raw pixels 0..255; the network sees
  pixel x 1/255 (`[norm_type] 3`, `[data_scale] 0.0039215686`).
- The image must be the standard face crop the network was trained on: a square of side
  S = int(1.2 * max landmark extent) centred on the face, zero outside the image, resized bilinearly to
  112 x 112 (`pfpld_train.data.crop`). Without landmarks, crop from the detector box with the same rule and
  re-crop from the first prediction.

## Outputs
Two output blobs, in this order in the prototxt: {", ".join(f"`{o}`" for o in outputs_in_order)}.
Check the order the mapper reports in its log/.wk; address outputs by name where the runtime allows.
- `landmarks`: 196 values, x0, y0, x1, y1, ... of the 98 WFLW points in crop units (0 = left/top edge
  of the crop, 1 = right/bottom). Image pixels: x = value * S + x0, y = value * S + y0.
{pose_doc}

NNIE writes output blobs as **signed 32-bit fixed point with 12 fractional bits**: divide every value by
**{NNIE_FIXED_POINT_SCALE}** (float value = s32 / 4096.0) before the conversions above. Read 196
(resp. 3) values from the start of the output blob; its stride comes from the blob descriptor.

## Accuracy checks done at export
- Caffe (OpenCV dnn) vs PyTorch, max abs difference: {parity.get("caffe_vs_torch", "n/a")}
- ONNX (onnxruntime) vs PyTorch, max abs difference: {parity.get("onnx_vs_torch", "n/a")}
- int8 simulation (onnxruntime static quantization, calibrated on `calib/`): see `int8_report.json`
  {int8.get("summary", "(not run: no held-out faces given)")}
NNIE's own quantizer differs from onnxruntime's; compare the `.wk` output with `{stem}.onnx` on a few
crops (cosine similarity) before deployment. If the int8 drift is too large, compile with
`[compile_mode] 1` (16-bit).
"""
    write_bytes_atomic(text.encode(), Path(path))
