"""Fixtures of the network tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def ct_slice() -> np.ndarray:
    """A real CT-like slice: the pydicom CT sample (pip-installed, MIT)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    a = np.frombuffer(ds.PixelData, "<i2").reshape(ds.Rows, ds.Columns).astype(np.int64)
    return a - a.min()
