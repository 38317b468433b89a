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
