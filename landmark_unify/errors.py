"""Typed errors. Every message names where the problem is (file, line or key) and which field."""
from __future__ import annotations

from pathlib import Path

#: What a bulk command does with a bad record: ``raise`` stops at the first one, ``skip`` leaves it out and
#: reports it (``--on-error`` of every command that reads many records).
ON_ERROR = ("raise", "skip")


class LandmarkUnifyError(Exception):
    """Base class of every error this library raises on purpose."""


class SchemaError(LandmarkUnifyError):
    """A point layout or a map between layouts is malformed, or an unknown schema was asked for."""


class MappingError(LandmarkUnifyError):
    """Arrays given to a mapping function have the wrong shape or dtype."""


class ManifestError(LandmarkUnifyError):
    """A manifest file does not follow the manifest spec (docs/spec/manifest.md)."""


def describe_location(path, line: int | None = None, key: str | None = None, field: str | None = None) -> str:
    """``PATH, line L, key 'K', field 'F'`` with the parts that are known: how every message locates a record."""
    where = str(path)
    if line is not None:
        where += f", line {line}"
    if key is not None:
        where += f", key {key!r}"
    if field is not None:
        where += f", field {field!r}"
    return where


class ParseError(LandmarkUnifyError):
    """A record of a source file could not be read.

    Attributes ``path``, ``line`` (1-based, or None), ``key`` (record key such as a ``.mat`` variable or a
    JSON annotation id, or None) and ``field`` (what was being read) locate the problem exactly.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        key: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.key = key
        self.field = field
        self.reason = message
        super().__init__(f"{describe_location(self.path, line, key, field)}: {message}")

    def as_record(self) -> dict:
        """The error as a plain dict, for skip reports."""
        return {"path": self.path, "line": self.line, "key": self.key, "field": self.field, "reason": self.reason}


class ErrorPolicy:
    """The ``on_error`` decision of a bulk command, made once: ``raise`` re-raises a bad record's error,
    ``skip`` records it (``skipped``) and goes on. ``context`` (``source=``, ``kind=``) leads every record;
    a :class:`ParseError` adds its location (:meth:`ParseError.as_record`), any other error its message as
    ``reason``. An ``on_error`` that is neither is a LandmarkUnifyError here, the one place it is checked."""

    def __init__(self, on_error: str = "raise", **context) -> None:
        self.on_error = self.check(on_error)
        self.context = context
        self.skipped: list[dict] = []

    @staticmethod
    def check(on_error: str) -> str:
        """``on_error`` itself when it is one of :data:`ON_ERROR`; LandmarkUnifyError otherwise."""
        if on_error not in ON_ERROR:
            raise LandmarkUnifyError(f"on_error must be one of {list(ON_ERROR)}; got {on_error!r}")
        return on_error

    @property
    def raises(self) -> bool:
        return self.on_error == "raise"

    def __call__(self, err: LandmarkUnifyError, **extra) -> dict:
        """Raise ``err`` (``raise``), or record it with ``extra`` fields after its own and return the record."""
        if self.raises:
            raise err
        rec = dict(self.context)
        rec.update(err.as_record() if isinstance(err, ParseError) else
                   {"path": getattr(err, "path", None), "reason": getattr(err, "reason", str(err))})
        rec.update(extra)
        self.skipped.append(rec)
        return rec
