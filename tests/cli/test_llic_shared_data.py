"""Every NIfTI and (Geo)TIFF file of ``../shared/data`` through the real ``llic`` CLI:
``compress`` -> ``restore`` -> ``verify``, in-process through click's runner.

Slow (seconds to minutes per file on CI's two cores), one test per file so a run can pick files
with ``-k`` and each gets its own timeout. ``tests/batch/test_shared_data.py`` does the same for
every shared DICOM through ``llic-dicom``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from _formats_data import assert_same_geotiff, data_params, path_of
from llic_imaging.cli.llic import cli

SUFFIXES = (".nii", ".nii.gz", ".tif", ".tiff")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.timeout(1800)
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("row", data_params("", suffix=SUFFIXES))
def test_shared_file_compress_restore_verify(row: dict[str, str], tmp_path: Path) -> None:
    source = path_of(row)
    stream, restored = tmp_path / f"{source.name}.llic", tmp_path / "out" / source.name

    compressed = run("compress", source, "-o", stream, "--threads", "1", "--json", "-q")
    assert compressed.exit_code == 0, compressed.output
    [record] = json.loads(compressed.stdout)
    result = run("restore", stream, "-o", restored, "--threads", "1", "-q")
    assert result.exit_code == 0, result.output
    result = run("verify", stream, source, "--threads", "1", "-q")
    assert result.exit_code == 0, result.output

    if record["exact"] == "bytes":
        assert restored.read_bytes() == source.read_bytes()
    if source.name.endswith(".nii.gz"):
        assert gzip.decompress(restored.read_bytes()) == gzip.decompress(source.read_bytes())
    elif record["format"] == "geotiff":
        assert_same_geotiff(source, restored)
    else:
        assert record["exact"] == "bytes", record  # plain .nii and TIFF restore byte for byte
