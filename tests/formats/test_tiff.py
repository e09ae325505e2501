from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from llic_imaging import formats
from llic_imaging.errors import FormatError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

_REWRITTEN = {273, 279, 324, 325}  # offsets and byte counts necessarily change


def _rgb(dtype="uint16", shape=(3, 40, 50)):
    rng = np.random.default_rng(3)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _tags(path):
    with tifffile.TiffFile(path) as tif:
        return [
            {
                k: (t.dtype, t.count, str(t.value))
                for k, t in page.tags.items()
                if k not in _REWRITTEN
            }
            for page in tif.pages
        ]


UNCOMPRESSED = {
    "gray-u8": ({"data": _rgb("uint8", (40, 50))}, (40, 50)),
    "gray-i16-be": ({"data": _rgb("int16", (40, 50)), "byteorder": ">"}, (40, 50)),
    "rgb-contig": (
        {"data": np.moveaxis(_rgb(), 0, -1), "photometric": "rgb", "rowsperstrip": 7},
        (3, 40, 50),
    ),
    "rgb-separate": (
        {"data": _rgb(), "photometric": "rgb", "planarconfig": "separate"},
        (3, 40, 50),
    ),
    "bigtiff": ({"data": _rgb("uint16", (40, 50)), "bigtiff": True}, (40, 50)),
    "multipage": ({"data": _rgb("uint8", (4, 20, 30)), "photometric": "minisblack"}, (4, 20, 30)),
}


@pytest.mark.parametrize("case", UNCOMPRESSED)
def test_uncompressed_round_trip_is_byte_identical(tmp_path, case):
    kwargs, shape = UNCOMPRESSED[case]
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, description="keep me", metadata=None, **kwargs)
    loaded = formats.load(src)
    assert (loaded.format, loaded.exact, loaded.array.shape) == ("tiff", "bytes", shape)
    with tifffile.TiffFile(src) as tif:
        expect = np.concatenate(
            [
                p.asarray()[None]
                if p.asarray().ndim == 2
                else (np.moveaxis(p.asarray(), -1, 0) if p.planarconfig == 1 else p.asarray())
                for p in tif.pages
            ]
        )
    np.testing.assert_array_equal(loaded.array.reshape(expect.shape), expect)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert (tmp_path / "b.tif").read_bytes() == src.read_bytes()


COMPRESSED = {
    "lzw-gray": {"data": _rgb("uint16", (40, 50)), "compression": "lzw"},
    "zlib-predictor-rgb": {
        "data": np.moveaxis(_rgb(), 0, -1),
        "photometric": "rgb",
        "compression": "zlib",
        "predictor": True,
    },
    "lzw-tiled-separate": {
        "data": _rgb(),
        "photometric": "rgb",
        "planarconfig": "separate",
        "compression": "lzw",
        "tile": (16, 16),
    },
    "tiled-uncompressed": {"data": _rgb("int16", (40, 50)), "tile": (16, 16), "byteorder": ">"},
}


@pytest.mark.parametrize("case", COMPRESSED)
def test_compressed_round_trip_keeps_pixels_and_tags(tmp_path, case):
    src = tmp_path / "a.tif"
    tifffile.imwrite(
        src, description="keep me", metadata=None, resolution=(72, 72), **COMPRESSED[case]
    )
    loaded = formats.load(src)
    assert loaded.exact == "pixels+metadata"
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), tifffile.imread(src))
    assert _tags(tmp_path / "b.tif") == _tags(src)


def test_compression_override(tmp_path):
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, _rgb("uint16", (40, 50)), compression="lzw")
    loaded = formats.load(src)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata, compression="zlib")
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert tif.pages[0].compression == 8
        np.testing.assert_array_equal(tif.asarray(), loaded.array)


def test_refuses_float_and_mixed_pages(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(FormatError, match="float32"):
        formats.load(tmp_path / "f.tif")
    with tifffile.TiffWriter(tmp_path / "m.tif") as tw:
        tw.write(np.zeros((8, 8), np.uint8))
        tw.write(np.zeros((4, 4), np.uint8))
    with pytest.raises(FormatError, match="mixed pages"):
        formats.load(tmp_path / "m.tif")


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _rgb("uint16", (40, 50)))
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(data[:6])
    with pytest.raises(FormatError):
        formats.load(tmp_path / "t.tif", format="tiff")


def test_corrupt_tiffs_fail_while_pages_and_tags_are_read(tmp_path):
    """tifffile parses lazily: these files open, then fail on their pages or a tag's value."""
    data = (SAMPLES / "dem_i16.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:190])
    flipped = bytearray(data)
    flipped[166] ^= 113  # the colormap tag's type becomes one numpy cannot read
    (tmp_path / "flip.tif").write_bytes(flipped)
    for name in ("cut.tif", "flip.tif"):
        with pytest.raises(FormatError):
            formats.load(tmp_path / name)


def test_planes_names(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _rgb("uint8", (2, 8, 9, 3)), photometric="rgb")
    names = [n for n, _ in formats.planes(tmp_path / "a.tif")]
    assert names == ["p0/s0", "p0/s1", "p0/s2", "p1/s0", "p1/s1", "p1/s2"]


@pytest.mark.parametrize("flavour", ["ome", "imagej"])
def test_compressed_ome_and_imagej_keep_their_description(tmp_path, flavour):
    """The ImageDescription (OME-XML, ImageJ header) survives the compressed rewrite, so readers
    still see the series (tifffile refuses it as an extra tag)."""
    a = (np.arange(3 * 40 * 50) % 1000).reshape(3, 40, 50).astype(np.uint16)
    src, out = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(src, a, compression="zlib", metadata={"axes": "ZYX"}, **{flavour: True})
    loaded = formats.load(src)
    assert loaded.exact == "pixels+metadata"
    formats.save(out, loaded.array, loaded.metadata)
    with tifffile.TiffFile(src) as t0, tifffile.TiffFile(out) as t1:
        assert t1.pages[0].description == t0.pages[0].description
        assert np.array_equal(t1.asarray(), a)
        assert getattr(t1, f"is_{flavour}")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compression": "jpeg"}, "lossy or may be: page 0 is JPEG-compressed"),
        ({"compression": "webp"}, "lossy or may be: page 0 is WEBP-compressed"),
        ({"compression": "jpegxl"}, "lossy or may be: page 0 is JPEGXL-compressed"),
        (
            {"compression": "lerc", "compressionargs": {"level": 4.0}},
            "lossy: page 0 is LERC-compressed with MaxZError 4.0",
        ),
    ],
    ids=["jpeg", "webp", "jpegxl", "lerc-max-z-error-4"],
)
def test_refuses_lossy_compression(tmp_path, kwargs, match):
    """The rewrite would re-encode the decoded pixels with the same lossy codec."""
    tifffile.imwrite(
        tmp_path / "a.tif", np.moveaxis(_rgb("uint8"), 0, -1), photometric="rgb", **kwargs
    )
    with pytest.raises(FormatError, match=match):
        formats.load(tmp_path / "a.tif")


@pytest.mark.parametrize("extra", [None, "deflate", "zstd"])
def test_lossless_lerc_round_trip(tmp_path, extra):
    src, out = tmp_path / "a.tif", tmp_path / "b.tif"
    args = {"compression": extra} if extra else {}
    tifffile.imwrite(src, _rgb("int16", (40, 50)), compression="lerc", compressionargs=args)
    loaded = formats.load(src)
    formats.save(out, loaded.array, loaded.metadata)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(src))


def test_refuses_packed_12_bit_samples(tmp_path):
    """BitsPerSample 12 decodes to uint16; the restore would write 16-bit samples."""
    values = _rgb("uint16", (20, 30)) >> 4
    tifffile.imwrite(tmp_path / "a.tif", values, bitspersample=12)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages.first.bitspersample == 12
    with pytest.raises(FormatError, match="packed 12-bit samples"):
        formats.load(tmp_path / "a.tif")
