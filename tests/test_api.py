"""Public API round trips over shapes, dtypes, bit depths and degenerate content; errors; info."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llic_imaging
from _adapt_data import period_three
from _streams import chunk_headers
from llic_imaging import FormatError, ModelError, StreamError, container
from llic_imaging._api import DEFAULT_PATCH, DEFAULT_PATCH_8BIT
from llic_imaging.codec.engine import ChunkParams, tile_grid
from llic_imaging.model import zoo


def roundtrip(a: np.ndarray, **opts) -> bytes:
    s = llic_imaging.encode(a, **opts)
    b = llic_imaging.decode(s)
    assert b.dtype == a.dtype
    assert b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    return s


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (1, 300), (3, 5), (31, 33), (65, 257)])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_shapes_and_dtypes(shape: tuple[int, int], dtype: str) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    roundtrip(a)


@pytest.mark.parametrize("bits", range(1, 17))
def test_bit_depths(bits: int) -> None:
    rng = np.random.default_rng(bits)
    base = np.cumsum(rng.normal(0, 2 ** (bits / 2), (48, 70)), axis=1)
    a = np.clip(base - base.min(), 0, 2**bits - 1).astype(np.uint16 if bits > 8 else np.uint8)
    roundtrip(a)


def test_constant_images_cost_only_headers() -> None:
    for a in (
        np.zeros((300, 300), np.uint16),
        np.full((5, 64, 64), -2000, np.int16),
        np.full((1, 1), 255, np.uint8),
    ):
        s = roundtrip(a)
        assert len(s) < 1200


def test_ct_padding_and_nodata_next_to_data() -> None:
    rng = np.random.default_rng(1)
    a = (rng.normal(40, 20, (128, 128)).cumsum(1) / 10).astype(np.int16)
    yy, xx = np.mgrid[:128, :128]
    pad = (yy - 64) ** 2 + (xx - 64) ** 2 > 56**2
    a[pad] = -2000
    roundtrip(a)
    b = a.copy()
    b[:, :60] = -32768  # DEM nodata beside valid data
    roundtrip(b)
    rates = llic_imaging.rate_map(a)
    # Padding is cheap but not free yet: the patch origins and first rows pay for missing context
    # (measured: median 0.15, mean 1.2 bits in padding vs about 4 in tissue).
    assert np.median(rates[pad]) < 0.25
    assert rates[pad].mean() < rates[~pad].mean() / 2


def test_sparse_palette_values() -> None:
    rng = np.random.default_rng(2)
    a = (rng.integers(0, 8, (96, 96)) * 32).astype(np.uint8)
    a = np.repeat(np.repeat(a[::4, ::4], 4, 0), 4, 1)
    roundtrip(a)


def test_noise_does_not_grow_more_than_one_percent_plus_header() -> None:
    rng = np.random.default_rng(3)
    for dtype, bits in (("uint16", 16), ("uint8", 8), ("uint16", 12)):
        a = rng.integers(0, 2**bits, (128, 128)).astype(dtype)
        s = llic_imaging.encode(a)
        payload_bound = a.size * bits / 8 * 1.01
        assert len(s) <= payload_bound + 2048, (dtype, bits, len(s), payload_bound)
        np.testing.assert_array_equal(llic_imaging.decode(s), a)


def test_large_image_4096() -> None:
    """A 4096 x 4096 stack member: mostly constant tiles (cheap) plus textured ones at the edges."""
    rng = np.random.default_rng(4)
    a = np.full((4096, 4096), 17, np.int16)
    a[:40, :50] = rng.integers(-300, 300, (40, 50))
    a[-30:, -37:] = np.cumsum(rng.integers(-3, 4, (30, 37)), axis=1)
    a[2040:2060, 4070:] = rng.integers(0, 2, (20, 26))
    s = roundtrip(a, tile=256)
    assert llic_imaging.info(s).chunk_count == 256


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 48),
    w=st.integers(1, 48),
    n=st.integers(1, 3),
    dtype=st.sampled_from(["uint8", "int8", "uint16", "int16"]),
    kind=st.sampled_from(["smooth", "noise", "constant", "sparse"]),
    tile=st.sampled_from([8, 16, 40, 256]),
    seed=st.integers(0, 2**16),
)
def test_roundtrip_property(
    h: int, w: int, n: int, dtype: str, kind: str, tile: int, seed: int
) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    if kind == "smooth":
        a = np.cumsum(rng.normal(0, 30, (n, h, w)), axis=2) + (int(info.min) + int(info.max)) / 2
    elif kind == "noise":
        a = rng.integers(info.min, info.max, (n, h, w), endpoint=True)
    elif kind == "constant":
        a = np.full((n, h, w), rng.integers(info.min, info.max, endpoint=True))
    else:
        a = rng.integers(0, 4, (n, h, w)) * 32 + int(info.min)
    a = np.clip(a, info.min, info.max).astype(dtype)
    roundtrip(a[0] if n == 1 else a, tile=tile)


def test_decode_one_plane_only() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 1000, (4, 40, 50)).astype(np.uint16)
    s = llic_imaging.encode(a, tile=16)
    for i in range(4):
        np.testing.assert_array_equal(llic_imaging.decode(s, i), a[i])
    np.testing.assert_array_equal(llic_imaging.decode(s, -1), a[3])
    with pytest.raises(IndexError):
        llic_imaging.decode(s, 4)


def test_info_and_metadata() -> None:
    a = np.arange(600, dtype=np.int16).reshape(20, 30)
    s = llic_imaging.encode(a, metadata=b"hello", tile=16)
    i = llic_imaging.info(s)
    d = i.to_dict()
    assert d["shape"] == [20, 30]
    assert d["dtype"] == "int16"
    assert d["bits_per_sample"] == 16
    assert d["chunk_count"] == 4
    assert d["model"] == zoo.DEFAULT_MODEL
    assert d["patch"] == DEFAULT_PATCH == 64  # 16-bit data too (session 8); 8-bit: 128
    assert zoo.model_info(d["model"]).sha256.startswith(d["model_sha256"])
    assert len(d["model_sha256"]) == llic_imaging._api.MODEL_HASH_HEX
    assert llic_imaging.metadata(s) == b"hello"
    assert llic_imaging.check(s) is True
    assert llic_imaging.check(b"nope") is False


def test_rate_map_matches_payload() -> None:
    rng = np.random.default_rng(6)
    a = (np.cumsum(rng.normal(0, 8, (128, 160)), 1) + 3000).astype(np.uint16)
    s = llic_imaging.encode(a, tile=64)
    rates = llic_imaging.rate_map(a, tile=64)
    assert rates.shape == a.shape
    assert rates.dtype == np.float32
    c = llic_imaging.container.read(s)
    payload_bits = sum(e.length for e in c.chunks) * 8
    assert abs(rates.sum() - payload_bits) <= 0.01 * payload_bits + 8 * 64 * len(c.chunks)


def test_bad_inputs() -> None:
    with pytest.raises(FormatError):
        llic_imaging.encode(np.zeros((4, 4), np.float32))
    with pytest.raises(FormatError):
        llic_imaging.encode(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(FormatError):
        llic_imaging.encode(np.zeros((0, 4), np.uint8))
    with pytest.raises(StreamError):
        llic_imaging.decode(b"garbage")
    with pytest.raises(ModelError):
        llic_imaging.encode(np.zeros((4, 4), np.uint8), model="hpac-huge-v9")


def _rewritten(c: container.Container, header: dict | None = None, **payloads: bytes) -> bytes:
    """``c`` written again with valid checksums: ``header`` fields changed, and chunk ``i``'s
    payload replaced where ``payloads`` has ``chunk{i}``, to forge what a writer would not."""
    chunks = [(e.key, payloads.get(f"chunk{i}", c.payload(i))) for i, e in enumerate(c.chunks)]
    return container.write(
        {**c.header, **(header or {})}, chunks, metadata=c.metadata, array_sha256=c.array_sha256
    )


def _with_model_hash(stream: bytes, model_hash: str) -> bytes:
    return _rewritten(container.read(stream), {"model_sha256": model_hash})


@pytest.mark.parametrize(
    "fields",
    [
        {"model": ["hpac-small-v5"]},
        {"model_sha256": 12345678901234567890},
        {"level": "x"},
        {"format": True},
        {"spec": {"dtype": "uint8", "shape": "88"}},  # digits: the same tile count as (8, 8)
        {"spec": {"dtype": "uint8", "shape": [300, 8]}},  # 2 tiles, 1 chunk
    ],
    ids=["model-list", "hash-int", "level-str", "format-bool", "shape-str", "shape-count"],
)
def test_forged_header_fields_are_stream_errors_in_info_and_decode(fields: dict) -> None:
    stream = _rewritten(container.read(llic_imaging.encode(np.ones((8, 8), np.uint8))), fields)
    for call in (llic_imaging.info, llic_imaging.decode):
        with pytest.raises(StreamError):
            call(stream)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS caps allocations on Linux")
def test_a_tiny_stream_declaring_a_huge_image_is_a_stream_error(tmp_path: Path) -> None:
    """1,024 constant 4096 x 4096 tiles: a 20 kB stream declaring 32 GiB. In a process capped
    at 3 GiB of address space decoding must fail with a StreamError, not a MemoryError."""
    c = container.read(llic_imaging.encode(np.full((8, 8), 3, np.uint16)))
    side = 1 << 17
    constant = ChunkParams(kind=0, vmin=3, vmax=0, shift=0, mid=0).pack(3)
    chunks = [
        (container.ChunkKey(r.plane, r.y, r.x, r.h, r.w), constant)
        for r in tile_grid((1, side, side), 4096)
    ]
    header = {**c.header, "tile": 4096, "spec": {"dtype": "uint16", "shape": [side, side]}}
    bomb = tmp_path / "bomb.llic"
    bomb.write_bytes(container.write(header, chunks, array_sha256=c.array_sha256))
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
        "import llic_imaging\n"
        "try: llic_imaging.decode(open(sys.argv[1], 'rb').read())\n"
        "except Exception as exc: print(type(exc).__name__, exc)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=300
    )
    assert run.stdout.startswith("StreamError"), run.stdout + run.stderr
    assert "32.0 GiB" in run.stdout


def test_stream_from_other_weights_is_refused() -> None:
    a = np.arange(100, dtype=np.uint8).reshape(10, 10)
    stream = llic_imaging.encode(a)
    with pytest.raises(ModelError, match="sha256"):
        llic_imaging.decode(_with_model_hash(stream, "0" * 64))
    with pytest.raises(ModelError, match="sha256"):
        llic_imaging.decode(_with_model_hash(stream, "0" * llic_imaging._api.MODEL_HASH_HEX))
    with pytest.raises(StreamError, match="hex digits"):
        llic_imaging.decode(_with_model_hash(stream, "ab"))


def test_stream_with_full_model_hash_decodes() -> None:
    """Streams written before the 64-bit prefix carry the whole digest; they still decode."""
    a = np.arange(100, dtype=np.uint8).reshape(10, 10)
    stream = llic_imaging.encode(a)
    full = zoo.model_info(llic_imaging.info(stream).model).sha256
    old = _with_model_hash(stream, full)
    assert len(old) > len(stream)
    assert np.array_equal(llic_imaging.decode(old), a)


def test_fuzzed_streams_raise_llic_errors_only() -> None:
    rng = np.random.default_rng(8)
    a = (np.cumsum(rng.normal(0, 5, (40, 60)), 1) + 500).astype(np.uint16)
    s = llic_imaging.encode(a, tile=16)
    for _ in range(150):
        b = bytearray(s)
        if rng.random() < 0.5:
            b = b[: rng.integers(0, len(b))]
        else:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(0, len(b))] ^= 1 << rng.integers(0, 8)
        try:
            out = llic_imaging.decode(bytes(b))
        except llic_imaging.LlicError:
            continue
        np.testing.assert_array_equal(out, a)


def test_crafted_chunks_raise_llic_errors_only() -> None:
    """Chunk headers and words mutated with every checksum rewritten, as a hostile writer
    would: the codec's own checks (headers, range-coded words, the array digest) refuse them
    with an ``LlicError``, never another exception, a hang or a wrong image. The streams hold
    a mapped linear feedback chunk, and flat flags on a mapped chunk and on delta chunks."""
    from _linear_data import interpolated
    from _value_map_data import thresholded

    rng = np.random.default_rng(12)
    body = thresholded(1, noise=0)[0].astype(np.int64)
    stack = np.stack(
        [np.where(body > 0, body + rng.integers(-2, 3, body.shape), 0) for _ in range(2)]
    ).astype(np.uint8)
    for a in ((interpolated(3, (64, 64)) // 2 * 2).astype(np.uint16), stack):
        s = llic_imaging.encode(a, context=2)
        kinds = chunk_headers(s)
        assert any(k.linear or k.flat for k in kinds)
        c = container.read(s)
        for _ in range(60):
            i = int(rng.integers(len(c.chunks)))
            b = bytearray(c.payload(i))
            if rng.random() < 0.7:  # headers are the first bytes
                b[int(rng.integers(min(len(b), 24)))] ^= 1 << int(rng.integers(8))
            else:
                b = b[: int(rng.integers(len(b)))]
            try:
                out = llic_imaging.decode(_rewritten(c, **{f"chunk{i}": bytes(b)}))
            except llic_imaging.LlicError:
                continue
            np.testing.assert_array_equal(out, a)


def test_window_and_plane_decode_only_touch_their_tiles() -> None:
    """Damage every chunk except those of one window: that window and plane still decode."""
    from llic_imaging import container

    rng = np.random.default_rng(9)
    a = rng.integers(0, 300, (2, 64, 64)).astype(np.uint16)
    s = llic_imaging.encode(a, tile=16)
    c = container.read(s)
    keep = {i for i, e in enumerate(c.chunks) if e.plane == 1 and e.y == 16 and e.x in (16, 32)}
    damaged = bytearray(s)
    payload_start = len(s) - sum(e.length for e in c.chunks)
    for i, e in enumerate(c.chunks):
        if i not in keep:
            damaged[payload_start + e.offset + e.length - 1] ^= 0xFF
    win = llic_imaging.decode(bytes(damaged), 1, window=(18, 20, 10, 25))
    np.testing.assert_array_equal(win, a[1, 18:28, 20:45])
    with pytest.raises(llic_imaging.ChecksumError):
        llic_imaging.decode(bytes(damaged), 0)


def test_read_window_from_file(tmp_path) -> None:
    rng = np.random.default_rng(10)
    bands = rng.integers(0, 4000, (3, 90, 70)).astype(np.uint16)
    path = tmp_path / "scene.llic"
    path.write_bytes(llic_imaging.encode(bands, tile=32))
    win = llic_imaging.read_window(path, (40, 10, 20, 50), 2)
    np.testing.assert_array_equal(win, bands[2, 40:60, 10:60])
    with pytest.raises(ValueError, match="window"):
        llic_imaging.read_window(path, (80, 0, 20, 10))


class CountingFile(io.FileIO):
    """An unbuffered file that records the bytes its reads return: what a reader touches."""

    bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_read_window_reads_only_sections_and_touched_tiles(tmp_path, monkeypatch) -> None:
    """A one-tile window of a 64-tile stream reads a few KB: prelude, header, index, one tile."""
    from llic_imaging import _api

    image = np.random.default_rng(11).integers(0, 4096, (256, 256)).astype(np.uint16)
    stream = llic_imaging.encode(image, tile=32)
    path = tmp_path / "big.llic"
    path.write_bytes(stream)
    opened: list[CountingFile] = []

    def counting_open(file, mode: str = "r") -> CountingFile:
        opened.append(CountingFile(file, mode))
        return opened[-1]

    monkeypatch.setattr(_api, "open", counting_open, raising=False)
    window = (70, 100, 10, 20)  # inside the tile at (64, 96)
    win = llic_imaging.read_window(path, window)
    np.testing.assert_array_equal(win, llic_imaging.decode(stream)[70:80, 100:120])
    (f,) = opened
    assert f.closed
    assert f.bytes_read < len(stream) / 10

    damaged = bytearray(stream)
    damaged[-1] ^= 1  # the last tile, far from the window
    path.write_bytes(damaged)
    np.testing.assert_array_equal(llic_imaging.read_window(path, window), win)
    with pytest.raises(llic_imaging.ChecksumError, match="chunk 63"):
        llic_imaging.read_window(path, (250, 250, 6, 6))
    path.write_bytes(stream[:-1])
    with pytest.raises(StreamError, match="truncated"):
        llic_imaging.read_window(path, window)


@pytest.mark.parametrize("patch", [16, 32, 128])
def test_other_patch_sizes_round_trip_and_are_recorded(patch: int) -> None:
    rng = np.random.default_rng(patch)
    a = (np.cumsum(rng.integers(-3, 4, (70, 150)), axis=1) + 2000).astype(np.uint16)
    data = llic_imaging.encode(a, patch=patch, tile=64)
    c = container.read(data)
    assert c.header["patch"] == patch
    assert np.array_equal(llic_imaging.decode(data), a)
    payload = sum(len(c.payload(i)) for i in range(len(c.chunks)))
    rates = llic_imaging.rate_map(a, patch=patch, tile=64)
    assert abs(rates.sum() / (8 * payload) - 1) < 0.03


def test_unknown_patch_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="patch must be one of"):
        llic_imaging.encode(np.zeros((8, 8), np.uint8), patch=48)
    data = llic_imaging.encode(np.arange(64, dtype=np.uint8).reshape(8, 8))
    forged = _rewritten(container.read(data), {"patch": 48})
    with pytest.raises(llic_imaging.StreamError, match="unsupported tile"):
        llic_imaging.decode(forged)


def _probe_winner(img: np.ndarray, names: list[str]) -> str:
    import torch

    from llic_imaging.codec.engine import probe_bits, probe_refs
    from llic_imaging.model.runtime import deterministic

    refs = probe_refs(img[None], 256)
    assert 1 <= len(refs) <= 4
    assert all(r.h <= 128 and r.w <= 128 for r in refs)
    with deterministic():
        nets = [zoo.load(n)[0] for n in names]
        costs = [
            probe_bits(n, img[None], refs, patch=DEFAULT_PATCH_8BIT, device=torch.device("cpu"))
            for n in nets
        ]
    return names[int(np.argmin(costs))]


def test_automatic_model_choice_for_8_bit_data() -> None:
    """8-bit data: the default model and the shipped 8-bit fine-tune compete on a probe; the
    winner is recorded, decodes, and the rate map uses the same model."""
    names = zoo.auto_candidates(8)
    assert names == [zoo.DEFAULT_MODEL, "hpac-small-v5-med8"]
    rng = np.random.default_rng(5)
    img = (np.cumsum(rng.integers(-3, 4, (300, 260)), axis=1) % 200).astype(np.uint8)
    data = llic_imaging.encode(img)
    assert llic_imaging.info(data).patch == DEFAULT_PATCH_8BIT == 128  # 8-bit default
    assert llic_imaging.info(data).model == _probe_winner(img, names)
    assert llic_imaging.info(llic_imaging.encode(img, model="auto")).model == _probe_winner(
        img, names
    )
    np.testing.assert_array_equal(llic_imaging.decode(data), img)
    c = container.read(data)
    payload_bits = sum(e.length for e in c.chunks) * 8
    rates = llic_imaging.rate_map(img)
    assert abs(rates.sum() - payload_bits) <= 0.01 * payload_bits + 8 * 64 * len(c.chunks)
    const = llic_imaging.encode(np.full((40, 40), 7, np.uint8))
    assert llic_imaging.info(const).model == zoo.DEFAULT_MODEL  # nothing to probe
    named = llic_imaging.encode(img, model=zoo.DEFAULT_MODEL)
    assert llic_imaging.info(named).model == zoo.DEFAULT_MODEL  # a name overrides the choice


def test_automatic_choice_weighs_registered_fine_tunes_of_the_data_s_domain(
    tmp_path, monkeypatch
) -> None:
    """16-bit data is coded with the default model unless a 16-bit fine-tune is installed; a
    copy of the fast model registered as one (``"domain": "16-bit"``) stands in for it."""
    import json
    import shutil
    from importlib import resources

    assert zoo.auto_candidates(16) == [zoo.DEFAULT_MODEL]
    shipped = resources.files("llic_imaging.weights")
    entry = json.loads(shipped.joinpath("MODELS.json").read_text())["hpac-lite-v2"]
    with resources.as_file(shipped.joinpath(entry["file"])) as src:
        shutil.copy(src, tmp_path / entry["file"])
    (tmp_path / "MODELS.json").write_text(json.dumps({"ft-16": {**entry, "domain": "16-bit"}}))
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(tmp_path))
    assert zoo.auto_candidates(16) == [zoo.DEFAULT_MODEL, "ft-16"]
    rng = np.random.default_rng(5)
    img = (np.cumsum(rng.integers(-40, 41, (300, 260)), axis=1) % 4096).astype(np.uint16)
    data = llic_imaging.encode(img)
    assert llic_imaging.info(data).model == _probe_winner(img, zoo.auto_candidates(16))
    np.testing.assert_array_equal(llic_imaging.decode(data), img)


def _bands(n: int = 6, seed: int = 11) -> np.ndarray:
    """Registered bands: one textured scene, scaled and offset per band, plus a little noise."""
    rng = np.random.default_rng(seed)
    scene = np.cumsum(np.cumsum(rng.normal(0, 3, (72, 90)), 0), 1)
    scene = (scene - scene.min()) / np.ptp(scene) * 3000
    bands = [scene * (1 + 0.02 * k) + 40 * k + rng.normal(0, 1, scene.shape) for k in range(n)]
    return np.clip(np.stack(bands), 0, 65535).astype(np.uint16)


def test_plane_context_codes_registered_bands_smaller_and_reads_any_plane() -> None:
    a = _bands()
    plain = roundtrip(a, tile=32, context=1)
    s = roundtrip(a, tile=32)  # DEFAULT_CONTEXT = 4
    assert len(s) < 0.95 * len(plain)
    assert container.read(s).header["context"] == 4
    assert "context" not in container.read(plain).header
    for i in range(a.shape[0]):
        np.testing.assert_array_equal(llic_imaging.decode(s, i), a[i])
    np.testing.assert_array_equal(
        llic_imaging.decode(s, 3, window=(5, 40, 30, 40)), a[3, 5:35, 40:80]
    )


def test_plane_context_4_is_the_default_and_keeps_unrelated_planes_intra() -> None:
    rng = np.random.default_rng(12)
    a = rng.integers(0, 4096, (5, 40, 50)).astype(np.uint16)
    default, off = (
        container.read(llic_imaging.encode(a, tile=16)),
        container.read(llic_imaging.encode(a, tile=16, context=1)),
    )
    assert default.header["context"] == llic_imaging._api.DEFAULT_CONTEXT == 4
    payloads = [[c.payload(i) for i in range(len(c.chunks))] for c in (default, off)]
    same = sum(a == b for a, b in zip(*payloads, strict=True))
    assert same >= 0.9 * len(payloads[0])  # noise planes: (nearly) every tile stays intra
    assert sum(map(len, payloads[0])) <= sum(map(len, payloads[1]))
    assert llic_imaging.encode(a[0], context=8) == llic_imaging.encode(a[0])  # one plane
    roundtrip(a, tile=16, context=3)
    # int16 planes whose differences span more than 16 bits cannot be coded as deltas
    b = np.stack([np.full((20, 20), -32768), np.full((20, 20), 32767)]).astype(np.int16)
    b[1, ::3] = -32768
    roundtrip(b, tile=8, context=2)


def test_plane_context_delta_reading_needs_only_its_group() -> None:
    """Damage every chunk of planes outside plane 5's group (planes 4-7 with K = 4)."""
    a = _bands(n=8)
    s = llic_imaging.encode(a, tile=32, context=4)
    c = container.read(s)
    damaged = bytearray(s)
    payload_start = len(s) - sum(e.length for e in c.chunks)
    for e in c.chunks:
        if not 4 <= e.plane <= 5:
            damaged[payload_start + e.offset + e.length - 1] ^= 0xFF
    np.testing.assert_array_equal(llic_imaging.decode(bytes(damaged), 5), a[5])
    with pytest.raises(llic_imaging.ChecksumError):
        llic_imaging.decode(bytes(damaged), 3)


@pytest.mark.parametrize("context", [0, -1, 1025])
def test_plane_context_out_of_range_is_refused(context: int) -> None:
    with pytest.raises(ValueError, match="context"):
        llic_imaging.encode(np.zeros((2, 8, 8), np.uint8), context=context)


def _earlier_format_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The arrays of ``tests/data/format*.llic``, written in session 11 by the previous release
    (container v2, codec formats 1 and 2, full sha256 digests)."""
    rng = np.random.default_rng(2026)
    y, x = np.mgrid[:48, :40]
    u8 = 100 + 60 * np.sin(x / 7) * np.cos(y / 9) + rng.normal(0, 3, (48, 40))
    base = 300 * np.sin(np.mgrid[:40, :36][1] / 5)
    i16 = [base * (1 + 0.05 * k) - 1000 + rng.normal(0, 4, base.shape) for k in range(3)]
    return np.clip(u8, 0, 255).astype(np.uint8), np.stack(i16).astype(np.int16)


def test_streams_of_earlier_formats_still_decode() -> None:
    """Archives outlive releases: v2 containers with formats 1 and 2 decode, whole and by plane,
    and the same arrays written now are smaller (container v3, compact chunk headers)."""
    data = Path(__file__).parent / "data"
    u8, i16 = _earlier_format_arrays()
    old_u8 = (data / "format1-container2-u8.llic").read_bytes()
    old_i16 = (data / "format2-container2-i16.llic").read_bytes()
    assert [(c.version, c.header["format"]) for c in map(container.read, (old_u8, old_i16))] == [
        (2, 1),
        (2, 2),
    ]
    np.testing.assert_array_equal(llic_imaging.decode(old_u8), u8)
    np.testing.assert_array_equal(llic_imaging.decode(old_i16), i16)
    np.testing.assert_array_equal(llic_imaging.decode(old_i16, 2), i16[2])
    new_u8, new_i16 = llic_imaging.encode(u8), llic_imaging.encode(i16)
    assert container.read(new_u8).version == 3
    assert len(new_u8) < len(old_u8) - 40
    assert len(new_i16) < len(old_i16) - 100


def test_golden_format5_stream_decodes() -> None:
    """``tests/data/format5-container3-u8.llic``, written in session 13 when value maps came:
    a mapped tile and a resid chunk that refers to it. Later releases must still read it."""
    from _value_map_data import thresholded

    stack = thresholded(2, noise=2.0)
    old = (Path(__file__).parent / "data" / "format5-container3-u8.llic").read_bytes()
    assert llic_imaging.info(old).codec_format == 5
    np.testing.assert_array_equal(llic_imaging.decode(old), stack)
    np.testing.assert_array_equal(llic_imaging.decode(old, 1), stack[1])


def test_a_forged_value_map_is_caught() -> None:
    """A value map that parses (checksums rewritten) but moves the unused run gives other
    values: the array digest refuses them. Read as format 4 (no maps), the same payloads are
    refused too, never decoded into an image."""
    from dataclasses import replace

    from _value_map_data import thresholded
    from llic_imaging.codec.engine import ChunkParams

    image = thresholded()[0]
    c = container.read(llic_imaging.encode(image))
    p, words = ChunkParams.unpack(c.payload(0), fmt=5)
    (start, n), *rest = p.gaps
    moved = replace(p, gaps=((start + 1, n), *rest))
    with pytest.raises(llic_imaging.ChecksumError):
        llic_imaging.decode(_rewritten(c, chunk0=moved.pack(5) + words))
    with pytest.raises((llic_imaging.StreamError, llic_imaging.ChecksumError)):
        llic_imaging.decode(_rewritten(c, {"format": 4}))


@pytest.mark.parametrize("stored", ["", "ab", "zz" * 16, 7])
def test_plane_hashes_shorter_than_128_bits_or_not_hex_are_refused(stored: object) -> None:
    """A plane is checked against the first 16 bytes of its sha256 (32 hex digits); a forged
    header cannot make that check pass with a shorter or malformed digest."""
    a = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16) % 97
    c = container.read(llic_imaging.encode(a))
    assert [len(h) for h in c.header["plane_sha256"]] == [32] * 3
    np.testing.assert_array_equal(llic_imaging.decode(llic_imaging.encode(a), 1), a[1])
    forged = _rewritten(c, {"plane_sha256": [stored] * 3})
    np.testing.assert_array_equal(llic_imaging.decode(forged), a)  # the array digest holds
    with pytest.raises(llic_imaging.ChecksumError, match="plane 1"):
        llic_imaging.decode(forged, 1)


def _shifting_slices() -> np.ndarray:
    """Slices whose structure moves (so differences do not pay) over a texture that stays at
    the same pixels (so the previous slice's prediction errors do): what resid chunks are for."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:64, :64]
    texture = rng.normal(0, 5, (64, 64))
    slices = [
        1000 + 400 * ((x + 4 * k) // 8 % 2) + 150 * np.sin(y / 5 + k) + texture for k in range(4)
    ]
    return np.stack([s + rng.normal(0, 1, s.shape) for s in slices]).astype(np.uint16)


def test_resid_chunks_code_moving_slices_smaller_and_read_any_plane() -> None:

    a = _shifting_slices()
    plain, s = llic_imaging.encode(a, tile=32, context=1), llic_imaging.encode(a, tile=32)
    c = container.read(s)
    kinds = chunk_headers(s)
    resid = [k for k in kinds if k.resid]
    assert len(resid) >= 6
    assert not any(k.resid for k, e in zip(kinds, c.chunks, strict=True) if e.plane == 0)
    assert all(k.gain > 0 for k in resid)
    assert len(s) < len(plain)
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
    for i in range(a.shape[0]):
        np.testing.assert_array_equal(llic_imaging.decode(s, i), a[i])
    np.testing.assert_array_equal(
        llic_imaging.decode(s, 3, window=(5, 40, 20, 20)), a[3, 5:25, 40:60]
    )
    # a resid tile is read through its reference: damage plane 0 and plane 1 fails too
    damaged = bytearray(s)
    start = len(s) - sum(e.length for e in c.chunks)
    for e in c.chunks:
        if e.plane == 0:
            damaged[start + e.offset + e.length - 1] ^= 0xFF
    with pytest.raises(llic_imaging.ChecksumError):
        llic_imaging.decode(bytes(damaged), 1)


def test_resid_chunks_decode_the_same_with_any_thread_count() -> None:
    a = _shifting_slices()
    s = llic_imaging.encode(a, tile=32, numthreads=2)
    assert llic_imaging.encode(a, tile=32, numthreads=1) == s
    np.testing.assert_array_equal(llic_imaging.decode(s, numthreads=1), a)


def _with_chunk(c: container.Container, i: int, params) -> bytes:
    """``c`` re-written with chunk ``i``'s header replaced by ``params`` (valid checksums)."""
    from llic_imaging.codec.engine import ChunkParams

    fmt = c.header["format"]
    words = ChunkParams.unpack(c.payload(i), fmt=fmt)[1]
    return _rewritten(c, **{f"chunk{i}": params.pack(fmt) + words})


def test_forged_resid_chunks_fail_cleanly() -> None:
    """A resid header forged onto a chunk (checksums valid) gives a named error, never an image:
    refused outright where its reference is constant, caught by the digests otherwise."""
    from dataclasses import replace

    from llic_imaging.codec.engine import ChunkParams

    a = _shifting_slices()[:2]
    a[0] = 1000  # a constant first plane
    c = container.read(llic_imaging.encode(a, tile=64))
    p = ChunkParams.unpack(c.payload(1), fmt=c.header["format"])[0]
    assert p.coded
    assert not p.resid
    with pytest.raises(llic_imaging.StreamError, match="constant tile"):
        llic_imaging.decode(_with_chunk(c, 1, replace(p, kind=5, gain=32, tighten=2)))
    b = _shifting_slices()[:2]
    c = container.read(llic_imaging.encode(b, tile=64, context=1))
    p = ChunkParams.unpack(c.payload(1), fmt=c.header["format"])[0]
    forged = _with_chunk(c, 1, replace(p, kind=5, gain=64, tighten=4))
    with pytest.raises(llic_imaging.StreamError, match="context group"):
        llic_imaging.decode(forged)  # the header says K = 1: no plane has a reference
    c = container.read(llic_imaging.encode(b, tile=64, context=2))
    p = ChunkParams.unpack(c.payload(1), fmt=c.header["format"])[0]
    with pytest.raises(llic_imaging.LlicError):
        llic_imaging.decode(_with_chunk(c, 1, replace(p, kind=5, gain=p.gain ^ 64, tighten=4)))


def _streaky() -> np.ndarray:
    """Noise correlated along rows (a detector's streaks): the network's errors at a pixel and
    its left neighbour correlate, which feedback chunks take."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 40, (96, 134))
    noise = sum(noise[:, k : k + 128] for k in range(7)) / 7
    x = np.arange(128)[None, :]
    return (2000 + 300 * np.sin(x / 15) + noise).astype(np.uint16)


def test_golden_feedback_stream_decodes() -> None:
    """``tests/data/format3-container3-feedback-u16.llic``: ``_streaky()`` as session 13 coded
    it, four feedback chunks on the W neighbour. Linear feedback now codes it smaller, so this
    stream is what keeps the plain feedback path read."""
    s = (Path(__file__).parent / "data" / "format3-container3-feedback-u16.llic").read_bytes()
    a = _streaky()
    kinds = chunk_headers(s)
    assert llic_imaging.info(s).codec_format == 3
    assert sum(k.feedback for k in kinds) >= 2
    assert all(k.taps == 1 and k.gain > 0 for k in kinds if k.feedback)  # the W neighbour
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
    np.testing.assert_array_equal(llic_imaging.decode(s, window=(10, 70, 40, 50)), a[10:50, 70:120])
    assert len(llic_imaging.encode(a, tile=64)) < 0.97 * len(s)


def test_golden_format6_stream_decodes() -> None:
    """``tests/data/format6-container3-linear-u16.llic``: ``_linear_data.interpolated()`` as
    session 14's code wrote it (tile 64, patch 32), five linear chunks, before format 7's flat
    flags. Later releases must still read it."""
    from _linear_data import interpolated

    s = (Path(__file__).parent / "data" / "format6-container3-linear-u16.llic").read_bytes()
    a = interpolated()
    assert llic_imaging.info(s).codec_format == 6
    assert sum(k.linear for k in chunk_headers(s)) == 5
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
    np.testing.assert_array_equal(llic_imaging.decode(s, window=(30, 50, 40, 70)), a[30:70, 50:120])


def test_linear_feedback_chunks_round_trip_and_match_the_rate_map() -> None:
    a = _streaky()
    s = llic_imaging.encode(a, tile=64)
    kinds = chunk_headers(s)
    assert llic_imaging.info(s).codec_format == 6
    assert sum(k.linear for k in kinds) >= 2
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
    np.testing.assert_array_equal(llic_imaging.decode(s, window=(10, 70, 40, 50)), a[10:50, 70:120])
    assert llic_imaging.encode(a, tile=64, numthreads=2) == s
    c = container.read(s)
    words = sum(len(c.payload(i)) - len(k.pack(6)) for i, k in enumerate(kinds))  # no headers
    rates = llic_imaging.rate_map(a, tile=64)
    assert abs(rates.sum() / (8 * words) - 1) < 0.01


@pytest.fixture(scope="module")
def adapted_stream() -> tuple[np.ndarray, bytes]:
    a = period_three(2)
    return a, llic_imaging.encode(a, tile=64, adapt=30)


def test_adapted_streams_round_trip_and_read_any_plane_or_window(adapted_stream) -> None:
    a, s = adapted_stream
    info = llic_imaging.info(s)
    assert info.adapted
    assert info.codec_format >= 4
    assert len(s) < 0.97 * len(llic_imaging.encode(a, tile=64))
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
    np.testing.assert_array_equal(llic_imaging.decode(s, 1), a[1])
    np.testing.assert_array_equal(
        llic_imaging.decode(s, window=(70, 10, 30, 90)), a[0, 70:100, 10:100]
    )
    ticks: list[int] = []
    again = llic_imaging.encode(a, tile=64, adapt=30, numthreads=2, progress=ticks.append)
    assert again == s  # fitting is 1-thread
    assert sum(ticks) == 3 * 8  # 8 tiles: the plain pass, the fitting, the adapted pass
    assert len(ticks) > 8  # the fitting ticks as it goes


def test_adaptation_that_does_not_pay_leaves_the_plain_stream() -> None:
    a = _streaky()
    s = llic_imaging.encode(a, tile=64, adapt=30)
    assert s == llic_imaging.encode(a, tile=64)
    assert not llic_imaging.info(s).adapted


@pytest.mark.parametrize("adapt", [-1, 1.5, "yes"])
def test_bad_adapt_values_are_refused(adapt: object) -> None:
    with pytest.raises(ValueError, match="adapt"):
        llic_imaging.encode(np.zeros((8, 8), np.uint8), adapt=adapt)


def _zero_adapter() -> bytes:
    """A well-formed adapter that changes nothing: decoding with it gives the wrong image."""
    from llic_imaging.codec import adapt

    net = zoo.load()[0]
    return adapt.pack(np.zeros(sum(p.numel() for p in net.state_dict().values()), np.int64))


def test_forged_adapters_fail_cleanly(adapted_stream) -> None:
    a, s = adapted_stream
    c = container.read(s)
    last = len(c.chunks) - 1
    forged = {
        "format 3 with an adapter": _rewritten(c, {"format": 3}),
        "adapter flag 2": _rewritten(c, {"adapter": 2}),
        "no adapter flag": _rewritten(c, {"adapter": 0}),
        "junk adapter": _rewritten(c, **{f"chunk{last}": b"\x00" * 40}),
        "the base model's adapter": _rewritten(c, **{f"chunk{last}": _zero_adapter()}),
    }
    for stream in forged.values():
        with pytest.raises(llic_imaging.LlicError):
            llic_imaging.decode(stream)
    flipped = bytearray(s)
    flipped[-5] ^= 1  # inside the adapter chunk, the last one
    with pytest.raises(llic_imaging.ChecksumError):
        llic_imaging.decode(bytes(flipped))
    missing = container.write(
        c.header,
        [(e.key, c.payload(i)) for i, e in enumerate(c.chunks[:last])],
        metadata=c.metadata,
        array_sha256=c.array_sha256,
    )
    with pytest.raises(StreamError):
        llic_imaging.decode(missing)
