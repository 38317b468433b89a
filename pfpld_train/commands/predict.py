"""``pfpld_train predict MODEL IMAGE... -o DIR``: landmarks and pose as JSON, plus overlay PNGs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from landmark_unify.cli_base import PATH, Numbers, add_on_error, add_overwrite, count, deprecated_alias, number

from .model_options import add_model_options, add_output_path, load_model_from_args

#: The detector's score threshold (``predict``, ``label``): a probability.
SCORE = number(0, 1, unit="score")
#: Faces kept per image (``predict``, ``label``).
MAX_FACES = count(1000, unit="faces")
#: Re-crop passes on the predicted landmarks (``predict``, ``label``): each pass runs the model once more per
#: face; past a few the crop no longer moves.
REFINE = count(10, low=0, unit="passes")
#: ``--box``: one face box in pixels.
BOX = Numbers(number(-1e6, 1e6, unit="pixels"), (4,), "x_min,y_min,x_max,y_max")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=PATH, help="our checkpoint (.pt or a fit output folder) or an ONNX landmark model")
    parser.add_argument("images", nargs="+", type=PATH, help="image files, or manifests (a .parquet file or a dataset "
                        "directory) standing for their images")
    add_output_path(parser, "output folder: predictions.json and *_overlay.png")
    add_overwrite(parser)
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--boxes", type=PATH, help="JSON file {image path or file name: [[x_min, y_min, x_max, y_max], ...]} "
                       "used instead of the detector")
    boxes.add_argument("--box", type=BOX, help="one box x_min,y_min,x_max,y_max for every image (instead of the "
                                               "detector)")
    parser.add_argument("--detector", type=PATH, help="folder with mnet.prototxt and mnet.caffemodel (default: bundled)")
    parser.add_argument("--detector-threshold", dest="threshold", type=SCORE, default=0.6,
                        help="detector score threshold (0.6)")
    deprecated_alias(parser, "--threshold", "--detector-threshold", "threshold", type=SCORE)
    parser.add_argument("--max-faces", type=MAX_FACES, help="keep at most this many faces per image (highest scores)")
    parser.add_argument("--refine", type=REFINE, default=1, help="re-crop passes from predicted landmarks (1)")
    parser.add_argument("--no-overlay", action="store_true", help="write JSON only")
    add_on_error(parser)
    add_model_options(parser)


def _boxes_for(image: Path, table: dict | None, box: list[float] | None):
    import numpy as np

    if box is not None:
        return np.asarray([box], np.float64)
    if table is None:
        return None
    for key in (str(image), image.name):
        if key in table:
            boxes = np.asarray(table[key], dtype=object)
            try:
                return boxes.astype(np.float64).reshape(-1, 4)
            except (TypeError, ValueError):
                from ..inference.predict import PredictError

                raise PredictError(f"--boxes entry {key!r}: expected [[x_min, y_min, x_max, y_max], ...], "
                                   f"got {table[key]!r}") from None
    return np.zeros((0, 4))


def _image_paths(inputs: list[str]) -> list[Path]:
    """The images to run on: each input as given, a manifest (``.parquet`` file or dataset directory)
    replaced by its distinct image paths in row order."""
    from landmark_unify import manifest as mf

    paths: list[Path] = []
    for name in inputs:
        p = Path(name)
        if p.suffix == ".parquet" or (p.is_dir() and (p / mf.MANIFEST_FILE).exists()):
            images = [q for q in mf.image_paths(mf.read(p)) if q is not None]
            paths.extend(Path(q) for q in dict.fromkeys(str(q) for q in images))
        else:
            paths.append(p)
    return paths


def run(args: argparse.Namespace) -> int:
    from landmark_unify.images import ImageError, image_info, read_image
    from landmark_unify.io import write_png_atomic
    from landmark_unify.outputs import current

    from ..inference.predict import DETECTOR_DIR, RetinaFaceDetector, draw_overlay, predict_image, write_predictions

    out = Path(args.output)
    box = list(args.box) if args.box else None  # four finite numbers: the parser checked them
    try:
        table = json.loads(Path(args.boxes).read_text()) if args.boxes else None
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: --boxes {args.boxes}: {exc}", file=sys.stderr)
        return 1
    if table is not None and not isinstance(table, dict):
        print(f"error: --boxes {args.boxes}: expected a JSON object {{image: [[x_min, y_min, x_max, y_max], ...]}}, "
              f"got {type(table).__name__}", file=sys.stderr)
        return 1
    inputs = [*args.images, args.model, args.boxes, args.detector]
    folder = current().folder(out, inputs=[p for p in inputs if p], overwrite=args.overwrite,
                              what="an input (an image, a manifest or the model)")
    model = load_model_from_args(args)
    detector = None
    if box is None and table is None:
        detector = RetinaFaceDetector(args.detector or DETECTOR_DIR, threshold=args.threshold)
    results = []
    unreadable: list[str] = []
    used: set[str] = set()
    paths = _image_paths(args.images)
    if args.on_error == "raise":  # every header checked before anything is written: the first bad image stops it
        for path in paths:
            image_info(path)
    for path in paths:
        try:
            image = read_image(path)
        except ImageError as exc:
            if args.on_error == "raise":
                raise
            unreadable.append(str(exc))
            continue
        faces = predict_image(model, image, boxes=_boxes_for(path, table, box), detector=detector,
                              refine=args.refine, max_faces=args.max_faces)
        entry = {"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                 "faces": [f.to_dict() for f in faces]}
        if not args.no_overlay:
            stem, k = path.stem, 1
            while stem in used:
                stem, k = f"{path.stem}_{k}", k + 1
            used.add(stem)
            png = folder.path(f"{stem}_overlay.png")
            write_png_atomic(draw_overlay(image, faces), png)
            entry["overlay"] = str(folder.final(png))
        results.append(entry)
        print(f"{path}: {len(faces)} face(s)")
    written = write_predictions(results, folder.staging)
    print(f"wrote {folder.final(written)}")
    if unreadable:  # --on-error skip: named in the summary, left out of the predictions
        print(f"predict: {len(unreadable)} unreadable image(s) skipped:", file=sys.stderr)
        for msg in unreadable:
            print(f"  {msg}", file=sys.stderr)
    return 1 if unreadable and not results else 0
