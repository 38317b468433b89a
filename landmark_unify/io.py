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
import re
import shutil
import sys
import tempfile
import time
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
    remove_leftovers(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        publish(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


# --- the journal of the running command --------------------------------------------------------------------
#
# While a command runs, landmark_unify.outputs installs its transaction here: every file that atomic_path
# publishes, every sidecar removed and every dataset folder renamed into place is checked against the
# command's declared outputs and journaled, so that a failure or an interrupt rolls all of them back.

_journal = None


def set_journal(journal) -> None:
    """Install (or, with None, remove) the transaction of :mod:`landmark_unify.outputs`."""
    global _journal
    _journal = journal


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished temporary file ``tmp`` onto ``path`` (through the running command's journal)."""
    if _journal is None:
        os.replace(tmp, path)
    else:
        _journal.publish(str(tmp), Path(path))


def remove_output(path: str | os.PathLike) -> None:
    """Remove an earlier output file (a stale sidecar), through the running command's journal."""
    if _journal is None:
        Path(path).unlink(missing_ok=True)
    else:
        _journal.remove(Path(path))


def folder_published(path: str | os.PathLike, old: str | os.PathLike | None) -> bool:
    """A folder was renamed onto ``path``; ``old`` is the one it replaced (renamed aside). True when the
    running command's journal keeps ``old`` until the command ends (the caller must leave it)."""
    if _journal is None:
        return False
    return _journal.folder_published(Path(path), None if old is None else Path(old))


# --- leftovers of killed runs --------------------------------------------------------------------------------
#
# A run killed with SIGKILL (or a machine that went down) cannot clean up after itself: it leaves the
# temporary file of :func:`atomic_path` (``.NAME.<owner>.tmp``, ``.NAME.<owner>.tmp.final``) or the folders of
# a staged dataset (``.NAME.staging-<owner>``, ``.NAME.aborted-<owner>``, ``.NAME.old-<owner>``). The owner
# part names the host (a short hash) and the process id, so the next run writing NAME removes exactly the
# leftovers whose process is gone, and says so on stderr. Leftovers of another host are removed once
# older than a day; those of older versions (no owner part) once older than an hour.

_OWNER = re.compile(r"^(?P<tag>[0-9a-f]{6})-(?P<pid>\d+)-[0-9A-Za-z_]+$")
_LEGACY = re.compile(r"^(?:[a-z0-9_]{8}|[0-9a-f]{12})$")
OTHER_HOST_AGE = 24 * 3600.0
LEGACY_AGE = 3600.0


def owner_tag() -> str:
    """``HOSTTAG-PID``: the owner part of this process's temporary names."""
    import hashlib
    import socket

    return f"{hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]}-{os.getpid()}"


def owned_name(path: str | os.PathLike, kind: str) -> Path:
    """A fresh hidden sibling of ``path`` owned by this process: ``.NAME.KIND-HOSTTAG-PID-RANDOM``."""
    import uuid

    path = Path(path)
    return path.parent / f".{path.name}.{kind}-{owner_tag()}-{uuid.uuid4().hex[:8]}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _stale(owner: str, age: float) -> str | None:
    """Why a leftover with this owner part may be removed (its process is gone), or None."""
    m = _OWNER.match(owner)
    if m:
        if m["tag"] != owner_tag().split("-")[0]:
            return f"it is from another host and {age / 3600:.0f} h old" if age > OTHER_HOST_AGE else None
        pid = int(m["pid"])
        if pid == os.getpid():
            return None
        return f"process {pid} is gone" if _pid_gone(pid) else None
    if _LEGACY.match(owner):
        return f"it is {age / 3600:.1f} h old" if age > LEGACY_AGE else None
    return None


def remove_leftovers(path: str | os.PathLike, *, quiet: bool = False) -> list[Path]:
    """Remove the leftovers of killed runs that wrote ``path`` (see above) whose owner is gone; each
    removal is reported on stderr. Returns what was removed."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        rest = e.name[len(prefix):]
        kind = None
        for k in ("staging-", "aborted-", "old-"):
            if rest.startswith(k):
                kind, owner = k[:-1], rest[len(k):]
                break
        else:
            for suffix in (".tmp.final", ".tmp"):
                if rest.endswith(suffix):
                    kind, owner = "temporary file", rest[:-len(suffix)]
                    break
        if kind is None:
            continue
        try:
            age = now - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        why = _stale(owner, age)
        if why is None:
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            print(f"warning: cannot remove leftover {e.path} of an earlier run: {exc}", file=sys.stderr)
            continue
        removed.append(Path(e.path))
        if not quiet:
            print(f"removed leftover {e.path} of an earlier run that was stopped ({why})", file=sys.stderr)
    return removed


def restore_replaced(path: str | os.PathLike, complete=None) -> Path | None:
    """When ``path`` is missing and a killed run left the dataset it was replacing as ``.NAME.old-OWNER``
    (owner gone; ``complete(folder)`` true when given), rename that back to ``path`` (said on stderr).
    Returns what was restored, or None."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        return None
    prefix = f".{path.name}.old-"
    try:
        found = [e for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    now = time.time()
    found = [e for e in found if _stale(e.name[len(prefix):], now - e.stat(follow_symlinks=False).st_mtime)
             and (complete is None or complete(Path(e.path)))]
    if not found:
        return None
    newest = max(found, key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    os.rename(newest.path, path)
    print(f"restored {path} from {newest.path}, left by a run stopped while replacing it", file=sys.stderr)
    return path


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the platform
    or file system cannot, and nothing was changed."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


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
        remove_output(path)
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
    for p in inputs:
        p = Path(p)
        try:
            same = out.exists() and p.exists() and os.path.samefile(out, p)
            inside = p.is_dir() and out.resolve().is_relative_to(p.resolve()) and out.resolve() != p.resolve()
        except OSError:
            same = inside = False
        if same:
            raise LandmarkUnifyError(f"the output {out} is {what} ({p}); writing it would replace that input. "
                                     "Choose another output, or pass --overwrite to replace it")
        if inside:  # e.g. a file written into the folder of an input dataset: it would corrupt that dataset
            raise LandmarkUnifyError(f"the output {out} lies inside {what} ({p}); writing it would change that "
                                     "input. Choose another output, or pass --overwrite")

