"""Engine rules a hostile stream could break (delta and resid chunks outside their context group
or range, header limits) and the equalities resid chunks rest on."""

from __future__ import annotations

import numpy as np
import pytest

from _streams import chunk_headers
from _value_map_data import thresholded
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
@pytest.mark.parametrize("kind", [3, 5])
def test_delta_chunk_outside_its_group_is_refused(planes: int, context: int, kind: int) -> None:
    """Delta (3) and resid (5) chunks both need the same tile of the previous plane."""
    params = [ChunkParams(1, 0, 9, 0, 0)] * (planes - 1) + [ChunkParams(kind, 0, 9, 0, 0)]
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


def _fixed(p: ChunkParams) -> bytes:
    """The chunk header of codec formats 1-2."""
    return engine._CHUNK_HEADER.pack(p.kind, p.vmin, p.vmax, p.shift, p.mid)


@pytest.mark.parametrize("fmt", [2, 3, 5])
def test_delta_chunk_header_limits(fmt: int) -> None:
    compact = fmt >= 3
    pack = (lambda p: p.pack(fmt)) if compact else _fixed
    ok = pack(ChunkParams(3, -0xFFFF, 0xFFFF, 0, 0)) + b"\0" * 4
    assert ChunkParams.unpack(ok, fmt=fmt)[0].delta
    bad = [ChunkParams(1, -0xFFFF, 10, 0, 0), ChunkParams(1, 0, 10, 13, 0)]
    bad += [ChunkParams(1, 0, 10, 0, 11), ChunkParams(4, 0, 10, 0, 0), ChunkParams(7, 0, 9, 0, 0)]
    bad += [ChunkParams(5, 0, 10, 0, 0, 256), ChunkParams(5, 0, 10, 0, 0, 8, 16)] if compact else []
    bad += [ChunkParams(9, 0, 10, 0, 0, 8, 2, 4), ChunkParams(13, 0, 10, 0, 0)] if compact else []
    if not compact:  # formats 1-2 have neither refined chunks nor their fields
        bad += [ChunkParams(5, 0, 10, 0, 0), ChunkParams(9, 0, 10, 0, 0)]
    for p in bad:
        with pytest.raises(StreamError):
            ChunkParams.unpack(pack(p), fmt=fmt)


@pytest.mark.parametrize(
    "p",
    [
        ChunkParams(0, 0, 0, 0, 0),
        ChunkParams(0, -2000, 0, 0, 0),
        ChunkParams(2, -0xFFFF, 0, 0, 0),
        ChunkParams(1, 3, 250, 2, 128),
        ChunkParams(3, -70, 140, 12, 70),
        ChunkParams(1, -0x8000, 0xFFFF, 0, 0xFFFF),
        ChunkParams(5, 3, 250, 2, 128, 40, 2),
        ChunkParams(5, -0x8000, 0xFFFF, 12, 0xFFFF, 255, 15),
        ChunkParams(9, 7, 4000, 3, 2000, 40, 2, 3),
        ChunkParams(9, -0x8000, 0xFFFF, 12, 0xFFFF, 255, 15, 3),
    ],
)
def test_compact_chunk_header_round_trips(p: ChunkParams) -> None:
    """Format 3's header is 2-14 bytes and reads back exactly; any cut inside it is an error."""
    data = p.pack()
    assert len(data) <= 14
    assert ChunkParams.unpack(data + b"words") == (p, b"words")
    if not p.resid and not p.feedback:
        assert ChunkParams.unpack(_fixed(p) + b"words", fmt=2) == (p, b"words")
    for cut in range(len(data)):
        with pytest.raises(StreamError):
            ChunkParams.unpack(data[:cut])


def test_refine_adds_a_share_of_the_reference_error_and_tightens() -> None:
    p = ChunkParams(5, 0, 100, 0, 50, gain=32, tighten=3)
    mu, sc = engine._refine(
        np.array([800, 800, 0, 1600]), np.array([40, 2, 40, 40]), np.array([64, -65, -64, 64]), p
    )
    # floor((32 * e + 32) / 64): half the error, rounded half up; means stay inside [0, 16 R]
    assert mu.tolist() == [832, 768, 0, 1600]
    assert sc.tolist() == [37, 0, 37, 37]


def test_recorded_prediction_errors_equal_the_teacher_forced_pass() -> None:
    """The decoder takes a resid chunk's reference errors from the reference's own step
    predictions, or from a teacher-forced pass where the reference was a delta chunk: both
    must give the encoder's integers."""
    import torch

    from llic_imaging.codec.schedule import Geometry
    from llic_imaging.model import zoo
    from llic_imaging.model.runtime import deterministic

    cpu = torch.device("cpu")
    rng = np.random.default_rng(4)
    stack = (np.cumsum(rng.integers(-3, 4, (2, 40, 56)), axis=2) + 500).astype(np.uint16)
    refs = engine.tile_grid(stack.shape, 64)
    geo = Geometry(40, 56, 16)
    with deterministic(1):
        net = zoo.load(zoo.DEFAULT_MODEL)[0]
        payloads, fmt = engine.encode_tiles(net, stack, refs, patch=16, device=cpu)
        params, words = zip(*(ChunkParams.unpack(p, fmt=fmt) for p in payloads), strict=True)
        values, recorded = engine._decode_batch(
            net, geo, refs, list(params), list(words), {}, [0, 1], cpu
        )
        np.testing.assert_array_equal(np.stack(values), stack)
        later = [TileRef(r.plane + 1, r.y, r.x, r.h, r.w) for r in refs]  # read planes 0 and 1
        dense = engine._reference_errors(net, geo, later, stack, cpu, [0, 1])
    for b in (0, 1):
        np.testing.assert_array_equal(recorded[b][geo.inside], dense[b][geo.inside])
        assert np.abs(recorded[b][geo.inside]).max() > 0


def test_neighbour_errors_read_causal_neighbours_inside_the_patch() -> None:
    """Feedback reads W, N, NE and NW (all decoded in earlier steps) with the chosen weights,
    and 0 beyond the patch's edges, where the decoder has nothing."""
    e = np.arange(1, 17, dtype=np.int64).reshape(1, 4, 4) * 8
    padded = engine._padded(e)
    r, c = np.array([0, 1, 2, 3]), np.array([0, 2, 3, 1])
    at = (np.zeros(4, np.int64), r, c)
    assert engine._neighbour_errors(padded, at, 1).tolist() == [0, 8 * 6, 8 * 11, 8 * 13]  # W
    assert engine._neighbour_errors(padded, at, 2).tolist() == [0, 8 * 3, 8 * 8, 8 * 10]  # N
    # mean of four, NE outside the patch at the last column
    assert engine._neighbour_errors(padded, at, 0).tolist() == [
        0,
        (6 + 3 + 4 + 2) * 2,
        (11 + 8 + 0 + 7) * 2,
        (13 + 10 + 11 + 9) * 2,
    ]


@pytest.mark.parametrize("gaps", [(), ((1, 39),), ((1, 1), (3, 2), (50, 1000))])
def test_value_map_header_round_trips(gaps: tuple) -> None:
    """Format 5 writes a coded chunk's value map (an empty one is one byte); formats 3-4 have
    none, and a cut anywhere inside the header is an error."""
    p = ChunkParams(9, 7, 60, 3, 30, 40, 2, 1, gaps=gaps)
    data = p.pack(5)
    assert len(data) > len(p.pack(3))
    assert ChunkParams.unpack(data + b"words", fmt=5) == (p, b"words")
    assert ChunkParams.unpack(ChunkParams(0, 4, 0, 0, 0).pack(5), fmt=5)[0].gaps == ()
    for cut in range(len(data)):
        with pytest.raises(StreamError):
            ChunkParams.unpack(data[:cut], fmt=5)
    assert p.span == 60 + sum(n for _, n in gaps)
    used = np.setdiff1d(np.arange(p.span + 1), [v for s, n in gaps for v in range(s, s + n)])
    np.testing.assert_array_equal(p.values(np.arange(61)), used)


def test_malformed_value_maps_are_refused() -> None:
    def raw(*fields: int) -> bytes:  # a coded chunk (vmin 0, vmax 10, mid 0) with these map fields
        return bytes([1, 0, 10, 0, *fields])

    assert ChunkParams.unpack(raw(1, 0, 4), fmt=5)[0].gaps == ((1, 5),)
    bad = [
        raw(11),  # more runs than values
        raw(2, 5, 0, 4, 0),  # runs after 11 used values: the largest value inside a run
        raw(1, 0, 0xFF, 0xFF, 0x03),  # span beyond 16 bits
    ]
    bad.append(ChunkParams(3, 0, 10, 0, 0, gaps=((1, 2),)).pack(5))  # delta chunks have none
    bad.append(ChunkParams(5, 0, 10, 0, 0, 8, 2, gaps=((1, 2),)).pack(5))  # nor resid chunks
    for data in bad:
        with pytest.raises(StreamError):
            ChunkParams.unpack(data, fmt=5)


def test_tiles_with_unused_values_are_coded_as_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile that never uses values 1-39 codes smaller as the ranks of its values (format 5)
    and decodes exactly; with value maps never tried, the stream stays format 3 (flat flags,
    which its zero background would take, are not tried here)."""
    import llic_imaging

    monkeypatch.setattr(engine, "_FLAT_MARGIN", np.inf)
    image = thresholded()[0]
    stream = llic_imaging.encode(image)
    assert llic_imaging.info(stream).codec_format == 5
    np.testing.assert_array_equal(llic_imaging.decode(stream), image)
    monkeypatch.setattr(engine, "_MAP_TRY", 0.0)  # never tried
    monkeypatch.setattr(engine, "_MAP_RUN", 1.0)
    plain = llic_imaging.encode(image)
    assert llic_imaging.info(plain).codec_format == 3
    assert len(stream) < len(plain)


def test_resid_chunk_on_a_mapped_reference_decodes() -> None:
    """A resid chunk reads its reference's prediction errors of values, as the encoder took
    them, even where the reference tile was coded as ranks (then the decoder's own step
    errors, which are of ranks, must not be used)."""
    import llic_imaging

    stack = thresholded(2, noise=2.0)
    stream = llic_imaging.encode(stack, context=2)
    first, second = chunk_headers(stream)
    assert first.gaps
    assert second.resid
    np.testing.assert_array_equal(llic_imaging.decode(stream), stack)
    np.testing.assert_array_equal(llic_imaging.decode(stream, 1), stack[1])


def test_signed_tiles_with_padding_are_mapped_and_decode() -> None:
    """CT-like int16: padding -2000 outside the field of view, tissue from -1000 up, so a
    quarter of the range is one unused run; the tile is mapped and decodes exactly."""
    import llic_imaging

    body = thresholded()[0].astype(np.int16)
    image = np.where(body > 0, body * 8 - 1000, -2000).astype(np.int16)
    stream = llic_imaging.encode(image)
    assert chunk_headers(stream)[0].gaps
    np.testing.assert_array_equal(llic_imaging.decode(stream), image)


def test_contenders_drop_only_older_formats_that_cannot_catch_up() -> None:
    live = [3, engine.LINEAR_FORMAT, engine.FLAT_FORMAT]
    # format 6 leads by 10,000 bits with 10 chunks to come: 3 is out, 7 (newer) stays
    estimate = {3: 110_000.0, 6: 100_000.0, 7: 100_008.0}
    assert engine._contenders(live, estimate, 10, 5) == [6, 7]
    # with 1,000 chunks to come, 2 bytes each could still make up the difference
    assert engine._contenders(live, estimate, 1000, 5) == live


def test_dropping_formats_early_keeps_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formats are dropped from coding once they cannot win; the stream is the one that coding
    every format for every tile and comparing exact bytes gives."""
    import llic_imaging
    from _linear_data import interpolated

    a = interpolated(3, (160, 200))
    dropped = []
    contenders = engine._contenders

    def spy(live, *args):
        out = contenders(live, *args)
        dropped.append(len(out) < len(live))
        return out

    monkeypatch.setattr(engine, "_contenders", spy)
    pruned = llic_imaging.encode(a, tile=64)
    assert any(dropped)
    monkeypatch.setattr(engine, "_contenders", lambda live, *args: live)
    assert llic_imaging.encode(a, tile=64) == pruned


def test_a_window_decoded_with_other_integers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No digest covers a window's pixels; a decoder whose products round to bf16 (what a CPU
    with AMX computes under ``torch.set_float32_matmul_precision("medium")`` when nothing pins
    float32, emulated) decoded 3594 of 3600 wrong pixels from chunks whose CRC-32 passed. Its
    chunks do not end where the encoder ended them, which is refused."""
    import torch

    import llic_imaging
    from llic_imaging.model import cpu_kernel

    def bf16_products(x: np.ndarray, wb: tuple, out: np.ndarray) -> None:
        def bf16(t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.bfloat16).float()

        torch.addmm(wb[1], bf16(torch.from_numpy(x)), bf16(wb[0]), out=torch.from_numpy(out))

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:96, :96]
    a = 20000 + 8000 * np.sin(x / 9) * np.cos(y / 13) + 3000 * (x > 48) + rng.normal(0, 40, y.shape)
    image = a.astype(np.uint16)
    stream = llic_imaging.encode(image, tile=64)
    window = (0, 0, 32, 32)
    np.testing.assert_array_equal(llic_imaging.decode(stream, window=window), image[:32, :32])
    monkeypatch.setattr(cpu_kernel, "_mm", bf16_products)
    with pytest.raises(StreamError, match="did not end where the encoder ended it"):
        llic_imaging.decode(stream, window=window)
