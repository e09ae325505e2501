"""``Llic``: the codec as a numcodecs ``Codec``, so zarr (format 2) and anything else that takes
numcodecs codecs can store integer image chunks losslessly.

The codec is array -> bytes: it needs the chunk's dtype and shape, which zarr hands it (a
numpy array of the array's dtype). Chunks of any dimensionality are coded as a stack of
planes over their last two axes, and the stream keeps the chunk's shape, so
``decode`` gives back exactly the array ``encode`` was given, without the codec config.
Registered for ``numcodecs.get_codec({"id": "llic"})`` through the ``numcodecs.codecs``
entry point; :mod:`llic_imaging.zarr` is the same codec for zarr format 3 arrays.

>>> import numpy as np
>>> from llic_imaging.numcodecs import Llic
>>> a = np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64) % 4000
>>> codec = Llic()
>>> bool(np.array_equal(codec.decode(codec.encode(a)), a))
True
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray, ndarray_copy

import llic_imaging
from llic_imaging.errors import StreamError

__all__ = ["Llic", "decode_chunk", "encode_chunk"]

_SHAPE_KEY = "llic.chunk_shape"  # the stream's metadata: the chunk's own shape


def encode_chunk(chunk: np.ndarray, **options: Any) -> bytes:
    """A chunk of any shape -> one stream of its planes (the last two axes), with the chunk's
    shape in the stream's metadata. ``options`` are :func:`llic_imaging.encode`'s."""
    chunk = np.asarray(chunk)
    # fewer than two axes: one plane of height 1
    planes = chunk.reshape(-1, *chunk.shape[-2:]) if chunk.ndim >= 2 else chunk.reshape(1, -1)
    meta = json.dumps({_SHAPE_KEY: list(chunk.shape)}).encode()
    return llic_imaging.encode(np.ascontiguousarray(planes), metadata=meta, **options)


def decode_chunk(stream: bytes, *, numthreads: int | None = None) -> np.ndarray:
    """The chunk :func:`encode_chunk` coded, in its own shape. StreamError for a stream that
    :func:`encode_chunk` did not write (an LLIC stream without a chunk shape)."""
    try:  # before decoding: a foreign stream is refused without running the network
        shape = tuple(json.loads(llic_imaging.metadata(stream))[_SHAPE_KEY])
    except (ValueError, TypeError, KeyError) as exc:
        msg = "not a chunk stream: its metadata does not give the chunk's shape"
        raise StreamError(msg) from exc
    array = llic_imaging.decode(stream, numthreads=numthreads)
    if int(np.prod(shape)) != array.size:
        msg = f"chunk shape {shape} does not hold the stream's {array.size} samples: corrupt"
        raise StreamError(msg)
    return array.reshape(shape)


class Llic(Codec):
    """Lossless HPAC coding of integer chunks (uint8, int8, uint16, int16).

    Parameters are :func:`llic_imaging.encode`'s: ``model`` (``None``: the automatic choice),
    ``tile``, ``patch`` and ``context`` (for chunks of several planes) shape the stream;
    ``numthreads`` only the speed. They are stored in the array's metadata as the codec's
    config; decoding needs none of them (the stream names its model and layout).
    """

    codec_id = "llic"

    def __init__(
        self,
        model: str | None = None,
        tile: int | None = None,
        patch: int | None = None,
        context: int | None = None,
        numthreads: int | None = None,
    ) -> None:
        self.model, self.tile, self.patch, self.context = model, tile, patch, context
        self.numthreads = numthreads

    def encode(self, buf: Any) -> bytes:
        """FormatError for a dtype other than uint8, int8, uint16 or int16."""
        return encode_chunk(ensure_ndarray(buf), **self._options())

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        stream = ensure_contiguous_ndarray(buf).tobytes()
        return ndarray_copy(decode_chunk(stream, numthreads=self.numthreads), out)

    def _options(self) -> dict[str, Any]:
        """The ``__init__`` options (the config without its id): ``encode``'s keywords."""
        return {k: v for k, v in self.get_config().items() if k != "id"}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"
