"""``LlicCodec``: the codec as a zarr format 3 array -> bytes codec (the array's serializer).

zarr 3 takes numcodecs codecs only for format 2 arrays (:mod:`llic_imaging.numcodecs`); a
format 3 array names its serializer in its metadata, ``{"name": "llic", "configuration":
{...}}``, and zarr finds this class through the ``zarr.codecs`` entry point of that name.
Chunks are coded exactly as the numcodecs codec codes them (one stream per chunk, planes over
the last two axes), so both formats hold the same bytes per chunk.

    zarr.create_array(store, shape=..., chunks=..., dtype="uint16", serializer=LlicCodec())
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from llic_imaging.errors import StreamError
from llic_imaging.numcodecs import decode_chunk, encode_chunk

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["LlicCodec"]

NAME = "llic"


@dataclass(frozen=True)
class LlicCodec(ArrayBytesCodec):
    """Lossless HPAC coding of integer chunks (uint8, int8, uint16, int16); the options are
    :class:`llic_imaging.numcodecs.Llic`'s (``None`` leaves :func:`llic_imaging.encode`'s
    default). They go in the array's metadata; decoding needs none of them."""

    is_fixed_size = False

    model: str | None = None
    tile: int | None = None
    patch: int | None = None
    context: int | None = None
    numthreads: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        _, config = parse_named_configuration(data, NAME, require_configuration=False)
        return cls(**(config or {}))

    def to_dict(self) -> dict[str, Any]:
        config = {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}
        return {"name": NAME, "configuration": config} if config else {"name": NAME}

    def _options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        # a chunk takes milliseconds to seconds: off the event loop, as zarr's compressors do
        stream = await asyncio.to_thread(
            encode_chunk, chunk_array.as_numpy_array(), **self._options()
        )
        return chunk_spec.prototype.buffer.from_bytes(stream)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        array = await asyncio.to_thread(
            decode_chunk, chunk_bytes.to_bytes(), numthreads=self.numthreads
        )
        if array.shape != tuple(chunk_spec.shape):
            msg = f"chunk stream holds shape {array.shape}, the array's chunk is {chunk_spec.shape}"
            raise StreamError(msg)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(array)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable-size output, as zarr's own compressors
