"""Training data from a manifest: standard crops, augmentation, and a memory-mapped crop cache.

Every face is cut with the standard crop of :mod:`pfpld_train.data.crop` (from its valid ground-truth
landmarks); augmentation is an affine perturbation of that crop in the 112-pixel output space plus
colour changes, so evaluation and prediction see the same framing the network was trained on.

Reproducibility: the random numbers of a sample depend only on ``(seed, epoch, row)``
(``numpy.random.default_rng([seed, epoch, row])``), and the shuffled order only on ``(seed, epoch)``
(:class:`~pfpld_train.data.sampler.EpochSampler`), so a batch is the same whatever the number of worker processes or the
process that builds it, and a resumed run sees the same data as an uninterrupted one.

Batches: :class:`FaceDataset` implements ``__getitems__`` (a list of ``(epoch, row)`` keys -> one
collated batch, colour operations vectorised over the batch); use it with :func:`~pfpld_train.data.sampler.make_loader`. A batch
is a dict of tensors:

- ``image``: ``(B, 112, 112, 3) uint8`` RGB, channels last (:func:`~pfpld_train.data.sampler.to_input` makes the network input on
  the device: NCHW float in [0, 1]; fewer bytes between processes and to the GPU than float NCHW);
- ``landmarks``: ``(B, 98, 2) float32`` crop units (see :mod:`pfpld_train.data.crop`), NaN where invalid;
- ``valid``: ``(B, 98) bool``; ``pose``: ``(B, 3) float32`` pitch, yaw, roll degrees, NaN if unknown, transformed
  with the image (:func:`~pfpld_train.data.augmentation.rotate_pose` for an in-plane rotation, yaw and roll
  negated for a flip);
- ``weight``: ``(B,) float32`` manifest weight; ``row``: ``(B,) int64`` row in the manifest.

The crop cache (:func:`~pfpld_train.data.cache.build_cache`, ``pfpld_train cache``) stores, per face, an enlarged window
(``enlarge`` x the standard crop side, same centre) resized to ``size x size`` RGB in one raw
``uint8`` memory-mapped file, so later epochs decode no JPEG; augmentation then warps from the cached
window (the affine maps compose exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.images import ImageError, read_image

from . import augmentation
from .arrays import DataError, FaceArrays
from .augmentation import AugmentConfig
from .cache import CropCache
from .crop import CROP_SIZE, face_crop_params, resize_matrix

__all__ = ["FaceDataset"]


class FaceDataset:
    """Standard-crop faces of a manifest with seeded augmentation (see the module docstring).

    Args:
        faces: :class:`FaceArrays` (``FaceArrays.from_manifest(read_manifest(path))``).
        augment: :class:`AugmentConfig` (``AugmentConfig.none()`` for validation).
        cache: an optional :class:`CropCache` built for these samples (matched by ``sample_id``).
        seed: base seed of the augmentation.

    Faces with no valid landmark or whose image file is missing (not in the cache, when one is given)
    are left out and counted in ``self.dropped`` (``{"no_valid_point": n, "no_image": n}``);
    ``self.rows`` maps dataset index to row.
    """

    def __init__(self, faces: FaceArrays, augment: AugmentConfig | None = None,
                 cache: CropCache | None = None, seed: int = 0) -> None:
        self.augment = augment if augment is not None else AugmentConfig()
        self.seed = int(seed)
        usable = faces.usable
        keep = usable.any(1)
        self.dropped = {"no_valid_point": int((~keep).sum()), "no_image": 0}
        crow = None
        if cache is not None:
            crow = np.full(len(faces), -1, np.int64)
            crow[keep] = cache.rows_for(faces.sample_ids[keep])
            bad = keep & ~np.where(crow >= 0, cache.ok[np.maximum(crow, 0)], False)
            self.dropped["no_image"] = int(bad.sum())
            keep &= ~bad
        else:
            # One stat per distinct image: a missing file is counted here, not found mid-epoch.
            exists = {str(p): Path(p).is_file() for p in {str(p) for p in faces.paths if p is not None}}
            no_image = np.array([p is None or not exists[str(p)] for p in faces.paths], bool)
            self.dropped["no_image"] = int((keep & no_image).sum())
            keep &= ~no_image
        self.rows = np.flatnonzero(keep)
        if not len(self.rows):
            raise DataError("no usable face (every face lacks valid landmarks or an image)")
        f = faces.subset(self.rows)
        self.faces = f
        self.landmarks = np.where(usable[self.rows][..., None], f.landmarks, np.nan).astype(np.float32)
        self.valid = usable[self.rows]
        self.params = face_crop_params(self.landmarks, self.valid)  # same frame whatever points are valid
        self.cache = cache
        self.cache_rows = crow[self.rows] if crow is not None else None
        self.flip = np.asarray(get_layout("wflw98").flip_indices, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    # one sample's geometry ------------------------------------------------------------------------------
    def _geometry(self, rng: np.random.Generator, i: int) -> tuple[np.ndarray, bool]:
        """``(3, 3)`` affine image -> 112 output pixels, and whether the sample is flipped."""
        return augmentation.geometry(rng, self.params[i], self.augment)

    def _pixels(self, i: int, m: np.ndarray) -> np.ndarray:
        """``(112, 112, 3)`` uint8 RGB through the image -> output affine ``m`` (3x3)."""
        import cv2

        if self.cache is not None:
            r = self.cache_rows[i]
            src = self.cache.crops[r]
            mc = np.vstack([resize_matrix(self.cache.windows[r], self.cache.size), [0.0, 0.0, 1.0]])
            full = m @ np.linalg.inv(mc)
            return cv2.warpAffine(src, full[:2], (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
        try:
            img = read_image(self.faces.paths[i], channel_order="bgr")
        except ImageError as exc:
            raise DataError(f"{exc} (sample {self.faces.sample_ids[i]})") from None
        out = cv2.warpAffine(img, m[:2], (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT)
        return out[..., ::-1]

    def _targets(self, i: int, m: np.ndarray, flipped: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks in crop units, valid, pose for sample ``i`` under ``m`` (3x3)."""
        k = CROP_SIZE / float(self.params[i, 2])
        pts = self.landmarks[i].astype(np.float64)
        u = pts @ m[:2, :2].T + m[:2, 2]
        # Output pixels -> crop units with the same convention as the un-augmented crop (p = (x - x0) / S).
        p = (u + 0.5 - 0.5 * k) / CROP_SIZE
        valid = self.valid[i]
        # the label follows the head: an in-plane rotation composes with R, then a flip mirrors it
        pose = augmentation.rotate_pose(self.faces.pose[i], augmentation.inplane_rotation(m, flipped))
        if flipped:
            p, valid = p[self.flip], valid[self.flip]
            pose[1:] = -pose[1:]
        return p.astype(np.float32), valid, pose

    # batches ----------------------------------------------------------------------------------------------
    def __getitem__(self, key) -> dict:
        return self.__getitems__([key])

    def __getitems__(self, keys: Sequence) -> dict:
        import torch

        keys = [(0, int(k)) if np.ndim(k) == 0 else (int(k[0]), int(k[1])) for k in keys]
        b = len(keys)
        imgs = np.empty((b, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        lms = np.empty((b, 98, 2), np.float32)
        valid = np.empty((b, 98), bool)
        pose = np.empty((b, 3), np.float32)
        rngs = []
        for j, (epoch, i) in enumerate(keys):
            rng = np.random.default_rng([self.seed, epoch, i])
            m, flipped = self._geometry(rng, i)
            imgs[j] = self._pixels(i, m)
            lms[j], valid[j], pose[j] = self._targets(i, m, flipped)
            rngs.append(rng)
        imgs = self._colour(imgs, rngs)
        rows = np.array([i for _, i in keys], np.int64)
        return {
            "image": torch.from_numpy(imgs),
            "landmarks": torch.from_numpy(np.where(valid[..., None], lms, np.float32(np.nan))),
            "valid": torch.from_numpy(valid),
            "pose": torch.from_numpy(pose),
            "weight": torch.from_numpy(self.faces.weight[rows].astype(np.float32)),
            "row": torch.from_numpy(self.rows[rows]),
        }

    def _colour(self, imgs: np.ndarray, rngs: list) -> np.ndarray:
        """Colour jitter, grayscale and random erasing, in place on the uint8 batch."""
        return augmentation.colour(imgs, rngs, self.augment)
