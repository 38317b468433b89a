"""BLAS thread control at the edge of the package: the pure core never touches process-wide settings.

The pose fit's matrix products are small (a chunk's points times a few dozen features): with several
BLAS threads on a busy machine they run several times slower, so the public pose functions
(:mod:`landmark_unify.face_models.fit`) hold numpy's OpenBLAS to one thread while they run.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def openblas_thread_api():
    """``(get, set)`` of the OpenBLAS bundled with numpy (found through ctypes), or None."""
    import ctypes
    import glob

    folder = os.path.dirname(np.__file__) + ".libs"
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None) or getattr(lib, f"openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None) or getattr(lib, f"openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                return get, put
    return None


class SingleThreadBLAS:
    """Context manager: numpy's OpenBLAS on one thread inside, as before outside (no-op where numpy's
    OpenBLAS is not found). The thread count is process-wide, so entries from several threads (a threaded
    dask worker) are counted: the first saves the count and the last restores it."""

    _lock = threading.Lock()
    _depth = 0
    _saved: int | None = None

    def __enter__(self):
        api = openblas_thread_api()
        if api is not None:
            cls = type(self)
            with cls._lock:
                if cls._depth == 0:
                    old = api[0]()
                    cls._saved = old if old >= 1 else None
                    api[1](1)
                cls._depth += 1
        return self

    def __exit__(self, *exc):
        api = openblas_thread_api()
        if api is not None:
            cls = type(self)
            with cls._lock:
                cls._depth -= 1
                if cls._depth == 0 and cls._saved is not None:
                    api[1](cls._saved)
        return False
