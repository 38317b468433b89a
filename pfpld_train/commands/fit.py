"""``pfpld_train fit MANIFEST --out DIR``: train the PFPLD network on a manifest."""

from __future__ import annotations

import argparse
import sys

from landmark_unify.cli_base import PATH, SEED, add_output, add_quiet, count, number

from .evaluate import BATCH_SIZE

#: Loss weights (``--eye-weight``, ``--pose-weight``)
LOSS_WEIGHT = number(0, 100, unit="weight")
#: A bound on steps (``--max-steps``, ``--checkpoint-every``): a billion steps is years of training
STEPS = count(10**9, unit="steps")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", nargs="?", type=PATH, help="training manifest, a .parquet file or a dataset directory; "
                        "optional with --resume")
    add_output(parser, "run folder: checkpoints, metrics.csv, config.json")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val", type=PATH, help="validation manifest (a .parquet file or a dataset directory)")
    val.add_argument("--val-fraction", type=number(0, 1, low_open=True, high_open=True, unit="of the images"),
                     help="split this fraction of the images off the training manifest for validation")
    parser.add_argument("--epochs", type=count(10_000, unit="epochs"), help="number of epochs (60)")
    parser.add_argument("--batch-size", type=BATCH_SIZE, help="faces per step (64)")
    parser.add_argument("--lr", type=number(0, 10, low_open=True), help="peak Adam learning rate (1e-3), warm-up then cosine")
    parser.add_argument("--weight-decay", type=number(0, 1), help="Adam weight decay (1e-6)")
    parser.add_argument("--warmup-epochs", type=number(0, 10_000, unit="epochs"), help="linear warm-up length in epochs (1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="cpu (default) or cuda")
    parser.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                        help="mixed precision on CUDA (auto: bf16 where supported, else fp16)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last tensors (default: on for cuda, off for cpu)")
    parser.add_argument("--workers", type=count(64, low=0, unit="processes"),
                        help="data-loading processes (2; 0: in the training process)")
    parser.add_argument("--cache", type=PATH, help="crop cache of the training manifest (pfpld_train cache)")
    parser.add_argument("--val-cache", type=PATH, help="crop cache of the validation manifest")
    parser.add_argument("--seed", type=SEED, help="seed of initialisation, order and augmentation (0)")
    parser.add_argument("--eye-weight", type=LOSS_WEIGHT, help="loss weight of the eye points (1.5)")
    parser.add_argument("--pose-weight", type=LOSS_WEIGHT, help="weight of the pose loss, per degree (1.0)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--max-steps", type=STEPS, help="stop after this many steps in all (checkpoint kept)")
    parser.add_argument("--checkpoint-every", type=STEPS,
                        help="also write last.pt every N steps inside an epoch (long epochs)")
    parser.add_argument("--resume", action="store_true", help="continue the run in -o/--output from last.pt")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.augmentation import AugmentConfig
    from ..train.loop import TrainConfig, fit
    from ..train.loss import LossConfig

    if not args.manifest and not args.resume:
        print("error: MANIFEST is required unless --resume is given", file=sys.stderr)
        return 2
    cfg = TrainConfig(manifest=args.manifest or "", out=args.output)
    names = ("val", "val_fraction", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "device", "amp",
             "channels_last", "workers", "cache", "val_cache", "seed", "max_steps", "checkpoint_every")
    for name in names:
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    loss = LossConfig().to_dict()
    if args.eye_weight is not None:
        loss["eye_weight"] = args.eye_weight
    if args.pose_weight is not None:
        loss["pose_weight"] = args.pose_weight
    cfg.loss = loss
    if args.no_augment:
        cfg.augment = AugmentConfig.none().to_dict()
    cfg.progress = not args.quiet
    # What this command line sets: on --resume only these are compared with (or change) the saved run; an
    # option left out keeps its saved value instead of falling back to its default (--epochs 60, --device cpu).
    given = {n for n in names if getattr(args, n) is not None} | {"max_steps", "progress"}
    given |= {f"loss.{n}" for n in ("eye_weight", "pose_weight") if getattr(args, n) is not None}
    if args.manifest:
        given.add("manifest")
    if args.no_augment:
        given.add("augment")
    summary = fit(cfg, resume=args.resume, given=given)
    best = summary["best_val_nme"]
    print(f"done: {summary['epochs_done']} epochs, {summary['step']} steps; "
          + (f"best val NME {100 * best:.2f} %; " if best is not None else "")
          + f"checkpoints in {summary['out']}")
    return 0
