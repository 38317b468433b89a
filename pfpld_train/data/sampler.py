"""Seeded batch order (:class:`EpochSampler`) and the ``DataLoader`` over a :class:`FaceDataset`.

The shuffled order depends only on ``(seed, epoch)``, so a resumed run sees the same data as an
uninterrupted one, whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .arrays import DataError

__all__ = ["EpochSampler", "make_loader", "to_input"]


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


def make_loader(dataset, batch_size: int, sampler: EpochSampler, workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False):
    """A ``torch.utils.data.DataLoader`` over ``dataset`` with the batched fetch and seeded keys."""
    from torch.utils.data import DataLoader

    kwargs = {}
    if workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _worker_init}

    class Loader(DataLoader):
        """A loader whose dead worker is a :class:`~pfpld_train.data.arrays.DataError` with a message (torch
        notices the death and raises a bare RuntimeError)."""

        def __iter__(self):
            return _named_worker_death(super().__iter__())

    return Loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                  collate_fn=_collate, pin_memory=pin_memory, drop_last=drop_last, **kwargs)


def _named_worker_death(batches):
    try:
        yield from batches
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise DataError(f"a data loading worker process died ({str(exc).split('. ')[0]}): killed, out of memory, "
                        "or a bus error (a full disk, a damaged cache); nothing more was trained") from None
