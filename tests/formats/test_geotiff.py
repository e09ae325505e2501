from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine

from _formats_data import assert_same_geotiff, data_params, path_of
from llic_imaging import formats
from llic_imaging.errors import FormatError, MissingDependencyError

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.mark.parametrize("row", data_params("satellite/"))
def test_real_files_keep_pixels_and_every_field(tmp_path, row):
    path = path_of(row)
    loaded = formats.load(path)
    assert loaded.format == "geotiff"
    assert loaded.array.dtype.name == row["dtype"]
    assert loaded.array.reshape(-1, *loaded.array.shape[-2:]).shape == tuple(
        int(s) for s in row["shape"].split("x")
    )
    assert loaded.exact == (
        "bytes" if row["transfer_syntax_or_compression"] == "none" else "pixels+metadata"
    )
    out = tmp_path / "out.tif"
    formats.save(out, loaded.array, loaded.metadata)
    assert_same_geotiff(path, out)
    if loaded.exact == "bytes":
        assert out.read_bytes() == path.read_bytes()


def _write(path, data, **extra):
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": "EPSG:32618",
        "transform": Affine(10, 0, 500000, 0, -10, 4500000),
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(AREA_OR_POINT="Point", source="llic test")
        dst.update_tags(ns="custom_ns", key="value")
        dst.update_tags(1, STATISTICS_NOTE="band one")
        dst.set_band_description(1, "first band")
        dst.set_band_unit(1, "metre")
        dst.scales = [0.01] * data.shape[0]
        dst.offsets = [-5.0] * data.shape[0]
    return path


RNG = np.random.default_rng(6)


@pytest.mark.parametrize("compress", [None, "deflate", "lzw"])
def test_synthetic_fields_round_trip(tmp_path, compress):
    data = RNG.integers(-3000, 3000, (2, 40, 60)).astype(np.int16)
    extra = {"nodata": -9999} | (
        {"compress": compress, "tiled": True, "blockxsize": 16, "blockysize": 16}
        if compress
        else {}
    )
    src = _write(tmp_path / "a.tif", data, **extra)
    loaded = formats.load(src)
    np.testing.assert_array_equal(loaded.array, data)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")
    assert loaded.exact == ("bytes" if compress is None else "pixels+metadata")
    if compress is None:
        assert (tmp_path / "b.tif").read_bytes() == src.read_bytes()


def test_colormap_round_trip(tmp_path):
    data = RNG.integers(0, 4, (1, 20, 30)).astype(np.uint8)
    src = _write(tmp_path / "a.tif", data, compress="lzw", photometric="palette")
    with rasterio.open(src, "r+") as dst:
        dst.write_colormap(
            1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255)}
        )
    loaded = formats.load(src)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")
    with rasterio.open(tmp_path / "b.tif") as out:
        assert out.colormap(1)[2] == (0, 255, 0, 255)


def test_internal_mask_round_trip(tmp_path):
    data = RNG.integers(1, 255, (3, 32, 32)).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:20, 8:30] = 255
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        src = _write(tmp_path / "a.tif", data, compress="deflate")
        with rasterio.open(src, "r+") as dst:
            dst.write_mask(mask)
    loaded = formats.load(src)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")
    with rasterio.open(tmp_path / "b.tif") as out:
        np.testing.assert_array_equal(out.dataset_mask(), mask)


def test_creation_option_overrides(tmp_path):
    data = RNG.integers(0, 4000, (1, 64, 64)).astype(np.uint16)
    src = _write(tmp_path / "a.tif", data)
    loaded = formats.load(src)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata, compress="zstd", predictor=2)
    assert_same_geotiff(src, tmp_path / "b.tif", ignore=("compress", "predictor"))
    with rasterio.open(tmp_path / "b.tif") as out:
        assert out.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"
        assert out.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"


def test_refuses_float_rasters(tmp_path):
    src = _write(tmp_path / "f.tif", np.zeros((1, 8, 8), np.float32))
    with pytest.raises(FormatError, match="float32"):
        formats.load(src)
    with pytest.raises(FormatError, match="float32"):
        formats.planes(src)


def test_truncated_geotiff(tmp_path):
    data = _write(
        tmp_path / "a.tif", RNG.integers(0, 255, (1, 64, 64)).astype(np.uint8)
    ).read_bytes()
    (tmp_path / "t.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError):
        formats.load(tmp_path / "t.tif", format="geotiff")


def test_missing_rasterio_names_the_extra(tmp_path, monkeypatch):
    src = _write(tmp_path / "a.tif", np.zeros((1, 8, 8), np.uint8))
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(MissingDependencyError, match=r"llic-imaging\[geo\]"):
        formats.load(src)


_GEOKEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32618)  # projected, UTM 18N
_GEOREFERENCE = [
    (33550, 12, 3, (10.0, 10.0, 0.0), True),  # ModelPixelScale
    (33922, 12, 6, (0, 0, 0, 500000.0, 4500000.0, 0), True),  # ModelTiepoint
    (34735, 3, len(_GEOKEYS), _GEOKEYS, True),  # GeoKeyDirectory
]


def _tifffile_geotiff(path, pages, *, extratags=(), **kwargs):
    """A GeoTIFF written by tifffile: one IFD per page, georeferenced on the first."""
    with tifffile.TiffWriter(path) as tw:
        for i, page in enumerate(pages):
            tags = [*_GEOREFERENCE, *extratags] if i == 0 else []
            tw.write(page, photometric="minisblack", metadata=None, extratags=tags, **kwargs)
    return path


def test_refuses_several_full_resolution_pages(tmp_path):
    """GDAL shows only the first IFD (the others become GTIFF_DIR subdatasets), so keeping
    only it would lose pages without a word."""
    src = _tifffile_geotiff(tmp_path / "a.tif", RNG.integers(0, 4000, (3, 20, 30), np.uint16))
    assert formats.detect(src) == "geotiff"
    with rasterio.open(src) as ds:
        assert (ds.count, len(ds.subdatasets)) == (1, 3)
    with pytest.raises(FormatError, match="3 full-resolution pages"):
        formats.load(src)


def test_overviews_and_mask_pages_are_not_extra_pages(tmp_path):
    data = RNG.integers(1, 255, (3, 64, 64)).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 4:60] = 255
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        src = _write(tmp_path / "a.tif", data, compress="deflate", tiled=True)
        with rasterio.open(src, "r+") as dst:
            dst.write_mask(mask)
            dst.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    with tifffile.TiffFile(src) as tif:
        assert len(tif.pages) > 3  # image, its mask, overviews and their masks
    loaded = formats.load(src)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"compress": "jpeg"}, "lossy or may be: page 0 is JPEG-compressed"),
        ({"compress": "webp"}, "lossy or may be: page 0 is WEBP-compressed"),
        (
            {"compress": "lerc", "max_z_error": 2},
            "lossy: page 0 is LERC-compressed with MaxZError 2",
        ),
    ],
    ids=["jpeg", "webp", "lerc-max-z-error-2"],
)
def test_refuses_lossy_compression(tmp_path, options, match):
    """A restore would re-encode the decoded pixels with the lossy codec and change them."""
    src = _write(tmp_path / "a.tif", RNG.integers(0, 255, (3, 32, 32)).astype(np.uint8), **options)
    with pytest.raises(FormatError, match=match):
        formats.load(src)


@pytest.mark.parametrize("compress", ["lerc", "lerc_deflate", "lerc_zstd"])
def test_lossless_lerc_round_trip(tmp_path, compress):
    data = RNG.integers(-3000, 3000, (2, 40, 60)).astype(np.int16)
    src = _write(
        tmp_path / "a.tif", data, compress=compress, tiled=True, blockxsize=32, blockysize=32
    )
    loaded = formats.load(src)
    np.testing.assert_array_equal(loaded.array, data)
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")


@pytest.mark.parametrize("compress", [None, "deflate"])
def test_refuses_packed_nbits(tmp_path, compress):
    """NBITS=12 packs the samples; a restore would write them back as 16-bit."""
    data = RNG.integers(0, 4096, (1, 20, 30)).astype(np.uint16)
    src = _write(tmp_path / "a.tif", data, nbits=12, **({"compress": compress} if compress else {}))
    with pytest.raises(FormatError, match="packed 12-bit samples"):
        formats.load(src)


XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    'syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'dc:format="image/tiff"/></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
)


def test_xmp_domain_round_trip(tmp_path):
    """The xml:XMP domain is one XML text (TIFF tag 700), not key=value items."""
    xmp = XMP.encode()
    src = _tifffile_geotiff(
        tmp_path / "a.tif",
        [RNG.integers(0, 4000, (20, 30), np.uint16)],
        extratags=[(700, 1, len(xmp), xmp, True)],
        compression="zlib",
    )
    with rasterio.open(src) as ds:
        assert ds.tags(ns="xml:XMP") == {"xml:XMP": XMP}
    loaded = formats.load(src)
    assert loaded.exact == "pixels+metadata"
    formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata)
    assert_same_geotiff(src, tmp_path / "b.tif")
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert tif.pages.first.tags[700].value.rstrip(b"\0") == xmp  # GDAL ends it with NUL


def test_refuses_xml_domain_rasterio_cannot_write(tmp_path):
    src = _tifffile_geotiff(
        tmp_path / "a.tif",
        [RNG.integers(0, 4000, (20, 30), np.uint16)],
        extratags=[(700, 1, 12, b"<x:xmpmeta/>", True)],
        compression="zlib",
    )
    with pytest.raises(FormatError, match="xml:XMP is a text without '='"):
        formats.load(src)
