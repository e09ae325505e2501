"""Reading a stream's chunk headers in tests (at ``tests/``, on ``sys.path`` through ``conftest.py``)."""

from __future__ import annotations

from llic_imaging import container
from llic_imaging.codec.engine import ChunkParams


def chunk_headers(stream: bytes) -> list[ChunkParams]:
    """Every chunk's header, read in the codec format the stream's header names."""
    c = container.read(stream)
    fmt = c.header["format"]
    return [ChunkParams.unpack(c.payload(i), fmt=fmt)[0] for i in range(len(c.chunks))]
