"""Validate user arrays and turn them into a stack of integer planes, and back.

Imports only ``errors``. The codec sees (N, H, W) planes (a view, native byte order); the dtype, shape and
signedness travel in :class:`PlaneSpec` and are written into the container header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError

__all__ = ["SUPPORTED_DTYPES", "PlaneSpec", "from_stack", "to_stack"]

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16")


@dataclass(frozen=True)
class PlaneSpec:
    """What is needed to rebuild the caller's array from decoded planes."""

    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, native byte order is implied (values, not bytes, are coded)

    @property
    def planes(self) -> int:
        return 1 if len(self.shape) == 2 else self.shape[0]

    @property
    def bits_per_sample(self) -> int:
        return np.dtype(self.dtype).itemsize * 8

    @property
    def signed(self) -> bool:
        return np.dtype(self.dtype).kind == "i"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlaneSpec:
        try:
            listed = isinstance(d["shape"], list)  # a string of digits is not a shape
            shape = tuple(int(v) for v in d["shape"]) if listed else ()
            dtype = str(d["dtype"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            msg = f"plane spec is malformed: {d!r}"
            raise FormatError(msg) from exc
        if dtype not in SUPPORTED_DTYPES or len(shape) not in (2, 3) or min(shape) < 1:
            msg = f"plane spec is not supported: shape {shape}, dtype {dtype}"
            raise FormatError(msg)
        return cls(shape, dtype)


def to_stack(array: np.ndarray) -> tuple[np.ndarray, PlaneSpec]:
    """Return ``(stack, spec)``: ``array`` as an (N, H, W) stack (no copy when possible) and how to undo it.

    The stack keeps the 8/16-bit dtype in native byte order: the codec widens one tile at a
    time, so an 8192 x 8192 image never exists as a 32-bit copy.

    Raises
    ------
    FormatError
        If the dtype is not an 8/16-bit integer type or the array is not 2D/3D or is empty.
    """
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    name = a.dtype.newbyteorder("=").name if a.dtype.byteorder not in "=|" else a.dtype.name
    if name not in SUPPORTED_DTYPES:
        msg = f"dtype {a.dtype} is not supported; expected one of {', '.join(SUPPORTED_DTYPES)}"
        raise FormatError(msg)
    if a.ndim not in (2, 3):
        msg = f"expected a 2D plane or an (N, H, W) stack, got shape {a.shape}"
        raise FormatError(msg)
    if a.size == 0:
        msg = f"array is empty (shape {a.shape})"
        raise FormatError(msg)
    stack = a.astype(name, copy=False).reshape((-1, *a.shape[-2:]))
    return stack, PlaneSpec(tuple(int(s) for s in a.shape), name)


def from_stack(stack: np.ndarray, spec: PlaneSpec) -> np.ndarray:
    """Rebuild the caller's array from decoded planes (inverse of :func:`to_stack`)."""
    return stack.astype(spec.dtype, copy=False).reshape(spec.shape)
