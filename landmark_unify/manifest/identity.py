"""Identity of a face: its ``sample_id`` and the codec of those ids.

A ``sample_id`` is the first 16 hex digits (lower case) of the SHA-1 of its parts joined with NUL, as
UTF-8. The build makes them for a whole batch at once (:func:`sample_id_array`), a command that makes
one face at a time uses :func:`make_sample_id`; both give the same text for the same parts.
:func:`id_keys` decodes ids into 64-bit keys for duplicate checks (any other text is hashed the same way).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LandmarkUnifyError

#: hex digits of a sample_id (the first 8 bytes of the SHA-1)
ID_DIGITS = 16
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _encode(digests: bytes, n: int) -> pa.Array:
    """The ids of ``n`` SHA-1 digests (20 bytes each, concatenated) as a string array of 16 hex digits."""
    first8 = np.frombuffer(digests, dtype=np.uint8).reshape(n, 20)[:, :ID_DIGITS // 2]
    text = np.empty((n, ID_DIGITS), dtype=np.uint8)
    text[:, 0::2] = _HEX[first8 >> 4]
    text[:, 1::2] = _HEX[first8 & 15]
    offsets = np.arange(n + 1, dtype=np.int32) * ID_DIGITS
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _join(parts) -> bytes:
    return "\x00".join("" if p is None else str(p) for p in parts).encode("utf-8")


def make_sample_id(*parts) -> str:
    """A stable 16-hex-digit id from the parts (joined with NUL); same parts, same id."""
    return _encode(hashlib.sha1(_join(parts)).digest(), 1)[0].as_py()


def _strings(values) -> pa.Array:
    array = getattr(values, "array", None)  # a reader's ArrowColumn
    if isinstance(array, (pa.Array, pa.ChunkedArray)):
        values = array
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, type=pa.string())


def sample_id_array(source: str, split, identity) -> pa.Array:
    """``make_sample_id(source, split[i], identity[i])`` for every face, as a pyarrow string array
    (``split``, ``identity``: lists, Arrow arrays or a reader's ArrowColumn): one SHA-1 per face over the
    UTF-8 bytes of its identity after the hash-ready ``source, split`` prefix, the hex digits written for all
    faces at once."""
    ident = _strings(identity)
    n = len(ident)
    if n == 0:
        return pa.array([], type=pa.string())
    if ident.null_count:
        raise LandmarkUnifyError("a face has no identity")
    width = np.int64 if pa.types.is_large_string(ident.type) else np.int32
    offsets = np.frombuffer(ident.buffers()[1], dtype=width, count=n + 1, offset=ident.offset * np.dtype(width).itemsize)
    raw = ident.buffers()[2]
    data = raw.to_pybytes() if raw is not None else b""
    split = _strings(split)
    if split.null_count:  # as f"{None}" made it (the table's check refuses the null split afterwards)
        split = split.fill_null("None")
    splits = pc.dictionary_encode(split)
    prefixes = [_join((source, s)) + b"\x00" for s in splits.dictionary.to_pylist()]
    bounds = offsets.tolist()
    sha1 = hashlib.sha1
    if len(prefixes) == 1:
        prefix = prefixes[0]
        digests = [sha1(prefix + data[a:z]).digest() for a, z in zip(bounds, bounds[1:])]
    else:
        codes = splits.indices.to_numpy(zero_copy_only=False).tolist()
        digests = [sha1(prefixes[c] + data[a:z]).digest() for c, a, z in zip(codes, bounds, bounds[1:])]
    return _encode(b"".join(digests), n)


def sample_ids(source: str, split, identity) -> list[str]:
    """:func:`sample_id_array` as a list of str."""
    return sample_id_array(source, split, identity).to_pylist()


# --- decoding: ids as 64-bit keys -------------------------------------------------------------------------

def id_keys(table: pa.Table) -> np.ndarray:
    """sample_id (16 hex digits) as uint64, for a compact duplicate check across units."""
    col = table.column("sample_id")
    n = len(col)
    if n == 0:
        return np.zeros(0, np.uint64)
    keys = _hex16_keys(col.combine_chunks()) if not col.null_count else None
    if keys is not None:  # the ids this library makes: 16 hex digits each, decoded in one go
        return keys
    ids = col.to_pylist()  # other ids (from elsewhere): hashed one by one
    return np.fromiter((hash_key(x) for x in ids), dtype=np.uint64, count=n)


_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _hex16_keys(arr: pa.Array) -> np.ndarray | None:
    """uint64 keys of a string array whose every value is 16 hex digits (as ``int(value, 16)``), or None
    when one is not."""
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        return None
    n = len(arr)
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width, count=n + 1, offset=arr.offset * np.dtype(width).itemsize)
    if (np.diff(offsets) != ID_DIGITS).any():
        return None
    text = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=ID_DIGITS * n, offset=int(offsets[0]))
    nib = _NIBBLE[text].reshape(n, ID_DIGITS)
    if (nib == 255).any():
        return None
    pairs = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return np.ascontiguousarray(pairs).view(">u8").reshape(n).astype(np.uint64)


def hash_key(text: str) -> int:
    """A 64-bit key of a string (the first 16 hex digits of its SHA-1), as :func:`id_keys` decodes an id."""
    return int(hashlib.sha1(str(text).encode("utf-8")).hexdigest()[:ID_DIGITS], 16)
