"""The trainer: Adam with warm-up + cosine schedule, AMP on CUDA, atomic checkpoints, exact resume.

Output folder (``cfg.out``):

- ``config.json``: the resolved configuration (every default filled in) and the data counts;
- ``metrics.csv``: one row per epoch (``epoch, step, lr, train_loss, train_landmark, train_pose,
  val_nme, val_failure_rate, val_auc, val_pose_mae, seconds``), NME figures as fractions;
- ``last.pt``: written atomically after every epoch, every ``checkpoint_every`` steps inside an epoch if set,
  and when ``max_steps`` stops a run mid-epoch;
  ``best.pt``: the epoch with the lowest validation NME;
- ``val.parquet``: the validation faces as a manifest (when split off with ``val_fraction``), so other
  models can be scored on exactly the same faces with ``pfpld_train evaluate``.

Checkpoints hold plain tensors, numbers, strings, lists and dicts only, and are read with
``torch.load(..., weights_only=True)``. ``resume`` restores the model, optimizer, schedule, AMP scaler,
epoch, position inside the epoch and random states; the data order and augmentation are functions of
``(seed, epoch, row)`` (:mod:`pfpld_train.data.dataset`), so a resumed run continues the same curve.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.io import write_text_atomic
from landmark_unify.manifest import read_manifest, write_manifest
from landmark_unify.outputs import current, owns, transactional
from landmark_unify.progress import Progress

from ..data.arrays import FaceArrays, split_by_image
from ..data.augmentation import AugmentConfig
from ..data.cache import CropCache
from ..data.crop import image_to_crop
from ..data.dataset import FaceDataset
from ..data.sampler import EpochSampler, make_loader, to_input
from ..evaluation.metrics import nme, pose_error_mean, pose_errors, summarize_nme
from ..models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from ..models.pfpld import PFPLD, pose_to_degrees
from .loss import LossConfig, pfpld_loss, point_weights

__all__ = ["RESUME_OVERRIDES", "TrainConfig", "TrainError", "fit", "mean_face_nme"]

METRIC_FIELDS = ("epoch", "step", "lr", "train_loss", "train_landmark", "train_pose", "val_nme",
                 "val_failure_rate", "val_auc", "val_pose_mae", "seconds")


class TrainError(LandmarkUnifyError):
    """The training run cannot start or resume."""


@dataclass
class TrainConfig:
    """Everything a run depends on. Learning rates are per Adam step; ``val_fraction`` splits by image."""

    manifest: str
    out: str
    val: str | None = None
    val_fraction: float | None = None
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-6
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"  # auto | off | bf16 | fp16 (CUDA only)
    workers: int = 2
    cache: str | None = None
    val_cache: str | None = None
    max_steps: int | None = None
    checkpoint_every: int | None = None  # also write last.pt every N steps inside an epoch
    channels_last: bool | None = None  # None: on for CUDA (2.3x faster with AMP on an H200), off on CPU
    progress: bool = True
    loss: dict = field(default_factory=lambda: LossConfig().to_dict())
    augment: dict = field(default_factory=lambda: AugmentConfig().to_dict())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --- schedule ------------------------------------------------------------------------------------------


class WarmupCosine:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_ratio`` at ``total``."""

    def __init__(self, optimizer, lr: float, total: int, warmup: int, min_ratio: float) -> None:
        self.optimizer, self.lr, self.total, self.warmup, self.min_ratio = optimizer, lr, max(1, total), warmup, min_ratio
        self.step_count = 0
        self._apply()

    def value(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.lr * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.value(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total": self.total, "warmup": self.warmup, "lr": self.lr,
                "min_ratio": self.min_ratio}

    def load_state_dict(self, d: dict) -> None:
        self.step_count = int(d["step_count"])
        self._apply()


# --- RNG state as plain data ---------------------------------------------------------------------------


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- helpers ---------------------------------------------------------------------------------------------


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and math.isnan(r[k])) else r[k])
                    for k in METRIC_FIELDS})
    write_text_atomic(buf.getvalue(), path)


def _mean_landmarks(ds: FaceDataset) -> np.ndarray:
    """``(98, 2)`` mean of the valid landmarks in crop units (standard crop); NaN where no face has the point."""
    c = image_to_crop(ds.landmarks, ds.params)
    return np.nanmean(np.where(ds.valid[..., None], c, np.nan), 0)


def mean_face_nme(train: FaceDataset, val: FaceDataset) -> float:
    """NME of predicting the mean training shape (crop units, standard crop) for every validation face."""
    va = image_to_crop(val.landmarks, val.params)
    pred = np.broadcast_to(_mean_landmarks(train), va.shape)
    return float(np.nanmean(nme(pred, va, val.valid)))


def _load_data(cfg: TrainConfig):
    df = read_manifest(cfg.manifest)
    faces = FaceArrays.from_manifest(df)
    if cfg.val and cfg.val_fraction:
        raise TrainError("give either val or val_fraction, not both")
    val_df = None
    if cfg.val:
        val_df = read_manifest(cfg.val)
        val_faces = FaceArrays.from_manifest(val_df)
        train_faces = faces
    elif cfg.val_fraction:
        tr, va = split_by_image(faces.image_keys, cfg.val_fraction, seed=cfg.seed)
        train_faces, val_faces = faces.subset(tr), faces.subset(va)
        val_df = df.iloc[va].reset_index(drop=True)
        val_df.attrs = dict(df.attrs)
        # Always (re)written, deterministic bytes: a file left by an earlier attempt never describes another split.
        write_manifest(val_df, Path(cfg.out) / "val.parquet", df.attrs.get("manifest", {}))
    else:
        train_faces, val_faces = faces, None
    cache = CropCache(cfg.cache) if cfg.cache else None
    val_cache = CropCache(cfg.val_cache) if cfg.val_cache else (cache if cfg.val_fraction else None)
    aug = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
    train_ds = FaceDataset(train_faces, aug, cache=cache, seed=cfg.seed)
    val_ds = FaceDataset(val_faces, AugmentConfig.none(), cache=val_cache, seed=cfg.seed) if val_faces else None
    return train_ds, val_ds


def _amp_dtype(cfg: TrainConfig, device):
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp != "auto":
        raise TrainError(f"amp must be auto, off, bf16 or fp16; got {cfg.amp!r}")
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def evaluate_dataset(model, ds: FaceDataset, device, batch_size: int, workers: int = 0, amp_dtype=None,
                     channels_last: bool = False) -> dict:
    """Validation figures on an un-augmented dataset: NME (crop units = image NME: the crop is a
    similarity), failure rate, AUC at 0.1, pose MAE (degrees, mean of the three angles)."""
    sampler = EpochSampler(len(ds), shuffle=False)
    loader = make_loader(ds, batch_size, sampler, workers=0 if len(ds) < 2000 else min(workers, 2))
    was = model.training
    model.eval()
    nmes, pose_err = [], []
    with torch.inference_mode():
        for batch in loader:
            x = to_input(batch["image"], device, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pose, lm = model(x)
            lm = lm.float().cpu().numpy().reshape(-1, 98, 2)
            gt = batch["landmarks"].numpy()
            nmes.append(nme(lm, gt, batch["valid"].numpy()))
            pt = batch["pose"].numpy()
            known = np.isfinite(pt).all(1)
            if known.any():
                pd = pose_to_degrees(pose.float()).cpu().numpy()
                pose_err.append(pose_errors(pd, pt))  # the count of `pfpld_train evaluate`: wrapped, 99-degree rule
    if was:
        model.train()
    s = summarize_nme(np.concatenate(nmes))
    s["pose_mae"] = pose_error_mean(np.concatenate(pose_err) if pose_err else [])
    return s


# --- the run ---------------------------------------------------------------------------------------------


def _check_config(cfg: TrainConfig) -> None:
    """:class:`TrainError` naming every field out of range (before anything is read or written)."""
    bad = [f"{k} must be >= 1, got {getattr(cfg, k)}" for k in ("epochs", "batch_size") if getattr(cfg, k) < 1]
    bad += [f"{k} must be >= 1, got {getattr(cfg, k)}" for k in ("max_steps", "checkpoint_every")
            if getattr(cfg, k) is not None and getattr(cfg, k) < 1]
    if cfg.workers < 0:
        bad.append(f"workers must be >= 0, got {cfg.workers}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        bad.append(f"lr must be a finite number > 0, got {cfg.lr}")
    bad += [f"{k} must be a finite number >= 0, got {getattr(cfg, k)}" for k in ("weight_decay", "warmup_epochs")
            if not (math.isfinite(getattr(cfg, k)) and getattr(cfg, k) >= 0)]
    if not 0 <= cfg.min_lr_ratio <= 1:
        bad.append(f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    if cfg.val_fraction is not None and not (math.isfinite(cfg.val_fraction) and 0 < cfg.val_fraction < 1):
        bad.append(f"val_fraction must be a number in (0, 1), got {cfg.val_fraction}")
    bad += _bad_numbers(cfg.loss, "loss", positive=("wing_w", "wing_epsilon"))
    bad += _bad_numbers(cfg.augment, "augment")
    if bad:
        raise TrainError("; ".join(bad))


def _bad_numbers(values: dict, what: str, positive: tuple[str, ...] = ()) -> list[str]:
    """Problems of the numbers of a loss / augmentation dict: each must be finite; weights (``*_weight``)
    and probabilities >= 0, the names in ``positive`` > 0 (``--eye-weight nan`` trained a NaN loss)."""
    bad = []
    for k, v in (values or {}).items():
        items = v if isinstance(v, (list, tuple)) else [v]
        nums = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if any(not math.isfinite(x) for x in nums):
            bad.append(f"{what}.{k} must be finite, got {v}")
        elif k in positive and any(x <= 0 for x in nums):
            bad.append(f"{what}.{k} must be > 0, got {v}")
        elif k.endswith("_p") and any(not 0 <= x <= 1 for x in nums):
            bad.append(f"{what}.{k} must be a probability in [0, 1], got {v}")
        elif k.endswith("weight") and any(x < 0 for x in nums):
            bad.append(f"{what}.{k} must be >= 0, got {v}")
    return bad


#: What may change when a run is resumed: how long, where and how fast it runs.
RESUME_OVERRIDES = ("epochs", "max_steps", "checkpoint_every", "workers", "device", "progress")


def _field(cfg: TrainConfig, key: str):
    """``cfg.key``, or an entry of the ``loss`` / ``augment`` dicts for ``"loss.eye_weight"``."""
    name, _, entry = key.partition(".")
    value = getattr(cfg, name)
    return value.get(entry) if entry else value


def _same_setting(key: str, a, b) -> bool:
    if key in ("manifest", "val", "cache", "val_cache") and a and b:
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def _resume_config(cfg: TrainConfig, out: Path, given, log) -> tuple[TrainConfig, dict]:
    """The saved configuration of the run in ``out`` (``last.pt``) with the given overrides, and the
    checkpoint. The run folder is where it is now: a moved run continues in its new place."""
    last = out / "last.pt"
    if not last.is_file():
        raise TrainError(f"{last}: nothing to resume")
    ckpt = load_checkpoint(last)
    if ckpt.get("format") != FORMAT:
        raise TrainError(f"{last}: not a training checkpoint of this trainer (format {ckpt.get('format')!r})")
    saved = TrainConfig.from_dict(ckpt["config"])
    if given is None:  # a library call: what differs from the defaults counts as given
        default = TrainConfig(manifest=cfg.manifest, out=cfg.out)
        given = {k for k in RESUME_OVERRIDES if getattr(cfg, k) != getattr(default, k)} | {"max_steps", "progress"}
    given = set(given)
    differ = [f"{k}: saved {_field(saved, k)!r}, given {_field(cfg, k)!r}" for k in sorted(given)
              if k not in RESUME_OVERRIDES and not _same_setting(k, _field(saved, k), _field(cfg, k))]
    if differ:
        raise TrainError(f"{last}: a resumed run keeps its configuration, but {'; '.join(differ)} "
                         f"(only {', '.join(RESUME_OVERRIDES)} may change); start a new run with another "
                         "out folder instead")
    for k in sorted(given & set(RESUME_OVERRIDES)):
        if k == "epochs" and cfg.epochs != saved.epochs:
            log(f"epochs {saved.epochs} -> {cfg.epochs}: the learning-rate schedule is stretched to the new "
                "length, so from here on the curve differs from the original run's")
        setattr(saved, k, getattr(cfg, k))
    saved.out = cfg.out  # never the folder the checkpoint was written in (the run may have moved)
    return saved, ckpt


def _new_config(cfg: TrainConfig, out: Path) -> TrainConfig:
    """A new run's configuration, its input paths absolute (``--resume`` works from any working folder).
    The run folder must be new, empty, or one this trainer wrote that holds no model."""
    if (out / "last.pt").exists():
        raise TrainError(f"{out} already holds a run (last.pt); pass --resume or choose another --out")
    if out.is_dir() and any(out.iterdir()):
        models = sorted(p.name for p in out.glob("*.pt"))
        if models:
            raise TrainError(f"{out} holds {', '.join(models)}; a new run would replace it. Choose another --out")
        if owns(out) is None:
            raise TrainError(f"{out} is a folder this trainer did not write; choose a new or empty --out")
    cfg = TrainConfig.from_dict(cfg.to_dict())
    for k in ("manifest", "val", "cache", "val_cache"):
        if getattr(cfg, k):
            setattr(cfg, k, str(Path(getattr(cfg, k)).resolve()))
    return cfg


@dataclass
class _Run:
    """Everything one training run works with (built by :func:`_build_run`)."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    amp_dtype: object
    train_ds: FaceDataset
    val_ds: FaceDataset | None
    model: PFPLD
    opt: torch.optim.Optimizer
    sched: WarmupCosine
    scaler: object
    loss_cfg: LossConfig
    pw: torch.Tensor
    steps_per_epoch: int
    loader: object
    sampler: EpochSampler
    info: dict
    pose_trained: bool
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best: float = float("inf")
    history: list = field(default_factory=list)

    def state(self, ep: int, bie: int) -> dict:
        return {
            "format": FORMAT, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": ep, "batch_in_epoch": bie, "step": self.step, "best_nme": self.best, "history": self.history,
            "rng": _rng_state(), "config": self.cfg.to_dict(), "pose_trained": self.pose_trained,
        }


def _build_run(cfg: TrainConfig, out: Path, ckpt: dict | None, log) -> _Run:
    """Seeds, device, data, model, optimiser and schedule; restored from ``ckpt`` when resuming;
    ``config.json`` written and the run described in the log."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda requested but CUDA is not available")
    amp_dtype = _amp_dtype(cfg, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.channels_last is None:
        cfg.channels_last = device.type == "cuda"

    train_ds, val_ds = _load_data(cfg)
    n_train = len(train_ds)
    drop_last = n_train >= cfg.batch_size
    steps_per_epoch = n_train // cfg.batch_size if drop_last else 1
    total = steps_per_epoch * cfg.epochs

    model = PFPLD().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = WarmupCosine(opt, cfg.lr, total, int(round(cfg.warmup_epochs * steps_per_epoch)), cfg.min_lr_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_cfg = LossConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.loss.items()})
    pw = point_weights(loss_cfg, device)

    epoch, batch_in_epoch, step, best, history = 0, 0, 0, float("inf"), []
    if ckpt is None:
        # Start the landmark head at the mean training shape (crop units): faster, steadier first epochs.
        mean = np.nan_to_num(_mean_landmarks(train_ds), nan=0.5)
        with torch.no_grad():
            model.fc.bias.copy_(torch.from_numpy(mean.reshape(-1).astype(np.float32)))
    else:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, batch_in_epoch, step = int(ckpt["epoch"]), int(ckpt["batch_in_epoch"]), int(ckpt["step"])
        best, history = float(ckpt["best_nme"]), list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        _write_metrics(out / "metrics.csv", history)
        log(f"resumed {out}/last.pt at epoch {epoch}, batch {batch_in_epoch}, step {step}")

    posed = int(np.isfinite(train_ds.faces.pose).all(1).sum())
    pose_trained = posed > 0 if ckpt is None else bool(ckpt.get("pose_trained", posed > 0))
    info = {"train_faces": n_train, "train_faces_with_pose": posed, "pose_trained": pose_trained,
            "val_faces": len(val_ds) if val_ds else 0,
            "dropped_train": train_ds.dropped, "dropped_val": val_ds.dropped if val_ds else None,
            "steps_per_epoch": steps_per_epoch, "total_steps": total,
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
            "mean_face_val_nme": mean_face_nme(train_ds, val_ds) if val_ds else None}
    if info["mean_face_val_nme"] is not None and not math.isfinite(info["mean_face_val_nme"]):
        info["mean_face_val_nme"] = None  # no validation face with both eye corners: nothing to normalise by
    write_text_atomic(json.dumps({"config": cfg.to_dict(), "data": info}, indent=2) + "\n", out / "config.json")
    _log_run(log, info, device, train_ds, val_ds)

    sampler = EpochSampler(n_train, seed=cfg.seed)
    loader = make_loader(train_ds, cfg.batch_size, sampler, workers=cfg.workers,
                         pin_memory=device.type == "cuda", drop_last=drop_last)
    return _Run(cfg, out, device, amp_dtype, train_ds, val_ds, model, opt, sched, scaler, loss_cfg, pw,
                steps_per_epoch, loader, sampler, info, pose_trained, epoch, batch_in_epoch, step, best, history)


def _log_run(log, info: dict, device, train_ds: FaceDataset, val_ds: FaceDataset | None) -> None:
    log(f"train {info['train_faces']} faces, val {info['val_faces']} faces, {info['steps_per_epoch']} steps/epoch, "
        f"device {device}, amp {info['amp']}")
    for name, d in (("train", train_ds.dropped), ("val", val_ds.dropped if val_ds else None)):
        if d and any(d.values()):
            log(f"left out of {name}: {d['no_image']} faces without an image file, "
                f"{d['no_valid_point']} without a valid point")
    if info["mean_face_val_nme"] is not None:
        log(f"mean-face baseline: val NME {100 * info['mean_face_val_nme']:.2f} %")
    if not info["pose_trained"]:
        log("no training face has a pose: the pose branch is not trained. The checkpoints record it "
            "(pose_trained: false); evaluate, predict, the overlays and export leave the pose out. Fit poses "
            "with `landmark_unify relabel-pose` first to train it")


def _train_epoch(run: _Run, partial_sums, log) -> tuple[list[float], int, bool]:
    """One epoch (from ``run.batch_in_epoch`` on): the running sums (loss, landmark part, pose part,
    batches with a pose), the batches done and whether ``max_steps`` stopped it inside the epoch (a
    checkpoint of the position is then written)."""
    cfg, device = run.cfg, run.device
    run.sampler.set_epoch(run.epoch, start=run.batch_in_epoch * cfg.batch_size)
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    if partial_sums is not None and run.batch_in_epoch:
        part = torch.as_tensor(partial_sums, dtype=torch.float64, device=device)
        sums[: len(part)] += part
    n_batches = run.batch_in_epoch
    bar = Progress(total=run.steps_per_epoch, initial=run.batch_in_epoch, desc=f"epoch {run.epoch + 1}/{cfg.epochs}",
                   unit="batches", enabled=cfg.progress)
    stopped = False
    try:
        for batch in run.loader:
            x = to_input(batch["image"], device, cfg.channels_last)
            tgt = batch["landmarks"].to(device, non_blocking=True)
            valid = batch["valid"].to(device, non_blocking=True)
            pose_t = batch["pose"].to(device, non_blocking=True)
            w = batch["weight"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
                pose, lm = run.model(x)
            loss, parts = pfpld_loss(lm.float(), pose.float(), tgt, valid, pose_t, w, run.loss_cfg, run.pw)
            run.opt.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.opt)
            run.scaler.update()
            run.sched.step()
            run.step += 1
            n_batches += 1
            has_pose = torch.isfinite(parts["pose"])
            sums += torch.stack([loss.detach().double(), parts["landmark"].double(),
                                 torch.nan_to_num(parts["pose"].double()), has_pose.double()])
            if cfg.progress and (n_batches % 10 == 0 or n_batches == run.steps_per_epoch):
                bar.set_postfix_str(f"loss={float(sums[0]) / max(1, n_batches):.3f}, lr={run.sched.value(run.step):.2e}")
            bar.update(1)
            inside = n_batches < run.steps_per_epoch
            if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and inside:
                _save_position(run, n_batches, sums)
            if cfg.max_steps is not None and run.step >= cfg.max_steps:
                stopped = inside
                if stopped:
                    _save_position(run, n_batches, sums)
                    log(f"stopped at max_steps={cfg.max_steps} (epoch {run.epoch}, batch {n_batches}); "
                        f"--resume continues from here")
                break
    finally:
        bar.close()
    return sums.cpu().tolist(), n_batches, stopped


def _save_position(run: _Run, n_batches: int, sums) -> None:
    st = run.state(run.epoch, n_batches)
    st["partial"] = sums.cpu().tolist()
    save_checkpoint(st, run.out / "last.pt")


def _end_epoch(run: _Run, sums: list[float], n_batches: int, t0: float, log) -> None:
    """Validation, the epoch's metrics row, ``last.pt`` (and ``best.pt`` when improved), ``metrics.csv``."""
    cfg = run.cfg
    total_loss, total_lm, total_pose, pose_batches = sums
    row = {"epoch": run.epoch + 1, "step": run.step, "lr": run.sched.value(run.step),
           "train_loss": total_loss / max(1, n_batches), "train_landmark": total_lm / max(1, n_batches),
           # Mean over the batches that had a pose; NaN (empty in metrics.csv) when no face had one.
           "train_pose": total_pose / pose_batches if pose_batches else float("nan")}
    if run.val_ds is not None:
        v = evaluate_dataset(run.model, run.val_ds, run.device, cfg.batch_size, cfg.workers, run.amp_dtype,
                             cfg.channels_last)
        row.update(val_nme=v["nme"], val_failure_rate=v["failure_rate"], val_auc=v["auc"], val_pose_mae=v["pose_mae"])
    row["seconds"] = round(time.time() - t0, 3)
    run.history.append(row)
    run.epoch += 1
    run.batch_in_epoch = 0
    improved = run.val_ds is not None and row["val_nme"] < run.best
    if improved:
        run.best = row["val_nme"]
    st = run.state(run.epoch, 0)
    save_checkpoint(st, run.out / "last.pt")
    if improved or run.val_ds is None:
        save_checkpoint(st, run.out / "best.pt")
    _write_metrics(run.out / "metrics.csv", run.history)
    msg = f"epoch {run.epoch}/{cfg.epochs} loss {row['train_loss']:.4f}"
    if run.val_ds is not None:
        msg += f" val NME {100 * row['val_nme']:.2f} % FR {100 * row['val_failure_rate']:.1f} %"
    log(msg)


@transactional
def fit(cfg: TrainConfig, resume: bool = False, log=print, given=None) -> dict:
    """Train (or resume) a run; returns the final summary dict (also in ``config.json``'s folder).

    On ``resume`` the configuration saved in ``cfg.out/last.pt`` is used. ``given`` names the fields of
    ``cfg`` that the caller set (``"loss.eye_weight"`` for an entry of ``loss``; the command line passes what
    it was given): those in :data:`RESUME_OVERRIDES` replace the saved values, any other must equal the
    saved one (:class:`TrainError` otherwise). Without ``given``, the :data:`RESUME_OVERRIDES` fields of
    ``cfg`` that differ from :class:`TrainConfig`'s defaults are taken (``max_steps`` and ``progress``
    always), so ``fit(TrainConfig(manifest, out), resume=True)`` continues the run as it was. A new
    ``epochs`` stretches the learning-rate schedule to the new length (logged).

    The run folder is declared to :mod:`landmark_unify.outputs` (a folder this trainer marks as its own):
    a new run needs a new or empty folder (or one of its own without a model); it never writes into another
    folder, nor over an input. When the run fails or is interrupted, the checkpoints written so far are kept
    (with the files beside them); a new folder without a checkpoint is removed.
    """
    _check_config(cfg)
    out = Path(cfg.out)
    if resume:
        cfg, ckpt = _resume_config(cfg, out, given, log)
    else:
        cfg, ckpt = _new_config(cfg, out), None
    inputs = [getattr(cfg, k) for k in ("manifest", "val", "cache", "val_cache") if getattr(cfg, k)]
    current().folder(out, inputs=inputs, keep="*.pt", reuse=True, what="an input of the run",  # checked above
                     note=f"continue with: pfpld_train fit -o {out} --resume")
    run = _build_run(cfg, out, ckpt, log)
    run.model.train()
    partial_sums = ckpt.get("partial") if ckpt is not None else None
    while run.epoch < cfg.epochs:
        t0 = time.time()
        sums, n_batches, stopped = _train_epoch(run, partial_sums, log)
        if stopped:
            break
        partial_sums = None
        _end_epoch(run, sums, n_batches, t0, log)
        if cfg.max_steps is not None and run.step >= cfg.max_steps:
            break
    best = run.best
    return {"out": str(out), "epochs_done": run.epoch, "step": run.step,
            "best_val_nme": best if best < float("inf") else None, "history": run.history, "data": run.info}
