"""Typed error of the exporters."""

from __future__ import annotations

from landmark_unify.errors import LandmarkUnifyError

__all__ = ["ExportError"]


class ExportError(LandmarkUnifyError):
    """A model cannot be exported or checked; the message says which file, key, layer or rule."""
