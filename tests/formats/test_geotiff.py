from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
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
