"""Range coding of chunks: exact round trip, size close to the ideal, corrupt words rejected."""

from __future__ import annotations

import numpy as np
import pytest

from llic_imaging.codec import focus, intcdf
from llic_imaging.codec.entropy import ChunkDecoders, encode_chunk
from llic_imaging.errors import StreamError


def _steps(seed: int, vmax: int, n_steps: int = 20, n: int = 500):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        mu16 = rng.integers(0, 16 * vmax + 1, n)
        scale = rng.integers(10, 110, n)
        v = np.clip(np.round(mu16 / 16 + rng.logistic(0, np.exp2(scale / 8 - 4))), 0, vmax).astype(
            np.int64
        )
        v[:3] = rng.integers(0, vmax + 1, 3)
        out.append((mu16, scale, v))
    return out


@pytest.mark.parametrize("vmax", [1, 255, 4095, 65535])
def test_round_trip_and_size(vmax: int) -> None:
    steps = _steps(vmax, vmax)
    mu, sc, v = (np.concatenate([s[k] for s in steps]) for k in range(3))
    data = encode_chunk(mu, sc, v, vmax, [s[0].size for s in steps])
    dec = ChunkDecoders([data], [vmax])
    for mu_s, sc_s, v_s in steps:
        np.testing.assert_array_equal(dec.decode_step(mu_s[None], sc_s[None])[0], v_s)
    ideal = focus.code_lengths(mu, sc, v, vmax).sum()
    assert len(data) * 8 <= ideal * 1.005 + 64


def test_chunks_of_a_batch_decode_together() -> None:
    """Chunks with different ranges share each step's table building, not their streams."""
    ranges = [1, 255, 65535]
    chunks = [_steps(7 + i, vmax, n_steps=5, n=64) for i, vmax in enumerate(ranges)]
    payloads = []
    for steps, vmax in zip(chunks, ranges, strict=True):
        mu, sc, v = (np.concatenate([s[k] for s in steps]) for k in range(3))
        payloads.append(encode_chunk(mu, sc, v, vmax, [64] * 5))
    dec = ChunkDecoders(payloads, ranges)
    for k in range(5):
        mu = np.stack([steps[k][0] for steps in chunks])
        sc = np.stack([steps[k][1] for steps in chunks])
        want = np.stack([steps[k][2] for steps in chunks])
        np.testing.assert_array_equal(dec.decode_step(mu, sc), want)


def test_frozen_words() -> None:
    """The bitstream of a fixed input is part of the format: it must never change silently."""
    data = encode_chunk(
        np.array([0, 8000, 16000]), np.array([32, 40, 80]), np.array([0, 501, 999]), 1000, [3]
    )
    assert data.hex() == FROZEN


FROZEN = "f577cb62"


def test_bad_payload_length() -> None:
    with pytest.raises(StreamError):
        ChunkDecoders([b"\x00\x01\x02"], [10])


def _chunk(vmax: int):
    steps = _steps(vmax, vmax)
    mu, sc, v = (np.concatenate([s[k] for s in steps]) for k in range(3))
    return steps, encode_chunk(mu, sc, v, vmax, [s[0].size for s in steps])


def test_an_exact_decode_ends_where_the_encoder_ended() -> None:
    steps, data = _chunk(4095)
    dec = ChunkDecoders([data], [4095])
    for k, (mu_s, sc_s, _) in enumerate(steps):
        if k == len(steps) // 2:
            assert dec.misread() == [0]  # words left
        dec.decode_step(mu_s[None], sc_s[None])
    assert dec.misread() == []


@pytest.mark.parametrize("offset", [-8, 24], ids=["stops-short", "runs-past-the-end"])
def test_a_decode_with_other_tables_is_a_misread(offset: int) -> None:
    """Scales lower than the encoder's read too few words; higher ones run past the last word
    into constriction's zero padding, where the decoder keeps returning values (the bits
    decoded there give it away). Either way the chunk is reported."""
    steps, data = _chunk(4095)
    dec = ChunkDecoders([data], [4095])
    for mu_s, sc_s, _ in steps:
        dec.decode_step(mu_s[None], np.clip(sc_s[None] + offset, 0, intcdf.N_SCALES - 1))
    assert dec.misread() == [0]
