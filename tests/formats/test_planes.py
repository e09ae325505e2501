"""``formats.planes`` on every real file of the shared data folder, checked against MANIFEST.tsv."""

from __future__ import annotations

import numpy as np
import pytest

from _formats_data import data_params, path_of
from llic_imaging import formats

FORMAT_OF = {"dcm": "dicom", "gz": "nifti", "tif": "geotiff", "TIF": "geotiff"}


@pytest.mark.parametrize("row", data_params("medical/", "satellite/"))
def test_planes_match_manifest(row):
    path = path_of(row)
    assert formats.detect(path) == FORMAT_OF[path.name.rsplit(".", 1)[-1]]
    named = formats.planes(path)
    names = [n for n, _ in named]
    assert len(set(names)) == len(names)
    for _, plane in named:
        assert plane.ndim == 2
        assert plane.dtype.name in ("uint8", "int8", "uint16", "int16")
    shape = [int(s) for s in row["shape"].split("x")]
    stack = np.stack([p for _, p in named])
    if path.suffix == ".dcm":
        # Manifest shape is (frames or samples, rows, columns) and min/max are stored values.
        assert stack.shape == tuple(shape)
        assert stack.min() == int(row["min"])
        assert stack.max() == int(row["max"])
    elif path.name.endswith(".nii.gz"):
        assert len(named) == shape[2]
        assert stack.shape[1:] == (shape[1], shape[0])
        assert stack.dtype.name == ("int16" if row["dtype"] == "float32" else row["dtype"])
    else:
        assert stack.shape[1:] == tuple(shape[1:])
        assert stack.dtype.name == row["dtype"]
        assert len(named) == shape[0] - ("alpha" in row["notes"])
        assert names[0] == "b0"
