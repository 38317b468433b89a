"""One door for every output of both CLIs: commands declare what they write, and this layer decides.

A command (or a library operation) opens :func:`writing` and declares each output before writing it:

- :meth:`Transaction.file`: a file (a manifest, a report, a picture, a model), written with the atomic writers
  of :mod:`landmark_unify.io`; its sidecars (``STEM.skipped.jsonl``, ``STEM.duplicates.jsonl``, ...) go with it;
- :meth:`Transaction.manifest`: a manifest output, a file or a dataset directory (staged by its writer);
- :meth:`Transaction.folder`: a folder of files (a report, predictions, an export, a crop cache), written
  into a hidden staging folder beside it and renamed into place at the end; ``keep=True`` (a training run)
  writes into the folder itself and keeps what it wrote when the run fails.

Each declaration is checked before anything is written:

- an output that is one of the inputs, lies inside an input folder, or would replace a folder that holds
  an input is refused (``--overwrite`` allows only the first two, never the last);
- an existing folder is replaced only when this project made it (the marker file :data:`MARKER` inside,
  listing what it wrote, and nothing else in it) and ``--overwrite`` is given; a folder of someone else's
  is never replaced or deleted, with or without ``--overwrite``;
- every file written while the transaction is open must lie inside a declared output (``-o``): a name
  that leads elsewhere (``--stem ../../x``) is an :class:`OutputError`;
- a second run writing the same output at the same time is refused (a lock file ``.NAME.lock`` beside it,
  held with ``flock`` for the length of the run and removed at its end).

Files published during the transaction are journaled (the previous version kept as ``.NAME.old-OWNER``): on
any failure or interrupt (``BaseException``) the journal is rolled back, staging folders are removed and the
outputs are as they were. On success the staged folders are renamed into place, the old versions removed.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import io as _io
from .errors import LandmarkUnifyError

#: The marker file of a folder this project wrote (a JSON object: the command and the files written).
MARKER = ".landmark_unify-output.json"

__all__ = ["MARKER", "OutputError", "StagedFolder", "Terminated", "Transaction", "active", "check_output", "owns",
           "terminate_as_exception", "transactional", "current", "writing"]


class OutputError(LandmarkUnifyError):
    """An output that must not be written: an input, someone else's folder, outside ``-o``, or busy."""


class Terminated(LandmarkUnifyError):
    """The command received SIGTERM: it was aborted and its outputs were rolled back."""


# --- checks --------------------------------------------------------------------------------------------------

def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return p.absolute()


def check_output(output: str | os.PathLike, inputs: Iterable, overwrite: bool = False, *,
                 what: str = "an input", replaces_folder: bool = False) -> None:
    """Refuse ``output`` when it is one of ``inputs`` or lies inside an input folder (unless ``overwrite``),
    and, when the output is a folder that would be replaced (``replaces_folder``), when an input lies inside
    it (always: replacing the folder would delete that input)."""
    out = Path(output)
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    _io.check_overwrite(out, ins, overwrite, what=what)
    if not replaces_folder or not out.is_dir():
        return
    r_out = _resolved(out)
    for p in ins:
        if p.exists() and _resolved(p).is_relative_to(r_out) and _resolved(p) != r_out:  # the same: see above
            raise OutputError(f"{out} holds {what} ({p}); replacing the folder would delete it. Choose another "
                              "output folder")


def owns(folder: str | os.PathLike) -> dict | None:
    """The marker of a folder this project wrote (``{"command", "files"}``), or None."""
    try:
        doc = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), list) else None


def _files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() and p.name != MARKER)


def _write_marker(folder: Path, command: str) -> None:
    doc = {"command": command, "files": _files_in(folder)}
    with open(folder / MARKER, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def check_folder(path: Path, overwrite: bool, *, what: str = "output folder") -> bool:
    """May the folder output ``path`` be (re)placed? True when it exists and will be replaced, False when it
    does not exist or is empty; :class:`OutputError` otherwise (see the module docstring)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{path} exists and is not a folder; the {what} must be a new folder (it is not replaced)")
    if not path.is_dir():
        return False
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise OutputError(f"{path}: cannot list the existing {what}: {exc}") from None
    if not entries:
        return False
    mark = owns(path)
    if mark is None:
        raise OutputError(f"{path} is a folder this project did not write (no {MARKER} in it); it is never replaced "
                          "or deleted, with or without --overwrite. Choose a new folder")
    foreign = sorted(set(_files_in(path)) - set(mark["files"]))
    if foreign:
        raise OutputError(f"{path} holds files this project did not write ({', '.join(foreign[:5])}); it is not "
                          "replaced, with or without --overwrite. Move them, or choose a new folder")
    if not overwrite:
        by = " ".join(str(mark.get("command") or "").split()[:2]) or "this project"
        raise OutputError(f"{path} already exists and holds an earlier output (of {by}); pass --overwrite to "
                          "replace it, or choose a new folder")
    return True


# --- locks ---------------------------------------------------------------------------------------------------

class _Lock:
    """``flock`` on ``.NAME.lock`` beside the output: one writer at a time, the file removed on release."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.file = output.parent / f".{output.name}.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no lock
            return
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise OutputError(f"{self.output} is being written by another run (process {holder}); wait for it "
                                  "to finish or choose another output") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.file))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it as we opened it: take the new one
        before = os.read(fd, 64).decode("ascii", "replace").strip()
        if before and before != str(os.getpid()):  # its run was killed (the lock went with its process)
            print(f"removed leftover {self.file} of an earlier run that was stopped (process {before} is gone)",
                  file=sys.stderr)
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.file)
        os.close(self.fd)
        self.fd = None


# --- staged folders --------------------------------------------------------------------------------------------

class StagedFolder:
    """A folder output being written: files go under :attr:`staging` (or the folder itself with ``keep``);
    :meth:`path` checks that a name stays inside, :meth:`final` maps a staging path (or text naming one) to
    where it will be."""

    def __init__(self, final: Path, staging: Path, replaces: bool, keep: str | None, created: bool) -> None:
        self.final_dir, self.staging, self.replaces, self.keep, self.created = final, staging, replaces, keep, created
        self.marked = False

    def path(self, *parts: str) -> Path:
        p = self.staging.joinpath(*parts)
        if not _resolved(p).is_relative_to(_resolved(self.staging)):
            raise OutputError(f"{Path(*parts)} leads outside the output folder {self.final_dir}; names of files "
                              "written there must stay inside it")
        return p

    def final(self, obj):
        """``obj`` (a path, text, or lists/dicts of them) with the staging folder's name replaced by the
        final folder's: what a report written inside the folder should say."""
        if isinstance(obj, Path):
            return Path(self.final(str(obj)))
        if isinstance(obj, str):
            return obj.replace(str(self.staging), str(self.final_dir))
        if isinstance(obj, dict):
            return {k: self.final(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.final(v) for v in obj)
        return obj

    def __fspath__(self) -> str:
        return str(self.staging)


# --- the transaction -----------------------------------------------------------------------------------------

_active: Transaction | None = None
_guard = threading.RLock()


def active() -> Transaction | None:
    """The transaction of the command running in this process, or None."""
    return _active


class Transaction:
    """The outputs of one command: declarations, locks, the journal of what was published (see the module
    docstring). Use :func:`writing`."""

    def __init__(self, command: str = "") -> None:
        self.command = command
        self.roots: list[tuple[Path, str]] = []  # (path, kind): "file", "manifest", "folder", "keep"
        self.locks: dict[Path, _Lock] = {}
        self.folders: list[StagedFolder] = []
        self.journal: dict[Path, Path | None] = {}  # published path -> backup of what was there (None: new)
        self.folder_journal: list[tuple[Path, Path | None]] = []  # dataset dirs published: (path, old)
        self.made_dirs: list[Path] = []
        self.kept: list[Path] = []  # files written into keep folders

    # declarations
    def _declare(self, path: str | os.PathLike, kind: str) -> Path:
        path = Path(path).absolute()
        key = _resolved(path)
        if key in self.locks:
            return path
        with _signals_held():  # Ctrl-C waits until the lock is taken and recorded (then released on the way out)
            missing = []
            p = path.parent
            while not p.exists():
                missing.append(p)
                p = p.parent
            path.parent.mkdir(parents=True, exist_ok=True)
            self.made_dirs.extend(missing)
            lock = _Lock(path)
            lock.acquire()
            self.locks[key] = lock
            self.roots.append((path, kind))
        return path

    def file(self, path: str | os.PathLike | None, *, inputs: Iterable = (), overwrite: bool = False,
             what: str = "an input") -> Path | None:
        """Declare a file output (and its sidecars ``STEM.*`` beside it)."""
        if path is None:
            return None
        if Path(path).is_dir():
            raise OutputError(f"{path} is a folder; a file path is needed here")
        check_output(path, inputs, overwrite, what=what)
        return self._declare(path, "file")

    def manifest(self, path: str | os.PathLike | None, *, inputs: Iterable = (), overwrite: bool = False,
                 what: str = "an input manifest") -> Path | None:
        """Declare a manifest output: a ``.parquet`` file, or a dataset directory its writer stages."""
        if path is None:
            return None
        check_output(path, inputs, overwrite, what=what, replaces_folder=not str(path).endswith(".parquet"))
        return self._declare(path, "manifest")

    def folder(self, path: str | os.PathLike, *, inputs: Iterable = (), overwrite: bool = False,
               keep: str | None = None, reuse: bool = False, note: str = "", what: str = "an input") -> StagedFolder:
        """Declare a folder output. Staged (default): written into a hidden folder beside it, renamed into
        place at the end (an existing folder of ours replaced with ``overwrite``). ``keep`` (a glob such as
        ``"*.pt"``): written in place, created and marked when new; when the command fails, what it wrote is
        kept if the folder then holds a file matching ``keep`` (a checkpoint), removed otherwise. An existing
        non-empty folder is written into only with ``reuse`` (the caller checked it: a run being resumed).
        ``note``: said after the files kept (how to continue)."""
        final = Path(path).absolute()
        check_output(final, inputs, overwrite, what=what, replaces_folder=True)
        if keep:
            if final.exists() and not final.is_dir():
                raise OutputError(f"{final} exists and is not a folder")
            if final.is_dir() and any(final.iterdir()) and not reuse:
                raise OutputError(f"{final} is not empty; it is never written into. Choose a new folder")
            replaces = False
        else:
            replaces = check_folder(final, overwrite)
        self._declare(final, "keep" if keep else "folder")
        with _signals_held():  # a folder made is a folder recorded (removed on the way out)
            sf = self._make_folder(final, keep, replaces)
        sf.note = note
        return sf

    def _make_folder(self, final: Path, keep: str | None, replaces: bool) -> StagedFolder:
        if keep:
            created = not final.exists()
            final.mkdir(exist_ok=True)
            if created:
                self.made_dirs.append(final)
            marked = owns(final) is None
            if marked:
                _write_marker(final, self.command)
            sf = StagedFolder(final, final, False, keep, created)
            sf.marked = marked
        else:
            _io.remove_leftovers(final)
            staging = _io.owned_name(final, "staging")
            staging.mkdir()
            sf = StagedFolder(final, staging, replaces, None, True)
        self.folders.append(sf)
        return sf

    # the journal (called by landmark_unify.io)
    def _allowed(self, path: Path) -> str | None:
        """How ``path`` relates to the declared outputs: "final" (an output or a sidecar: journaled),
        "inside" (a staging folder or temporary file: not journaled), "kept" (a ``keep`` folder); None:
        outside every output."""
        p = _resolved(path)
        for root, kind in self.roots:
            r = _resolved(root)
            if p == r:
                return "final" if kind in ("file", "manifest") else None
            if p.is_relative_to(r):
                return {"keep": "kept", "manifest": "final"}.get(kind)  # a staged folder is written in staging
            if not p.is_relative_to(r.parent):
                continue
            first = p.relative_to(r.parent).parts[0]
            if first.startswith(f".{r.name}."):
                return "inside"  # a staging folder or temporary file of the output
            stem = r.name.rsplit(".", 1)[0] if kind == "file" else r.name.removesuffix(".parquet")
            if kind in ("file", "manifest") and first.startswith(f"{stem}."):
                return "final"  # a sidecar: STEM.skipped.jsonl, STEM.parts/
        return None

    def publish(self, tmp: str, path: Path) -> None:
        path = Path(path)
        how = self._allowed(path)
        if how is None:
            Path(tmp).unlink(missing_ok=True)
            raise OutputError(f"{path} is not inside a declared output of this command "
                              f"({', '.join(str(r) for r, _ in self.roots) or 'none'}); nothing is written there")
        key = path.absolute()
        with _guard:
            if how == "final" and key not in self.journal:
                backup = None
                if path.is_file() and not path.is_symlink():
                    backup = _io.owned_name(path, "old")
                    try:
                        os.link(path, backup)
                    except OSError:
                        shutil.copy2(path, backup)
                self.journal[key] = backup
            os.replace(tmp, path)
            if how == "kept":
                self.kept.append(key)

    def remove(self, path: Path) -> None:
        path = Path(path)
        if not path.exists() or self._allowed(path) is None:
            return
        key = path.absolute()
        with _guard:
            if key not in self.journal:
                backup = _io.owned_name(path, "old")
                os.rename(path, backup)
                self.journal[key] = backup
            else:
                path.unlink(missing_ok=True)

    def folder_published(self, path: Path, old: Path | None) -> bool:
        """A dataset directory was renamed into place (``old``: the one it replaced, now renamed aside).
        True: the journal keeps ``old`` until the end (the caller must not remove it)."""
        self.folder_journal.append((Path(path).absolute(), old))
        return True

    # the end
    def commit(self) -> None:
        for sf in self.folders:
            if sf.keep:
                _write_marker(sf.final_dir, self.command)
                continue
            _write_marker(sf.staging, self.command)
            _io.fsync_dir(sf.staging)
            if sf.final_dir.exists():  # replaced (checked at the declaration), or an empty folder
                old = _io.owned_name(sf.final_dir, "old")
                if not _io.exchange_paths(sf.staging, sf.final_dir):
                    os.rename(sf.final_dir, sf.staging.with_name(sf.staging.name + ".swap"))
                    os.rename(sf.staging, sf.final_dir)
                    os.rename(sf.staging.with_name(sf.staging.name + ".swap"), old)
                else:
                    os.rename(sf.staging, old)
                self.folder_journal.append((sf.final_dir, old))
            else:
                os.rename(sf.staging, sf.final_dir)
            _io.fsync_dir(sf.final_dir.parent)
        for _path, backup in self.journal.items():
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)
        for _path, old in self.folder_journal:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def rollback(self) -> list[Path]:
        """Undo everything; returns the files kept (written into ``keep`` folders)."""
        for path, old in reversed(self.folder_journal):
            with contextlib.suppress(OSError):
                if old is not None and old.exists():
                    if not _io.exchange_paths(old, path):
                        shutil.rmtree(path, ignore_errors=True)
                        os.rename(old, path)
                        continue
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    shutil.rmtree(path, ignore_errors=True)
        for path, backup in reversed(list(self.journal.items())):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    os.unlink(path)
        kept = []
        for sf in self.folders:
            if not sf.keep:
                shutil.rmtree(sf.staging, ignore_errors=True)
                continue
            written = sorted({p for p in self.kept if p.is_relative_to(sf.final_dir) and p.exists()})
            if any(sf.final_dir.glob(sf.keep)):  # a checkpoint: keep the run as it is
                kept += written
                self.kept_note = sf.note if written else ""
                continue
            if sf.created:
                shutil.rmtree(sf.final_dir, ignore_errors=True)
                continue
            for p in written + ([sf.final_dir / MARKER] if sf.marked else []):
                with contextlib.suppress(OSError):
                    p.unlink()
        self.failed = True
        return kept

    def release(self) -> None:
        """Release the locks; after a roll-back, remove the folders the declarations created (when empty)."""
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()
        if getattr(self, "failed", False):
            for d in sorted(set(self.made_dirs), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    if d.is_dir() and not any(d.iterdir()):
                        d.rmdir()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while a commit, a roll-back or the making of a lock or staging folder runs:
    their handlers are swapped for one that only records the signal (a mask would not do: any thread may
    receive a signal, and Python runs its handler in the main thread between any two bytecodes), and the
    recorded signal is acted on at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    wanted = [s for s in (signal.SIGINT, signal.SIGTERM)]
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in wanted}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            handler = old[got[0]]
            if callable(handler):
                handler(got[0], None)  # raises KeyboardInterrupt or Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(got[0])


@contextmanager
def writing(command: str = "") -> Iterator[Transaction]:
    """The outputs of a command: a new :class:`Transaction` (committed when the block ends, rolled back on
    any exception, ``KeyboardInterrupt`` included), or the one already open in this process (a library
    operation called by a command joins the command's transaction). On roll-back the exception gets the
    attribute ``kept_outputs``: the files kept (of ``keep`` folders)."""
    global _active
    with _guard:
        outer = _active
        if outer is not None:
            joined = True
            tx = outer
        else:
            joined = False
            tx = Transaction(command)
            _active = tx
            _io.set_journal(tx)
    if joined:
        yield tx
        return
    try:
        try:
            yield tx
        except BaseException as exc:
            with _signals_held():
                kept = tx.rollback()
            with contextlib.suppress(AttributeError, TypeError):
                exc.kept_outputs = kept
                exc.kept_note = getattr(tx, "kept_note", "")
            raise
        with _signals_held():
            try:
                tx.commit()
            except BaseException as exc:
                kept = tx.rollback()
                with contextlib.suppress(AttributeError, TypeError):
                    exc.kept_outputs = kept
                raise
    finally:
        with _guard:
            _active = None
            _io.set_journal(None)
        tx.release()


def transactional(fn):
    """Decorate a library operation that writes outputs: its body runs inside :func:`writing` (its own
    transaction when called alone, the command's when a command calls it); it declares its outputs with
    :func:`current`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with writing():
            return fn(*args, **kwargs)

    return wrapper


def current() -> Transaction:
    """The open transaction (inside :func:`writing` or a :func:`transactional` operation)."""
    if _active is None:
        raise RuntimeError("no output transaction is open: declare outputs inside landmark_unify.outputs.writing()")
    return _active


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """In the main thread, turn SIGTERM into :class:`Terminated` for the length of the block, so that
    ``kill PID`` (like Ctrl-C) aborts a command cleanly and its outputs are rolled back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:  # a forked worker (a pool stopping it): end as SIGTERM ends a process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated("terminated by SIGTERM; the run is aborted and no output was written")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
