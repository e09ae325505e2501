"""Range coding of steps: exact round trip, size close to the ideal, corrupt words rejected."""

from __future__ import annotations

import numpy as np
import pytest

from llic_imaging.codec import focus
from llic_imaging.codec.entropy import StepDecoder, StepEncoder
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
    enc = StepEncoder(vmax)
    for mu, sc, v in steps:
        enc.encode(mu, sc, v)
    data = enc.finish()
    dec = StepDecoder(data, vmax)
    for mu, sc, v in steps:
        np.testing.assert_array_equal(dec.decode(mu, sc), v)
    ideal = sum(focus.code_lengths(mu, sc, v, vmax).sum() for mu, sc, v in steps)
    assert len(data) * 8 <= ideal * 1.005 + 64


def test_frozen_words() -> None:
    """The bitstream of a fixed input is part of the format: it must never change silently."""
    enc = StepEncoder(1000)
    enc.encode(np.array([0, 8000, 16000]), np.array([32, 40, 80]), np.array([0, 501, 999]))
    assert enc.finish().hex() == FROZEN


FROZEN = "f577cb62"


def test_bad_payload_length() -> None:
    with pytest.raises(StreamError):
        StepDecoder(b"\x00\x01\x02", 10)
