"""``label IMAGES... -o OUT.parquet --model M``: machine labels for photos, as a manifest.

The same command runs as ``pfpld_train label`` and as ``landmark_unify label``: pfpld_train registers it
under landmark_unify's ``landmark_unify.commands`` entry point (setup.cfg), so landmark_unify offers it
without importing the trainer (the import runs one way, pfpld_train -> landmark_unify).
"""

from __future__ import annotations

import argparse

#: the one-line summary both CLIs list
SUMMARY = "detect faces in photos and write their predicted landmarks as a manifest of machine labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from landmark_unify.cli_base import PATH, TEXT, add_on_error, add_overwrite, add_quiet
    from landmark_unify.core.maps import POLICIES

    from .model_options import add_model_options, add_output_path
    from .predict import MAX_FACES, REFINE, SCORE

    parser.add_argument("images", nargs="+", type=PATH, help="image files, or folders (searched recursively)")
    add_output_path(parser, "manifest to write (.parquet)")
    add_overwrite(parser)
    parser.add_argument("--model", required=True, type=TEXT,
                        help="our checkpoint (.pt or a fit output folder), any 98-point ONNX model (with --preset or "
                             "--channel-order/--mean/--scale), or fan2d / fan3d (the optional face-alignment package)")
    parser.add_argument("--model-name", type=TEXT, help="name written to label_model (default: the model file's name)")
    parser.add_argument("--fan-weights", dest="weights", type=PATH, help="fan2d/fan3d: folder holding the FAN weight files (default: the torch hub "
                                          "cache, torch.hub.get_dir()/checkpoints); never downloaded")
    parser.add_argument("--source-label", dest="source", type=TEXT, help="source label of the faces (default: the name of the folder holding "
                                          "every image)")
    parser.add_argument("--root", type=PATH, help="source root the image paths are relative to (default: the deepest folder "
                                       "holding every image)")
    parser.add_argument("--set-split", dest="split", default="train", type=TEXT, help="split written to every row (default train)")
    parser.add_argument("--policy", choices=POLICIES, default="strict",
                        help="map of a 68-point model's points onto the 98 (default strict: exact points only)")
    parser.add_argument("--detector", type=PATH, help="folder with mnet.prototxt and mnet.caffemodel (default: bundled)")
    parser.add_argument("--detector-threshold", dest="threshold", type=SCORE, default=0.6,
                        help="detector score threshold (0.6)")
    parser.add_argument("--max-faces", type=MAX_FACES, help="keep at most this many faces per image (highest scores)")
    parser.add_argument("--refine", type=REFINE, default=1, help="our models: re-crop passes on the predicted "
                                                              "landmarks (1)")
    parser.add_argument("--no-pose-fit", action="store_true",
                        help="leave the pose of faces the model gives none for unknown (default: fitted from "
                             "the landmarks, pose_source 'fit')")
    parser.add_argument("--compare", metavar="MANIFEST", type=PATH,
                        help="a second opinion: score the machine labels against this manifest's labels of the same "
                             "images (faces paired by overlap; NME normalised by the outer eye corners, 60-72)")
    add_on_error(parser)
    add_quiet(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from landmark_unify.cli_base import command_line
    from landmark_unify.ops.label import write_machine_labels
    from landmark_unify.outputs import current

    from ..inference.label import (
        FAN_KINDS,
        LabelError,
        ModelLabeller,
        find_images,
        label_images,
        load_labeller,
        model_name,
    )
    from ..inference.predict import DETECTOR_DIR, RetinaFaceDetector
    from .model_options import load_model_from_args

    inputs = [*args.images, args.model, args.compare, args.weights, args.detector, args.root]
    current().file(args.output, inputs=[p for p in inputs if p], overwrite=args.overwrite,
                   what="an input (an image, the model or a manifest)")
    images = find_images(args.images)
    if not images:
        raise LabelError(f"no images in {args.images} (suffixes .jpg, .png, ...)")
    if args.model in FAN_KINDS:
        labeller = load_labeller(args.model, device=args.device, weights_dir=args.weights, name=args.model_name)
    else:  # our checkpoint or an ONNX model, loaded as evaluate and predict load it
        labeller = ModelLabeller(load_model_from_args(args), args.model_name or model_name(args.model),
                                 refine=args.refine)
    detector = RetinaFaceDetector(args.detector or DETECTOR_DIR, threshold=args.threshold)
    faces, counts, skipped = label_images(labeller, images, detector=detector, max_faces=args.max_faces,
                                          on_error=args.on_error, progress=not args.quiet)
    for _path, reason in skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    if not faces:
        raise LabelError(f"no face found in {counts['images']} readable image(s); nothing written")
    out = write_machine_labels(faces, args.output, model=labeller.name, source=args.source, root=args.root,
                               split=args.split, policy=args.policy, fit_pose=not args.no_pose_fit,
                               command=command_line(getattr(args, "_prog", "pfpld_train"), args),
                               images=counts["images"], images_without_face=counts["no_face"],
                               images_unreadable=counts["unreadable"])
    print(f"{out}: {len(faces)} faces from {counts['images']} images, machine labels of {labeller.name} "
          f"({counts['no_face']} images without a face, {counts['unreadable']} unreadable)")
    if args.compare:
        from landmark_unify.manifest import read_manifest
        from landmark_unify.ops.label import compare_labels

        r = compare_labels(read_manifest(out), read_manifest(args.compare))
        print(f"against {args.compare}: {r['matched']} of {r['faces']} faces paired ({r['missed']} not found), "
              f"NME mean {100 * r['nme_mean']:.2f}%, median {100 * r['nme_median']:.2f}%, "
              f"failure rate at 0.1 {100 * r['failure_rate']:.1f}%")
    return 0
