"""``llic_imaging.numcodecs.Llic``: the numcodecs registry finds it, every chunk shape and dtype
round-trips, and real zarr format 2 arrays on disk store a shipped sample through it."""

from __future__ import annotations

import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

import llic_imaging
from llic_imaging.errors import FormatError, LlicError, StreamError
from llic_imaging.numcodecs import Llic

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _field(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Smooth texture plus noise, spread over most of ``dtype``'s range."""
    rng = np.random.default_rng(sum(shape))
    info = np.iinfo(dtype)
    t = np.linspace(0, 6, int(np.prod(shape))).reshape(shape)
    x = np.sin(t) * 0.4 + rng.normal(0, 0.02, shape)
    return np.clip(x * (int(info.max) - int(info.min)) / 2, info.min, info.max).astype(dtype)


def test_the_registry_finds_llic_through_its_entry_point() -> None:
    codec = numcodecs.get_codec({"id": "llic", "tile": 64, "numthreads": 2})
    assert isinstance(codec, Llic)
    assert (codec.tile, codec.numthreads, codec.model) == (64, 2, None)
    assert numcodecs.get_codec(codec.get_config()) == codec
    assert json.loads(json.dumps(codec.get_config())) == codec.get_config()
    assert repr(codec).startswith("Llic(model=None, tile=64")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", ">u2", ">i2"])
@pytest.mark.parametrize("shape", [(300,), (40, 60), (2, 40, 60), (2, 2, 24, 24)])
def test_chunks_of_every_shape_and_dtype_round_trip(shape: tuple[int, ...], dtype: str) -> None:
    chunk = _field(shape, dtype)
    out = Llic(tile=32).decode(Llic(tile=32).encode(chunk))
    assert out.shape == chunk.shape
    assert out.dtype == chunk.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, chunk)


def test_decode_writes_into_out() -> None:
    chunk = _field((48, 40), "uint16")
    out = np.zeros_like(chunk)
    assert Llic().decode(Llic().encode(chunk), out=out) is out
    np.testing.assert_array_equal(out, chunk)


@pytest.mark.parametrize("dtype", ["float32", "uint32", "int64"])
def test_other_dtypes_are_refused(dtype: str) -> None:
    with pytest.raises(FormatError, match="not supported"):
        Llic().encode(np.ones((16, 16), dtype))


def test_damaged_or_foreign_streams_raise_llic_errors() -> None:
    chunk = _field((40, 60), "uint16")
    stream = bytearray(Llic().encode(chunk))
    stream[len(stream) // 2] ^= 0x10
    with pytest.raises(LlicError):
        Llic().decode(bytes(stream))
    with pytest.raises(StreamError, match="chunk's shape"):  # an LLIC stream, not a chunk's
        Llic().decode(llic_imaging.encode(chunk))


def test_a_zarr_format_2_array_on_disk_stores_a_sample_exactly(tmp_path: Path) -> None:
    """The shipped CT stack in (1, 64, 64) chunks: partial edge chunks and plane context off."""
    ct = np.load(SAMPLES / "ct_stack_i16.npy")
    store = tmp_path / "ct.zarr"
    z = zarr.create_array(
        store, shape=ct.shape, chunks=(1, 64, 64), dtype=ct.dtype, zarr_format=2,
        compressors=Llic(tile=64), fill_value=0,
    )  # fmt: skip
    z[:] = ct
    meta = json.loads((store / ".zarray").read_text())
    assert meta["compressor"] == Llic(tile=64).get_config()
    again = zarr.open_array(store, mode="r")
    np.testing.assert_array_equal(again[:], ct)
    np.testing.assert_array_equal(again[1, 10:70, 50:96], ct[1, 10:70, 50:96])
    stored = sum(f.stat().st_size for f in store.rglob("*") if f.name[0].isdigit())
    assert stored < ct.nbytes  # the chunks are coded, not copied
