"""``llic_imaging.zarr.LlicCodec``: zarr format 3 arrays on disk name it in their metadata, find
it again through its entry point, and hold the same chunk bytes as the numcodecs codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from llic_imaging.errors import StreamError
from llic_imaging.numcodecs import Llic, encode_chunk
from llic_imaging.zarr import LlicCodec

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _array(store: Path, image: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    z = zarr.create_array(
        store, shape=image.shape, chunks=chunks, dtype=image.dtype,
        serializer=LlicCodec(tile=64), compressors=None, fill_value=0,
    )  # fmt: skip
    z[:] = image
    return z


def test_a_format_3_array_on_disk_stores_a_sample_exactly(tmp_path: Path) -> None:
    phantom = tifffile.imread(SAMPLES / "phantom_u16.tif")
    store = tmp_path / "phantom.zarr"
    _array(store, phantom, (128, 128))  # 2 x 2 chunks, three of them partial
    codecs = json.loads((store / "zarr.json").read_text())["codecs"]
    assert codecs == [{"name": "llic", "configuration": {"tile": 64}}]
    again = zarr.open_array(store, mode="r")  # the codec found again by its name
    np.testing.assert_array_equal(again[:], phantom)
    np.testing.assert_array_equal(again[100:150, 20:190], phantom[100:150, 20:190])


def test_chunks_hold_the_numcodecs_codecs_bytes(tmp_path: Path) -> None:
    ct = np.load(SAMPLES / "ct_stack_i16.npy")
    _array(tmp_path / "ct.zarr", ct, (3, 32, 32))
    chunk = (tmp_path / "ct.zarr" / "c" / "0" / "1" / "2").read_bytes()
    assert chunk == Llic(tile=64).encode(ct[:, 32:64, 64:96])


def test_config_round_trips_through_its_dict() -> None:
    assert LlicCodec().to_dict() == {"name": "llic"}
    codec = LlicCodec(model="hpac-small-v5", patch=32, numthreads=2)
    assert LlicCodec.from_dict(codec.to_dict()) == codec


def test_a_chunk_stream_of_another_shape_is_refused(tmp_path: Path) -> None:
    """A hostile or misplaced chunk that decodes to another shape is a StreamError."""
    store = tmp_path / "x.zarr"
    image = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    _array(store, image, (32, 32))
    (store / "c" / "0" / "0").write_bytes(encode_chunk(image[:16, :32]))
    with pytest.raises(StreamError, match="chunk"):
        zarr.open_array(store, mode="r")[:]
