"""Training data from a manifest: standard crops, augmentation, and a memory-mapped crop cache.

Every face is cut with the standard crop of :mod:`pfpld_train.crop` (from its valid ground-truth
landmarks); augmentation is an affine perturbation of that crop in the 112-pixel output space plus
colour changes, so evaluation and prediction see the same framing the network was trained on.

Reproducibility: the random numbers of a sample depend only on ``(seed, epoch, row)``
(``numpy.random.default_rng([seed, epoch, row])``), and the shuffled order only on ``(seed, epoch)``
(:class:`EpochSampler`), so a batch is the same whatever the number of worker processes or the
process that builds it, and a resumed run sees the same data as an uninterrupted one.

Batches: :class:`FaceDataset` implements ``__getitems__`` (a list of ``(epoch, row)`` keys -> one
collated batch, colour operations vectorised over the batch); use it with :func:`make_loader`. A batch
is a dict of tensors:

- ``image``: ``(B, 112, 112, 3) uint8`` RGB, channels last (:func:`to_input` makes the network input on
  the device: NCHW float in [0, 1]; fewer bytes between processes and to the GPU than float NCHW);
- ``landmarks``: ``(B, 98, 2) float32`` crop units (see :mod:`pfpld_train.crop`), NaN where invalid;
- ``valid``: ``(B, 98) bool``; ``pose``: ``(B, 3) float32`` pitch, yaw, roll degrees, NaN if unknown;
- ``weight``: ``(B,) float32`` manifest weight; ``row``: ``(B,) int64`` row in the manifest.

The crop cache (:func:`build_cache`, ``pfpld_train cache``) stores, per face, an enlarged window
(``enlarge`` x the standard crop side, same centre) resized to ``size x size`` RGB in one raw
``uint8`` memory-mapped file, so later epochs decode no JPEG; augmentation then warps from the cached
window (the affine maps compose exactly).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.core.maps import finite_points

from .crop import CROP_SIZE, resize_matrix, standard_crop_params

__all__ = [
    "AugmentConfig",
    "CacheError",
    "CropCache",
    "EpochSampler",
    "FaceDataset",
    "build_cache",
    "make_loader",
    "pose_array",
    "split_by_image",
    "to_input",
]

CACHE_FORMAT = "pfpld_train.crop_cache/1"


class CacheError(LandmarkUnifyError):
    """A crop cache is missing, incomplete or does not match the manifest."""


class DataError(LandmarkUnifyError, ValueError):
    """A manifest cannot be used for training."""


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (probabilities in [0, 1]; angles in degrees; shift as a fraction of 112)."""

    rotation: float = 30.0
    rotation_p: float = 0.6
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.08
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale_p: float = 0.1
    erase_p: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(rotation_p=0.0, scale=(1.0, 1.0), shift=0.0, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                   erase_p=0.0)


# --- manifest arrays ----------------------------------------------------------------------------------


def pose_array(df) -> np.ndarray:
    """``(N, 3) float32`` pitch, yaw, roll in degrees from a manifest DataFrame; NaN where unknown (all NaN
    when the columns are absent)."""
    if not all(c in df.columns for c in ("pitch", "yaw", "roll")):
        return np.full((len(df), 3), np.nan, np.float32)
    cols = [df[c].astype("float64").to_numpy(na_value=np.nan) for c in ("pitch", "yaw", "roll")]
    return np.stack(cols, 1).astype(np.float32) if len(df) else np.zeros((0, 3), np.float32)


@dataclass
class FaceArrays:
    """What training needs from a manifest, as arrays (``N`` faces)."""

    landmarks: np.ndarray  # (N, 98, 2) float32 image pixels, NaN where invalid
    valid: np.ndarray  # (N, 98) bool
    pose: np.ndarray  # (N, 3) float32 degrees, NaN where unknown
    weight: np.ndarray  # (N,) float32
    paths: list  # N image paths (Path or None)
    sample_ids: np.ndarray  # (N,) str
    image_keys: np.ndarray  # (N,) str: source + image path (split by image)

    @classmethod
    def from_manifest(cls, df) -> FaceArrays:
        from landmark_unify.manifest import image_paths, landmarks_array, valid_array

        n = len(df)
        weight = df["weight"].to_numpy(np.float32) if "weight" in df.columns else np.ones(n, np.float32)
        keys = (df["source"].astype(str) + "/" + df["image_path"].astype(str)).to_numpy(str)
        return cls(
            landmarks=landmarks_array(df), valid=valid_array(df), pose=pose_array(df),
            weight=weight, paths=image_paths(df), sample_ids=df["sample_id"].to_numpy(str), image_keys=keys,
        )

    @property
    def usable(self) -> np.ndarray:
        """``(N, 98) bool``: the point is marked valid and both its coordinates are finite."""
        return self.valid & finite_points(self.landmarks)

    def subset(self, rows: np.ndarray) -> FaceArrays:
        rows = np.asarray(rows)
        return FaceArrays(self.landmarks[rows], self.valid[rows], self.pose[rows], self.weight[rows],
                          [self.paths[i] for i in rows], self.sample_ids[rows], self.image_keys[rows])

    def __len__(self) -> int:
        return len(self.weight)


def split_by_image(keys: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (train, val) so that all faces of one image land on the same side.

    ``fraction`` of the distinct images (at least one, at most all but one) go to validation, chosen by a
    seeded permutation. Returns sorted row indices.
    """
    if not 0 < fraction < 1:
        raise DataError(f"val fraction must be in (0, 1), got {fraction}")
    keys = np.asarray(keys, dtype=str)
    uniq, inverse = np.unique(keys, return_inverse=True)
    if len(uniq) < 2:
        raise DataError(f"need at least 2 distinct images to split, found {len(uniq)}")
    n_val = min(max(1, round(fraction * len(uniq))), len(uniq) - 1)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    is_val = np.zeros(len(uniq), bool)
    is_val[perm[:n_val]] = True
    rows_val = np.flatnonzero(is_val[inverse])
    rows_train = np.flatnonzero(~is_val[inverse])
    return rows_train, rows_val


# --- crop cache ---------------------------------------------------------------------------------------


def enlarged_windows(params: np.ndarray, enlarge: float) -> np.ndarray:
    """``(N, 3) float64`` ``x0, y0, side`` of the window ``enlarge`` x the standard crop, same centre."""
    p = np.asarray(params, np.float64)
    side = np.round(p[:, 2] * enlarge)
    centre = p[:, :2] + p[:, 2:3] / 2
    return np.concatenate([centre - side[:, None] / 2, side[:, None]], 1)


class CropCache:
    """A built crop cache folder, opened read-only (the memmap is opened lazily in each process).

    Files: ``index.json`` (format, size, enlarge, count), ``crops.u8`` (raw ``(N, size, size, 3)`` uint8
    RGB), ``windows.npy`` (``(N, 3)`` float64 window ``x0, y0, side`` in image pixels), ``sample_ids.npy``,
    ``ok.npy`` (``(N,)`` bool: the image was read).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.is_file():
            raise CacheError(f"{self.folder}: not a crop cache (no index.json); build one with `pfpld_train cache`")
        try:
            self.info = json.loads(index.read_text())
        except json.JSONDecodeError as exc:
            raise CacheError(f"{index}: not valid JSON: {exc}") from None
        if self.info.get("format") != CACHE_FORMAT:
            raise CacheError(f"{index}: format {self.info.get('format')!r}, expected {CACHE_FORMAT!r}")
        self.size = int(self.info["size"])
        self.count = int(self.info["count"])
        self.windows = np.load(self.folder / "windows.npy")
        self.sample_ids = np.load(self.folder / "sample_ids.npy")
        self.ok = np.load(self.folder / "ok.npy")
        expected = self.count * self.size * self.size * 3
        actual = (self.folder / "crops.u8").stat().st_size
        if actual != expected:
            raise CacheError(f"{self.folder}/crops.u8: {actual} bytes, expected {expected} (incomplete cache?)")
        self._row_of = {s: i for i, s in enumerate(self.sample_ids.tolist())}
        self._mm = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    @property
    def crops(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(self.folder / "crops.u8", np.uint8, "r", shape=(self.count, self.size, self.size, 3))
        return self._mm

    def rows_for(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Cache row of every sample id; :class:`CacheError` listing the ids that are missing."""
        rows = [self._row_of.get(s, -1) for s in sample_ids]
        missing = [s for s, r in zip(sample_ids, rows) if r < 0]
        if missing:
            raise CacheError(f"{self.folder}: {len(missing)} sample(s) not in the cache, e.g. {missing[:3]}; "
                             "rebuild it for this manifest")
        return np.asarray(rows, np.int64)


def _cache_worker(args) -> tuple[list[int], list[str]]:
    folder, size, count, jobs = args
    import cv2

    cv2.setNumThreads(1)
    mm = np.memmap(Path(folder) / "crops.u8", np.uint8, "r+", shape=(count, size, size, 3))
    done, bad = [], []
    for path, rows, windows in jobs:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None and Path(path).is_file() else None
        if img is None:
            bad.append(str(path))
            continue
        for r, w in zip(rows, windows):
            m = resize_matrix(w, size)
            crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            mm[r] = crop[..., ::-1]
            done.append(r)
    mm.flush()
    return done, bad


def build_cache(
    df,
    folder: str | os.PathLike,
    size: int = 176,
    enlarge: float = 1.5,
    workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Build a crop cache for the manifest DataFrame ``df`` into ``folder`` (written atomically).

    Faces are grouped by image, so each image is decoded once. Faces whose image is missing or unreadable
    are marked ``ok = False`` and counted (a dataset over the cache refuses them by name).
    Returns the ``index.json`` dict.
    """
    from multiprocessing import get_context

    from tqdm import tqdm

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CacheError(f"{folder}: already exists (pass overwrite=True / --overwrite)")
    if size < CROP_SIZE // 2 or not 1 <= enlarge < math.inf:
        raise CacheError(f"size must be >= {CROP_SIZE // 2} and enlarge a finite number >= 1; got {size}, {enlarge}")
    faces = FaceArrays.from_manifest(df)
    usable = faces.usable
    has = usable.any(1)
    params = np.zeros((len(faces), 3), np.int64)
    if has.any():
        params[has] = standard_crop_params(faces.landmarks[has], usable[has])
    windows = enlarged_windows(params, enlarge)
    n = len(faces)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with open(tmp / "crops.u8", "wb") as f:
        f.truncate(n * size * size * 3)
    by_image: dict[str, list[int]] = {}
    for i in np.flatnonzero(has):
        by_image.setdefault(str(faces.paths[i]), []).append(int(i))
    items = sorted(by_image.items())
    chunk = max(1, min(64, len(items) // max(1, 4 * workers) or 1))
    jobs = []
    for s in range(0, len(items), chunk):
        part = [(None if p == "None" else p, rows, windows[rows]) for p, rows in items[s : s + chunk]]
        jobs.append((str(tmp), size, n, part))
    ok = np.zeros(n, bool)
    bad: list[str] = []
    bar = tqdm(total=int(has.sum()), desc="cache", unit="face", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            for done, b in pool.imap_unordered(_cache_worker, jobs):
                ok[done] = True
                bad += b
                bar.update(len(done) + sum(len(by_image[x]) for x in b))
    else:
        for job in jobs:
            done, b = _cache_worker(job)
            ok[done] = True
            bad += b
            bar.update(len(done) + sum(len(by_image[x]) for x in b))
    bar.close()
    np.save(tmp / "windows.npy", windows)
    np.save(tmp / "sample_ids.npy", faces.sample_ids)
    np.save(tmp / "ok.npy", ok)
    info = {
        "format": CACHE_FORMAT, "count": n, "size": size, "enlarge": enlarge, "crop_size": CROP_SIZE,
        "cached": int(ok.sum()), "no_valid_point": int((~has).sum()), "unreadable_images": len(bad),
        "unreadable_examples": sorted(bad)[:5], "manifest": df.attrs.get("path"),
    }
    (tmp / "index.json").write_text(json.dumps(info, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return info


# --- dataset ------------------------------------------------------------------------------------------


class EpochSampler:
    """Yields ``(epoch, row)`` keys: a seeded permutation per epoch (or the identity if not shuffling).

    Call :meth:`set_epoch` before iterating. ``start`` skips that many keys (resuming mid-epoch).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for r in self.order(self.epoch)[self.start :]:
            yield (self.epoch, int(r))

    def __len__(self) -> int:
        return self.n - self.start


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
        from landmark_unify.core.layouts import get_layout

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
        self.params = standard_crop_params(self.landmarks, self.valid)
        self.cache = cache
        self.cache_rows = crow[self.rows] if crow is not None else None
        self.flip = np.asarray(get_layout("wflw98").flip_indices, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    # one sample's geometry ------------------------------------------------------------------------------
    def _geometry(self, rng: np.random.Generator, i: int) -> tuple[np.ndarray, bool]:
        """``(3, 3)`` affine image -> 112 output pixels, and whether the sample is flipped."""
        a = self.augment
        base = np.vstack([resize_matrix(self.params[i]), [0.0, 0.0, 1.0]])
        c = (CROP_SIZE - 1) / 2
        theta = math.radians(rng.uniform(-a.rotation, a.rotation)) if rng.random() < a.rotation_p else 0.0
        s = rng.uniform(*a.scale)
        tx, ty = rng.uniform(-a.shift, a.shift, 2) * CROP_SIZE
        flipped = bool(rng.random() < a.flip_p)
        cos, sin = math.cos(theta) * s, math.sin(theta) * s
        t = np.array([[cos, -sin, c + tx - cos * c + sin * c], [sin, cos, c + ty - sin * c - cos * c], [0, 0, 1]])
        if flipped:
            t = np.array([[-1.0, 0, CROP_SIZE - 1], [0, 1, 0], [0, 0, 1]]) @ t
        return t @ base, flipped

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
        path = self.faces.paths[i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if Path(path).is_file() else None
        if img is None:
            raise DataError(f"{self.faces.paths[i]}: image not found or not decodable "
                            f"(sample {self.faces.sample_ids[i]})")
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
        pose = self.faces.pose[i].copy()
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
        """Colour jitter, grayscale and random erasing, in place on the uint8 batch.

        Brightness ``b``, contrast ``c`` (around the image's mean grey ``m``) and saturation ``s`` (blend
        with the grey image ``g``) compose to one affine map per image, applied in a single saturating
        OpenCV call: ``out = s*c*b * x + (1 - s)*c*b * g + (1 - c)*b*m``.
        """
        import cv2

        a = self.augment
        if a.jitter_p <= 0 and a.grayscale_p <= 0 and a.erase_p <= 0:
            return imgs
        for j, r in enumerate(rngs):
            jitter = r.random() < a.jitter_p
            fb, fc, fs = r.uniform(-1, 1, 3) * (a.brightness, a.contrast, a.saturation)
            gray_on = r.random() < a.grayscale_p
            erase_on = r.random() < a.erase_p
            area, aspect, pos, colour = r.uniform(*a.erase_area), r.uniform(0.5, 2.0), r.random(2), r.integers(0, 256, 3)
            img = imgs[j]
            if jitter:
                b, c, s = 1 + fb, 1 + fc, 1 + fs
                g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
                m = float(g.mean())
                g3 = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
                cv2.addWeighted(img, s * c * b, g3, (1 - s) * c * b, (1 - c) * b * m, dst=img)
            if gray_on:
                cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB, dst=img)
            if erase_on:
                h = min(max(int(round(math.sqrt(area * aspect) * CROP_SIZE)), 1), CROP_SIZE)
                w = min(max(int(round(math.sqrt(area / aspect) * CROP_SIZE)), 1), CROP_SIZE)
                y0 = int(pos[0] * (CROP_SIZE - h + 1))
                x0 = int(pos[1] * (CROP_SIZE - w + 1))
                img[y0 : y0 + h, x0 : x0 + w] = colour
        return imgs


def to_input(images, device, channels_last: bool = False):
    """``(B, 112, 112, 3) uint8`` batch -> ``(B, 3, 112, 112)`` float32 in [0, 1] on ``device``.

    The permuted view is channels-last in memory already; ``channels_last=False`` makes it contiguous NCHW.
    """
    import torch

    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _collate(batch):
    return batch


def _worker_init(_worker_id: int) -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(dataset: FaceDataset, batch_size: int, sampler: EpochSampler, workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False):
    """A ``torch.utils.data.DataLoader`` over ``dataset`` with the batched fetch and seeded keys."""
    from torch.utils.data import DataLoader

    kwargs = {}
    if workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _worker_init}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=_collate, pin_memory=pin_memory, drop_last=drop_last, **kwargs)
