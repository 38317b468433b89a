"""The crop cache (:func:`build_cache`, ``pfpld_train cache``): per face, an enlarged window (``enlarge`` x
the standard crop side, same centre) resized to ``size x size`` RGB in one raw ``uint8`` memory-mapped
file, so later epochs decode no JPEG; augmentation then warps from the cached window (the affine maps
compose exactly).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.images import ImageError, read_image
from landmark_unify.io import write_text_atomic
from landmark_unify.outputs import current, transactional
from landmark_unify.progress import Progress

from .arrays import FaceArrays
from .crop import CROP_SIZE, face_crop_params, resize_matrix

__all__ = ["CACHE_FORMAT", "CacheError", "CropCache", "build_cache", "enlarged_windows"]

CACHE_FORMAT = "pfpld_train.crop_cache/2"  # 2: windows from face_crop_params (completed points)


class CacheError(LandmarkUnifyError):
    """A crop cache is missing, incomplete or does not match the manifest."""


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
        try:
            img = read_image(path, channel_order="bgr") if path is not None else None
        except ImageError:
            img = None
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


#: The largest cached window side, in pixels (3 MiB a face): a window 9x the crop's side holds any augmentation.
MAX_CACHE_SIZE = 1024
#: The largest ``enlarge`` (cached window side over the standard crop side).
MAX_ENLARGE = 4.0


def cache_bytes(count: int, size: int) -> int:
    """Bytes of the crop array of ``count`` faces at ``size`` x ``size`` RGB."""
    return int(count) * int(size) * int(size) * 3


def check_cache_space(folder: str | os.PathLike, count: int, size: int) -> None:
    """CacheError unless the disk holding ``folder`` has room for the crop array it would allocate (checked
    before anything is created: a sparse file of that size would otherwise be left behind)."""
    need = cache_bytes(count, size)
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise CacheError(f"{folder}: {count} faces at {size}x{size} RGB need {need / 2**30:.1f} GiB; "
                         f"{free / 2**30:.1f} GiB free there. Use a smaller --size or another disk")


def _ignore_interrupts() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops them and removes the staged cache; SIGTERM
    (the pool stopping them) ends them as usual."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _allocate(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` of disk reserved for the crops. Where the file system can reserve the
    space (``posix_fallocate``), a disk too small is an error now, before any work; a sparse file would fail
    later, when a worker writes into it (SIGBUS in that worker)."""
    with open(path, "wb") as f:
        try:
            if nbytes and hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(f.fileno(), 0, nbytes)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
            f.truncate(nbytes)
        except OSError as exc:
            raise CacheError(f"{path}: cannot reserve {nbytes / 2**20:.1f} MiB for the crops: "
                             f"{exc.strerror or exc}") from None


@contextlib.contextmanager
def _interrupts_noted():
    """While the pool's workers are forked, a Ctrl-C only is noted (the list yielded), not raised: raised in a
    child between its fork and its initializer, it would stop that worker inside the fork's own clean-up (a
    traceback on stderr); raised in this process, in the middle of making the pool. The caller raises it."""
    noted: list = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    old = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)


def _pool_results(workers: int, jobs: list):
    """``_cache_worker`` of every job on ``workers`` processes, results as they complete. A worker that dies
    (killed, out of memory, a bus error writing the crops) ends the run with a CacheError at once: the pool
    notices the death, where a ``multiprocessing.Pool`` waits forever for the lost job."""
    ctx = get_context("spawn" if os.name == "nt" else "fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_ignore_interrupts) as pool:
        pending = set()
        with _interrupts_noted() as noted:  # the workers are forked at the first submit
            for job in jobs:
                pending.add(pool.submit(_cache_worker, job))
        if noted:
            for fut in pending:
                fut.cancel()
            raise KeyboardInterrupt
        received = 0
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    result = fut.result()
                    received += 1
                    yield result
        except BrokenProcessPool:
            raise CacheError(f"a cache worker process died ({len(jobs) - received} of {len(jobs)} jobs not done): "
                             "killed, out of memory, or the disk is full; nothing was written") from None
        finally:
            for fut in pending:
                fut.cancel()


@transactional
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

    The folder is declared to :mod:`landmark_unify.outputs`: written into a staging folder beside it and
    renamed into place at the end (nothing is left on a failure or Ctrl-C); an existing cache is replaced
    only with ``overwrite``; a folder this project did not write, or one holding the manifest, never.
    Faces are grouped by image, so each image is decoded once. Faces whose image is missing or unreadable
    are marked ``ok = False`` and counted (a dataset over the cache refuses them by name).
    Returns the ``index.json`` dict.
    """
    folder = Path(folder)
    if not CROP_SIZE // 2 <= size <= MAX_CACHE_SIZE or not 1 <= enlarge <= MAX_ENLARGE:
        raise CacheError(f"size must be {CROP_SIZE // 2} to {MAX_CACHE_SIZE} pixels and enlarge 1 to {MAX_ENLARGE}; "
                         f"got {size}, {enlarge}")
    faces = FaceArrays.from_manifest(df)
    usable = faces.usable
    has = usable.any(1)
    params = np.zeros((len(faces), 3), np.int64)
    if has.any():
        params[has] = face_crop_params(faces.landmarks[has], usable[has])
    windows = enlarged_windows(params, enlarge)
    n = len(faces)
    check_cache_space(folder, n, size)
    inputs = [df.attrs["path"]] if df.attrs.get("path") else []
    tmp = current().folder(folder, inputs=inputs, overwrite=overwrite, what="the input manifest").staging
    _allocate(tmp / "crops.u8", n * size * size * 3)
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
    bar = Progress(total=int(has.sum()), desc="cache", unit="faces", enabled=progress)
    results = _pool_results(workers, jobs) if workers > 1 and len(jobs) > 1 else map(_cache_worker, jobs)
    for done, b in results:  # a dead worker, a full disk, Ctrl-C: the output layer removes the staged cache
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
    write_text_atomic(json.dumps(info, indent=2) + "\n", tmp / "index.json")
    return info
