"""Atomic file writes shared by every writer of the package: a temporary file in the target folder, then
``os.replace``; on any failure the temporary file is removed and the target is left as it was.

The written file gets the usual mode (``0o666`` less the umask), not the ``0o600`` of
:func:`tempfile.mkstemp`: manifests, sheets and reports are meant to be read by other users and tools.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it where the platform allows (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, *, make_parents: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write to; when the block ends without error it becomes
    ``path``, otherwise it is removed. Missing folders are created unless ``make_parents`` is False
    (then a missing folder raises FileNotFoundError)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; a file path is needed here", str(path))
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_jsonl_atomic(records: Iterable[dict], path: str | os.PathLike) -> Path:
    """One JSON object per line, keys sorted (deterministic)."""
    return write_text_atomic("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), path)


def write_sidecar(records: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """A JSONL sidecar of records (skipped, duplicates) beside an output: written atomically when there are
    records, removed (a stale one from an earlier run) when there are none. Returns the path written or None."""
    if not records:
        Path(path).unlink(missing_ok=True)
        return None
    return write_jsonl_atomic(records, path)


def write_png_atomic(img, path: str | os.PathLike) -> Path:
    """Encode an ``(H, W, 3)`` uint8 BGR image as PNG and write it atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    return write_bytes_atomic(buf.tobytes(), path)


def write_text_durable(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically, flushed to disk before the rename (for commit markers)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_overwrite(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], overwrite: bool = False,
                    what: str = "an input manifest") -> None:
    """Refuse to write ``output`` over one of ``inputs`` (the same file or folder, links resolved) unless
    ``overwrite``: the one check of every command that writes a manifest (or a picture) from inputs.
    Raises :class:`~landmark_unify.errors.LandmarkUnifyError` naming both."""
    from .errors import LandmarkUnifyError

    if overwrite or output is None:
        return
    out = Path(output)
    if not out.exists():
        return
    for p in inputs:
        p = Path(p)
        try:
            same = p.exists() and os.path.samefile(out, p)
        except OSError:
            same = False
        if same:
            raise LandmarkUnifyError(f"the output {out} is {what} ({p}); writing it would replace that input. "
                                     "Choose another output, or pass --overwrite to replace it")
