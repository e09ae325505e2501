"""Engine rules a hostile stream could break: delta chunks outside their context group or range."""

from __future__ import annotations

import numpy as np
import pytest

from llic_imaging.codec import engine
from llic_imaging.codec.engine import ChunkParams, TileRef
from llic_imaging.errors import StreamError


def _refs(planes: int) -> list[TileRef]:
    return [TileRef(k, 0, 0, 4, 4) for k in range(planes)]


def test_delta_chunks_decode_after_their_reference() -> None:
    params = [
        ChunkParams(1, 0, 9, 0, 0),
        ChunkParams(3, -4, 9, 0, 0),
        ChunkParams(2, 1, 0, 0, 0),
        ChunkParams(1, 0, 9, 0, 0),
    ]
    assert engine._generations(_refs(4), params, 3) == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("planes", "context"),
    [(2, 1), (4, 3)],  # no context in the header; a delta chunk that starts a group
)
def test_delta_chunk_outside_its_group_is_refused(planes: int, context: int) -> None:
    params = [ChunkParams(1, 0, 9, 0, 0)] * (planes - 1) + [ChunkParams(3, 0, 9, 0, 0)]
    with pytest.raises(StreamError, match="context group"):
        engine._generations(_refs(planes), params, context)


def test_delta_chunk_without_its_reference_is_refused() -> None:
    refs = [TileRef(1, 0, 0, 4, 4)]
    with pytest.raises(StreamError, match="context group"):
        engine._generations(refs, [ChunkParams(3, 0, 9, 0, 0)], 4)


def test_delta_leaving_the_dtype_range_is_refused() -> None:
    out = np.zeros((2, 4, 4), np.uint8)
    out[0] = 200
    with pytest.raises(StreamError, match="range"):
        engine._place(out, TileRef(1, 0, 0, 4, 4), np.full((4, 4), 100, np.int64), delta=True)


def test_delta_chunk_header_limits() -> None:
    ok = ChunkParams(3, -0xFFFF, 0xFFFF, 0, 0).pack() + b"\0" * 4
    assert ChunkParams.unpack(ok)[0].delta
    for bad in (ChunkParams(1, -0xFFFF, 10, 0, 0), ChunkParams(4, 0, 10, 0, 0)):
        with pytest.raises(StreamError):
            ChunkParams.unpack(bad.pack())
